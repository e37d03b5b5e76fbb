"""7 Fleet: this host's fleet group (DESIGN.md §12) as ``id1 fleet`` shows it: the slots and the
line for them, every host of the group (etcd) with the slot it holds or waits for, the selected
host's state in full, and the changes that failed on hosts of the group. ``u`` lifts the halt
of the selected failed change, ``f`` frees the slot of the selected host (one that is gone);
both admin, confirmed with an optional reason.

Other hosts send this host no events, so while the screen shows, the group is read again every
``FLEET_REFRESH_S`` (or the app's ``refresh_s``, if shorter; not at all when that is 0); this
host's own activity events refresh it at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.reactive import var
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable

from tui.changes import FleetRelease, FleetResume
from tui.messages import ChangeRequested
from tui.screens.base import DashboardScreen
from tui.screens.confirm import ConfirmDialog, Confirmed, TextField
from tui.text import parse_time, plain, plural, when
from tui.widgets.facts import Facts

FLEET_REFRESH_S = 10.0
NO_STATE = "NO STATE: gone?"


class FleetScreen(DashboardScreen):
    NAME = "fleet"
    MAIN = "#fleet-hosts"
    RESOURCES = ("status", "fleet")
    BINDINGS = [
        Binding("u", "resume_change", "Resume"),
        Binding("f", "free_slot", "Free slot"),
    ]
    GATED = {
        "resume_change": ("u resume", "admin"),
        "free_slot": ("f free slot", "admin"),
    }

    fleet: var[dict[str, Any] | None] = var(None, init=False)
    selected_host: var[str | None] = var(None, init=False)
    selected_change: var[str | None] = var(None, init=False)
    _hosts_shown: list[tuple[str, ...]] | None = None
    _changes_shown: list[tuple[str, ...]] | None = None
    _refresh: Timer | None = None

    def compose_body(self) -> Iterable[Widget]:
        yield Facts(label_width=9, id="fleet-facts")
        hosts = DataTable(cursor_type="row", id="fleet-hosts")
        hosts.border_title = "Hosts (* this host)"
        yield hosts
        yield Facts(label_width=9, id="fleet-host")
        changes = DataTable(cursor_type="row", id="fleet-changes")
        changes.border_title = "Changes that failed on hosts of the group"
        yield changes

    def on_mount(self) -> None:
        hosts = self.query_one("#fleet-hosts", DataTable)
        for label, key in (("host", "host"), ("instance", "instance"), ("platform", "platform"), ("rev", "revision"),
                           ("slot", "slot"), ("seen", "seen"), ("state", "state")):
            hosts.add_column(label, key=key)
        changes = self.query_one("#fleet-changes", DataTable)
        for label, key in (("change", "ref"), ("halted", "halted"), ("failed on", "hosts")):
            changes.add_column(label, key=key)
        super().on_mount()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self._refresh is None and self.dashboard.refresh_s:
            every = min(self.dashboard.refresh_s, FLEET_REFRESH_S)
            self._refresh = self.set_interval(every, lambda: self.dashboard.mark_stale(["fleet"]))

    def on_screen_suspend(self) -> None:
        if self._refresh is not None:
            self._refresh.stop()
            self._refresh = None

    # --- what is shown ----------------------------------------------------------------------

    def hosts(self) -> list[dict[str, Any]]:
        """The published hosts, then slot holders that publish nothing (their lease is running out)."""
        fleet = self.fleet or {}
        hosts = list({host["host_id"]: host for host in fleet.get("hosts") or []}.values())  # each id once: a row key
        listed = {host["host_id"] for host in hosts}
        for holder in fleet.get("holders") or []:
            if holder["host_id"] not in listed:
                listed.add(holder["host_id"])
                hosts.append({"host_id": holder["host_id"], "instance_id": holder.get("instance_id"), "agent_state": NO_STATE})
        return hosts

    def holder(self, host_id: str | None) -> dict[str, Any] | None:
        return next((h for h in (self.fleet or {}).get("holders") or [] if h["host_id"] == host_id), None)

    def failures(self) -> list[dict[str, Any]]:
        return list((self.fleet or {}).get("failures") or [])

    # --- drawing ----------------------------------------------------------------------------

    def show_all(self) -> None:
        self._show_facts()
        self._show_hosts()
        self._show_changes()
        self._show_host()

    def watch_fleet(self) -> None:
        if self.is_mounted:
            self.show_all()
            self.update_notice()

    def status_changed(self) -> None:
        self._show_facts()
        self._show_hosts()
        self._show_host()

    def watch_selected_host(self) -> None:
        if self.is_mounted:
            self._show_host()
            self.update_notice()

    def watch_selected_change(self) -> None:
        if self.is_mounted:
            self.update_notice()

    def _tz(self) -> str | None:
        return (self.status or {}).get("timezone")

    def _show_facts(self) -> None:
        self.query_one("#fleet-facts", Facts).show(fleet_facts(self.fleet))

    def _show_hosts(self) -> None:
        fleet = self.fleet or {}
        this_host, waiting, tz = fleet.get("this_host"), list(fleet.get("waiting") or []), self._tz()
        rows = []
        for host in self.hosts():
            holder = self.holder(host["host_id"])
            slot = "HOLDS" if holder else f"waits #{waiting.index(host['host_id']) + 1}" if host["host_id"] in waiting else "-"
            rows.append((host["host_id"] + ("*" if host["host_id"] == this_host else ""), host.get("instance_id") or "-",
                         host.get("platform") or "-", str(host["revision"]) if host.get("revision") is not None else "-",
                         slot, time_of_day(host.get("last_seen"), tz), host.get("agent_state") or "-"))
        self._hosts_shown = self._fill(self.query_one("#fleet-hosts", DataTable), rows, self._hosts_shown,
                                       [host["host_id"] for host in self.hosts()], "selected_host")

    def _show_changes(self) -> None:
        rows = [(failure["ref"], "HALTED" if failure["halted"] else "no", ", ".join(failure.get("hosts") or []))
                for failure in self.failures()]
        self._changes_shown = self._fill(self.query_one("#fleet-changes", DataTable), rows, self._changes_shown,
                                         [failure["ref"] for failure in self.failures()], "selected_change")

    def _fill(self, table: DataTable, rows: list[tuple[str, ...]], shown: list[tuple[str, ...]] | None,
              keys: list[str], selection: str) -> list[tuple[str, ...]]:
        """Redraw ``table`` if its rows changed, the cursor staying on the same key where it can."""
        if rows == shown:
            return rows
        keep = getattr(self, selection)
        table.clear()
        for key, row in zip(keys, rows):
            table.add_row(*plain(row), key=key)
        if keys:
            table.move_cursor(row=keys.index(keep) if keep in keys else 0, animate=False)
            setattr(self, selection, keys[max(table.cursor_row, 0)])
        else:
            setattr(self, selection, None)
        return rows

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is None:
            return
        if event.data_table.id == "fleet-hosts":
            self.selected_host = event.row_key.value
        elif event.data_table.id == "fleet-changes":
            self.selected_change = event.row_key.value

    def _show_host(self) -> None:
        facts = self.query_one("#fleet-host", Facts)
        host = next((h for h in self.hosts() if h["host_id"] == self.selected_host), None)
        if host is None:
            facts.show([])
            facts.display = False
            return
        facts.display = True
        tz = self._tz()
        what = [f"instance {host.get('instance_id') or '-'}"]
        if host.get("platform") or host.get("revision") is not None:
            revision = host.get("revision")
            what.append(f"platform {host.get('platform') or '-'}, revision {revision if revision is not None else '-'}")
        holder = self.holder(host["host_id"])
        if holder:
            what.append(f"HOLDS slot {holder.get('slot', '-')} since {when(holder.get('since'), tz, default='-')}")
        state = Text(host.get("agent_state") or "-", style="bold")
        if host.get("updated_at"):
            state.append(f" since {when(host['updated_at'], tz)}")
        facts.show([("Host", f"{host['host_id']}: {'; '.join(what)}"), ("State", state)])

    # --- actions ----------------------------------------------------------------------------

    def unavailable(self, action: str) -> str | None:
        fleet = self.fleet
        if fleet is None:
            return "waiting for the fleet"
        if fleet.get("backend") == "none":
            return "fleet coordination is off on this host"
        if fleet.get("backend") != "etcd":
            return "FleetLock gives slots only: use the lock server's own tools"
        if action == "resume_change" and self.selected_failure() is None:
            return "no failed change in the group"
        if action == "free_slot":
            if self.selected_host is None:
                return "no host selected"
            if self.holder(self.selected_host) is None:
                return f"{self.selected_host} holds no slot"
        return None

    def selected_failure(self) -> dict[str, Any] | None:
        return next((f for f in self.failures() if f["ref"] == self.selected_change), None)

    def action_resume_change(self) -> None:
        failure = self.selected_failure()
        if failure is None:
            return
        fleet = self.fleet or {}
        hosts = ", ".join(failure.get("hosts") or []) or "no host"
        state = "is halted" if failure["halted"] else f"is not halted yet (halted after {plural(fleet.get('halt_after') or 1, 'host')})"
        body = Text(f"{failure['ref']} failed on {hosts} and {state}.\n"
                    f"Resuming removes its failure records: every host of group {fleet.get('group')} may deploy it again.")
        dialog = ConfirmDialog("Resume this change for the group?", body, verb="resume",
                               field=TextField("reason (optional)"), id="fleet-resume-confirm")
        self.app.push_screen(dialog, lambda answer: self._send(answer, lambda text: FleetResume(failure["ref"], text or None)))

    def action_free_slot(self) -> None:
        host_id = self.selected_host
        holder = self.holder(host_id)
        if host_id is None or holder is None:
            return
        host = next((h for h in self.hosts() if h["host_id"] == host_id), {})
        tz = self._tz()
        held = f"{host_id} holds slot {holder.get('slot', '-')} since {when(holder.get('since'), tz, default='-')}."
        if host.get("agent_state") == NO_STATE:
            alive = "It publishes no state: it looks gone."
        else:
            alive = (f"It still publishes its state ({host.get('agent_state')}, seen {time_of_day(host.get('last_seen'), tz)}): "
                     "freeing its slot lets another host change its services at the same time.")
        body = Text(f"{held}\n{alive}\nFree it only for a host that is gone; else its lease frees it.")
        dialog = ConfirmDialog("Free this fleet slot?", body, verb="free",
                               field=TextField("reason (optional)"), id="fleet-release-confirm")
        self.app.push_screen(dialog, lambda answer: self._send(answer, lambda text: FleetRelease(host_id, text or None)))

    def _send(self, answer: Confirmed | None, make) -> None:
        if answer is not None:
            self.post_message(ChangeRequested(make(answer.text)))


def fleet_facts(fleet: dict[str, Any] | None) -> list[tuple[str, str | Text]]:
    if fleet is None:
        return [("Group", "waiting for the agent's answer...")]
    backend = fleet.get("backend")
    facts: list[tuple[str, str | Text]] = [
        ("Group", f"{fleet.get('group')} ({backend}), this host {fleet.get('this_host') or '(no fleet id)'}")]
    holders = fleet.get("holders") or []
    if backend == "etcd" and not fleet.get("note"):
        slots = f"{len(holders)} of {fleet.get('slots') or '?'} held"
        if fleet.get("halt_after"):
            slots += f"; a change is halted once it failed on {plural(fleet['halt_after'], 'host')}"
        facts.append(("Slots", slots))
        waiting, total = list(fleet.get("waiting") or []), fleet.get("waiting_total") or 0
        more = f" and {total - len(waiting)} more" if total > len(waiting) else ""
        facts.append(("Waiting", f"{', '.join(waiting)}{more} (first in line first)" if total else "no host waits"))
    elif backend == "fleetlock":
        held = any(holder["host_id"] == fleet.get("this_host") for holder in holders)
        facts.append(("Slots", "this host HOLDS its slot" if held else "this host holds no slot"))
    if fleet.get("slot_wait"):
        facts.append(("This host", Text(fleet["slot_wait"], style="bold")))
    if fleet.get("note"):
        facts.append(("Note", fleet["note"]))
    halted = [failure["ref"] for failure in fleet.get("failures") or [] if failure.get("halted")]
    if halted:
        facts.append(("Halted", Text(f"{', '.join(halted)}: no host of the group deploys {'it' if len(halted) == 1 else 'them'}",
                                     style="bold")))
    return facts


def time_of_day(value: Any, timezone: str | None) -> str:
    """``08:09:48``: a host's record lives only as long as its lease (minutes), so its last
    sighting needs no date; the zone is the policy's, as everywhere else."""
    shown = when(value, timezone, default="")
    moment = parse_time(value)
    if not shown or moment is None:
        return "-"
    return shown.split(" ")[1] + f":{moment.second:02d}"
