"""4 Pins & policy: the pins (those from the config file marked read-only), the effective
policy; ``p`` adds a pin, ``d`` removes the selected one, ``c`` changes the channel (per suite too).
Every change is checked here first, then confirmed, then sent."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.reactive import var
from textual.widget import Widget
from textual.widgets import DataTable

from tui.changes import Change, Pin, SetChannel, Unpin
from tui.messages import ChangeRequested
from tui.screens.base import DashboardScreen
from tui.screens.channel_form import ChannelChoice, ChannelForm
from tui.screens.confirm import ConfirmDialog, Confirmed, TextField
from tui.screens.pin_form import PinForm
from tui.text import plain
from tui.validation import PinInput
from tui.widgets.facts import Facts


class PinsScreen(DashboardScreen):
    NAME = "pins"
    MAIN = "#pins"
    RESOURCES = ("status", "versions", "policy")
    BINDINGS = [
        Binding("p", "add_pin", "Add pin"),
        Binding("d,delete", "remove_pin", "Remove pin"),
        Binding("c", "change_channel", "Channel"),
    ]
    GATED = {
        "add_pin": ("p add pin", "admin"),
        "remove_pin": ("d remove pin", "admin"),
        "change_channel": ("c channel", "admin"),
    }

    versions: var[dict[str, Any] | None] = var(None, init=False)
    policy: var[dict[str, Any] | None] = var(None, init=False)
    selected: var[int | None] = var(None, init=False)
    _rows_shown: list[tuple[str, ...]] | None = None

    def compose_body(self) -> Iterable[Widget]:
        table = DataTable(cursor_type="row", id="pins")
        table.border_title = "Pins"
        yield table
        policy = Facts(label_width=11, id="policy")
        policy.border_title = "Policy"
        yield policy

    def on_mount(self) -> None:
        table = self.query_one("#pins", DataTable)
        for label, key in (("level", "level"), ("name", "name"), ("version", "version"),
                           ("from", "origin"), ("reason", "reason")):
            table.add_column(label, key=key)
        super().on_mount()

    def pins(self) -> list[dict[str, Any]]:
        return list((self.versions or {}).get("pins") or [])

    # --- drawing ----------------------------------------------------------------------------

    def show_all(self) -> None:
        self._show_pins()
        self._show_policy()

    def watch_versions(self) -> None:
        if self.is_mounted:
            self._show_pins()

    def watch_policy(self) -> None:
        if self.is_mounted:
            self._show_policy()

    def watch_selected(self) -> None:
        if self.is_mounted:
            self.update_notice()

    def _show_pins(self) -> None:
        table = self.query_one("#pins", DataTable)
        rows = [(pin["level"], pin["name"], pin["version"],
                 "config [read-only]" if pin.get("origin") == "config" else "api",
                 pin.get("reason") or "") for pin in self.pins()]
        if rows == self._rows_shown:
            return
        self._rows_shown = rows
        keep = table.cursor_row
        table.clear()
        for index, row in enumerate(rows):
            table.add_row(*plain(row), key=str(index))
        if rows:
            table.move_cursor(row=min(max(keep, 0), len(rows) - 1), animate=False)
            self.selected = max(table.cursor_row, 0)
        else:
            self.selected = None
        self.update_notice()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "pins" and event.row_key.value is not None:
            self.selected = int(event.row_key.value)

    def _show_policy(self) -> None:
        policy = self.policy
        facts = self.query_one("#policy", Facts)
        if policy is None:
            facts.show([("Channel", "loading...")])
            return
        suites = policy.get("suites") or {}
        window = policy.get("maintenance_window") or []
        facts.show([
            ("Channel", Text(policy.get("channel", "?"), style="bold")),
            ("Per suite", ", ".join(f"{s}: {c}" for s, c in sorted(suites.items())) or "no overrides"),
            ("Enforce", f"security fixes of severity {policy.get('enforce_severity', '?')} and above, whatever the channel"),
            ("Window", f"{', '.join(window)} ({policy.get('timezone', 'UTC')})" if window else "none"),
            ("Prerelease", "allowed" if policy.get("allow_prerelease") else "not allowed"),
        ])

    # --- actions ----------------------------------------------------------------------------

    def selected_pin(self) -> dict[str, Any] | None:
        pins = self.pins()
        if self.selected is None or not 0 <= self.selected < len(pins):
            return None
        return pins[self.selected]

    def unavailable(self, action: str) -> str | None:
        if action == "remove_pin":
            pin = self.selected_pin()
            if pin is None:
                return "no pin selected"
            if pin.get("origin") == "config":
                return f"{pin['name']} is pinned in the config file (read-only): edit /etc/id1/agent.toml"
        if action in ("add_pin", "remove_pin") and self.versions is None:
            return "waiting for the pins"
        return None

    def action_add_pin(self) -> None:
        available = (self.versions or {}).get("available") or None
        self.app.push_screen(PinForm(available), self._pin_entered)

    def _pin_entered(self, pin: PinInput | None) -> None:
        if pin is None:
            return
        change = Pin(pin.level, pin.name, pin.version, pin.reason or None)
        body = Text(f"Pin {pin.level} {pin.name} to {pin.version}"
                    f"{f' ({pin.reason})' if pin.reason else ''}.\nThe agent plans again with it at once.")
        self._confirm(change, ConfirmDialog("Add this pin?", body, verb="pin", id="pin-confirm"))

    def action_remove_pin(self) -> None:
        pin = self.selected_pin()
        if pin is None:
            return
        body = Text(f"Remove the {pin['level']} pin {pin['name']} {pin['version']}.\n"
                    "The agent plans again without it: newer versions may follow.")
        dialog = ConfirmDialog("Remove this pin?", body, verb="remove", field=TextField("reason (optional)"),
                               id="unpin-confirm")
        self.app.push_screen(dialog, lambda answer: self._send(answer, lambda text: Unpin(pin["level"], pin["name"], text or None)))

    def action_change_channel(self) -> None:
        policy = self.policy or {}
        suites = sorted({*((policy.get("suites") or {}).keys()), *self._installed_suites()})
        self.app.push_screen(ChannelForm(policy.get("channel"), suites), self._channel_chosen)

    def _installed_suites(self) -> set[str]:
        return {ref.partition("/")[0] for ref in ((self.versions or {}).get("installed") or {})}

    def _channel_chosen(self, choice: ChannelChoice | None) -> None:
        if choice is None:
            return
        change = SetChannel(choice.channel, choice.suite, choice.reason or None)
        body = Text(f"Set the channel of {change.scope} to {choice.channel}"
                    f"{f' ({choice.reason})' if choice.reason else ''}.")
        self._confirm(change, ConfirmDialog("Change the channel?", body, verb="change", id="channel-confirm"))

    def _confirm(self, change: Change, dialog: ConfirmDialog) -> None:
        self.app.push_screen(dialog, lambda answer: self._send(answer, lambda _text: change))

    def _send(self, answer: Confirmed | None, make) -> None:
        if answer is not None:
            self.post_message(ChangeRequested(make(answer.text)))
