"""Blue-green capabilities on the host: two colours, one live behind nginx, switched without a gap.

A blue-green release (docs/feed-format.md, "Switch") lists unit templates. The agent writes,
for each colour, one unit file per template named for the instance (``id1-core-api@blue.service``
beside ``id1-core-api@green.service``; systemd prefers an instance's own file to the template),
from that colour's own release: ``@CURRENT@`` is the colour's release folder
(``releases/<suite>/<name>/<version>``), ``@PORT@`` its private port, ``@STATE_DIR@`` the
state folder. So the two colours run two versions side by side, each from its own files, and a
colour's files change only when it is given another release. The ``current`` link keeps naming
the live colour's release, as for any capability.

What each colour runs, its ports and the live colour are in the store (``store.colours``), and
written before they are acted on: a colour's ``runs`` before its files are written and started,
``live`` once nginx has loaded the include that routes to it. The include is always rendered
from the records of every blue-green capability, so one switch never moves another's traffic.

The engine (agent.deploy.engine) takes a deployment through these, each a journaled step:

    start_idle    write the idle colour's files for the new release, start it (a colour that
                  already runs that release and is live is left running: a resumed deployment)
    check_idle    its health (``@PORT@`` = its private port) until healthy or the release's timeout
    switch        the include routes the public port to it; nginx tested, reloaded, and seen
                  serving it (agent.deploy.proxy); the record says it is live; it is enabled,
                  the other colour disabled (after a reboot the live colour comes back)
    verify        its health through nginx: ``@PORT@`` = the public port, asked where nginx listens
    drain         ``switch.drain``: nginx's old workers finish with the old colour
    stop_others   the colour that is not live is stopped; its files stay (a rollback to it
                  starts it again without unpacking or rewriting anything)

``put_back`` is the undo, and a rollback's path too: the previous release made live by the same
steps. When the live colour still runs it (the failure came before the switch) that is only
stopping the other colour: users never left it. ``take_away`` removes a capability's
blue-green form (removed from the feed, or turned into a restart capability): out of the
include first, then both colours stopped, disabled and their files removed.

Every step can be run again after a crash and ends in the same place: a resumed deployment
finds its idle colour started already, or its switch made, and goes on from there; nginx is
given the include again whether or not it had loaded it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from agent.config import SwitchConfig
from agent.deploy.health import HealthChecker
from agent.deploy.proxy import (ColourPorts, NginxProxy, Upstream, assign_ports, loaded_probe, public_address,
                                render_include)
from agent.deploy.releases import ReleaseLayout
from agent.deploy.services import ServiceController
from agent.deploy.units import UnitFolder, release_unit_files
from agent.errors import Id1Error, PortsUnavailable
from agent.feed.switch import colour_units, health_on_port
from agent.feed.units import COLOURS, colour_unit
from agent.planning.manifest import DeployedCapability
from agent.store import Store
from agent.store.records import ColourRecord, ColourRun

logger = logging.getLogger("id1.agent")


def is_blue_green(entry: DeployedCapability | None) -> bool:
    return entry is not None and entry.switch is not None


def other_colour(colour: str) -> str:
    return COLOURS[1] if colour == COLOURS[0] else COLOURS[0]


@dataclass(frozen=True, slots=True)
class Move:
    """One capability's switch: the colour it goes to, and the one users were on (None: none)."""

    ref: str
    to: str
    was: str | None

    @property
    def switches(self) -> bool:
        return self.was != self.to


class BlueGreen:
    def __init__(
        self,
        store: Store,
        layout: ReleaseLayout,
        units: UnitFolder,
        services: ServiceController,
        health: HealthChecker,
        proxy: NginxProxy,
        config: SwitchConfig,
        *,
        wait: Callable[[float], object],
        on_step: Callable[[str], None] = lambda what: None,
    ):
        self.store = store
        self.layout = layout
        self.units = units
        self.services = services
        self.health = health
        self.proxy = proxy
        self.config = config
        self.wait = wait
        self.on_step = on_step

    # --- checks before anything changes ---------------------------------------------------------

    def check(self, wanted: Mapping[str, DeployedCapability], changing: Iterable[str]) -> dict[str, str]:
        """The unit files each of ``changing`` (blue-green entries of ``wanted``) installs,
        checked like any release's, and ports for all: PortsUnavailable or UnitError before
        anything on the host changes. Template file name → text, per ref."""
        self.ports(wanted)
        texts = {}
        for ref in changing:
            entry = wanted[ref]
            texts[ref] = release_unit_files(self.layout.release_dir(ref, entry.version), ref, entry.version, entry.units,
                                            templates=True)
            self.units.check_free(ref, [colour_unit(name, colour) for name in texts[ref] for colour in COLOURS])
        return texts

    def ports(self, wanted: Mapping[str, DeployedCapability]) -> dict[str, ColourPorts]:
        """Private ports for every blue-green capability of ``wanted`` and every one on the host.
        A capability on the host keeps its ports, even when ``switch.ports`` changed since: its
        colours listen there."""
        records = self.store.colours.all()
        public = {ref: entry.switch.port for ref, entry in wanted.items() if is_blue_green(entry)}
        public.update({ref: record.public_port for ref, record in records.items() if ref not in public})
        kept = {ref: ColourPorts.from_json(record.ports) for ref, record in records.items()}
        assigned = assign_ports(public, kept, self.config.port_range)
        held = {port: ref for ref, pair in kept.items() for port in (pair.blue, pair.green)}
        for ref, pair in assigned.items():
            clash = [held[port] for port in (pair.blue, pair.green) if ref not in kept and port in held]
            if clash:  # a kept pair partly inside a changed switch.ports
                raise PortsUnavailable(f"{ref} would get port {pair.blue} or {pair.green}, which {clash[0]}'s colours use "
                                       f"(switch.ports changed since it was deployed): move switch.ports clear of it")
        return {**assigned, **kept}

    # --- the steps --------------------------------------------------------------------------------

    def start_idle(self, items: Mapping[str, DeployedCapability]) -> list[Move]:
        """Start each release in the colour users are not on (see the module's docstring)."""
        ports = self.ports(items)
        moves = []
        for ref, entry in sorted(items.items()):
            record = self.store.colours.get(ref) or ColourRecord(public_port=entry.switch.port, ports=ports[ref].to_json())
            run = _run_of(entry)
            if record.live is not None and record.runs.get(record.live) == run:
                to = record.live  # switched already (a resumed deployment), or nothing to switch
            elif record.live is not None:
                to = other_colour(record.live)
            else:  # nothing live: a colour that has this release's files, or blue
                to = next((colour for colour in COLOURS if record.runs.get(colour) == run), COLOURS[0])
            record = record.model_copy(update={"public_port": entry.switch.port, "runs": {**record.runs, to: run}})
            self.store.colours.put(ref, record)  # before the files: an undo then knows to stop it
            self._start(ref, entry, to, record)
            moves.append(Move(ref, to, record.live))
            self.on_step(f"starting {ref} {to}")
        return moves

    def check_idle(self, moves: list[Move], items: Mapping[str, DeployedCapability]) -> None:
        for move in moves:
            entry = items[move.ref]
            port = self._record(move.ref).ports[move.to]
            result = self.health.wait_healthy(colour_units(entry.units, move.to), health_on_port(entry.health, port))
            if not result.healthy:
                users = f"users stayed on {move.was}" if move.switches and move.was else "no user was sent to it"
                raise Id1Error(f"{move.ref} {entry.version} is not healthy in colour {move.to} (port {port}): "
                               f"{result.detail}; {users}")

    def switch(self, moves: list[Move]) -> None:
        """Route each public port to its move's colour, and record it live once nginx serves it."""
        records = self.store.colours.all()
        for move in moves:
            records[move.ref] = records[move.ref].model_copy(update={"live": move.to})
        self._route(records)
        with self.store.batch():
            for move in moves:
                self.store.colours.put(move.ref, records[move.ref])
        for move in moves:
            record = records[move.ref]
            self.layout.switch_current(move.ref, record.runs[move.to].version)
            self.services.enable(colour_units(record.runs[move.to].units, move.to))
            other = other_colour(move.to)
            if other in record.runs:
                self.services.disable(self._loaded(colour_units(record.runs[other].units, other)))
            self.on_step(f"switching {move.ref} {move.to}")

    def verify(self, moves: list[Move], items: Mapping[str, DeployedCapability]) -> None:
        """Each live colour's health asked through nginx: users reach it."""
        host = public_address(self.config.listen)
        for move in moves:
            entry = items[move.ref]
            record = self._record(move.ref)
            result = self.health.wait_healthy(colour_units(entry.units, move.to),
                                              health_on_port(entry.health, record.public_port, host=host))
            if not result.healthy:
                raise Id1Error(f"{move.ref} {entry.version} is not healthy through nginx (port {record.public_port}, "
                               f"colour {move.to}): {result.detail}")

    def must_drain(self, moves: list[Move]) -> bool:
        """A colour users left still runs: one they left now, or one left before the agent was
        cut off (a resumed deployment drains again: nginx's old workers may still use it)."""
        if self.config.drain_s <= 0:
            return False
        return any(move.switches and move.was is not None or (not move.switches and self._other_runs(move.ref))
                   for move in moves)

    def drain(self, moves: list[Move]) -> None:
        """Let the colours users left finish their requests (``switch.drain``)."""
        if self.must_drain(moves):
            self.wait(self.config.drain_s)

    def stop_others(self, refs: Iterable[str]) -> None:
        """Stop and disable the colour that is not live (its files stay)."""
        for ref in refs:
            record = self._record(ref)
            if record.live is None:
                continue
            other = other_colour(record.live)
            if other in record.runs:
                loaded = self._loaded(colour_units(record.runs[other].units, other))
                self.services.stop(loaded)
                self.services.disable(loaded)
            self.on_step(f"stopping {ref} {other}")

    # --- undo, and leaving ------------------------------------------------------------------------

    def put_back(self, ref: str, entry: DeployedCapability) -> None:
        """Make ``entry`` live again by the same steps (an undo, a rollback's failure)."""
        [move] = self.start_idle({ref: entry})
        self.check_idle([move], {ref: entry})
        if move.switches:
            self.switch([move])
            self.drain([move])
        else:  # users never left it: make sure nginx says so (an include written before a crash)
            self._route(self.store.colours.all())
        self.stop_others([ref])

    def take_away(self, ref: str) -> bool:
        """Remove ``ref``'s blue-green form: out of nginx, both colours stopped and disabled, their
        files removed, its record dropped. True when unit files went (reload systemd)."""
        record = self.store.colours.get(ref)
        if record is None:
            return False
        if record.live is not None:
            records = self.store.colours.all()
            records[ref] = record.model_copy(update={"live": None})
            self._route(records)
            self.store.colours.put(ref, records[ref])
        names = [unit for colour, run in record.runs.items() for unit in colour_units(run.units, colour)]
        loaded = self._loaded(names)
        self.services.stop(loaded)
        self.services.disable(loaded)
        removed = self.units.remove(ref, names)
        self.store.colours.remove(ref)
        return bool(removed)

    # --- what the rest of the agent asks ------------------------------------------------------------

    def live_units(self, ref: str, entry: DeployedCapability) -> list[str]:
        record = self.store.colours.get(ref)
        return colour_units(entry.units, record.live) if record and record.live else []

    def probe(self, ref: str, entry: DeployedCapability) -> str | None:
        """The live colour's health now, through nginx (the bake watch); None when healthy."""
        record = self.store.colours.get(ref)
        if record is None or record.live is None:
            return f"{ref} has no live colour"
        return self.health.probe(colour_units(entry.units, record.live),
                                 health_on_port(entry.health, record.public_port, host=public_address(self.config.listen)))

    # --- helpers ------------------------------------------------------------------------------------

    def _start(self, ref: str, entry: DeployedCapability, colour: str, record: ColourRecord) -> None:
        release = self.layout.release_dir(ref, entry.version)
        if not release.is_dir():
            raise Id1Error(f"cannot start {ref} {entry.version} in colour {colour}: its release folder {release} is gone")
        texts = release_unit_files(release, ref, entry.version, entry.units, strict=False, templates=True)
        files = {colour_unit(name, colour): text for name, text in texts.items()}
        written = self.units.install(ref, files, current=release, port=record.ports[colour])
        if written:
            self.units.sync()
            self.services.daemon_reload()
        names = colour_units(entry.units, colour)
        if not written and all(self.services.state(name) == "active" for name in names):
            return  # running this very release already (users on it, or still draining): it stays running
        self.services.reset_failed(names)
        if written:
            self.services.restart(names)
        else:
            self.services.start(names)

    def _route(self, records: Mapping[str, ColourRecord]) -> None:
        live = {ref: Upstream(record.public_port, record.live, record.ports[record.live])
                for ref, record in records.items() if record.live is not None}
        listen = self.config.listen
        self.proxy.apply(render_include(live, listen), loaded=loaded_probe(live, listen))

    def _other_runs(self, ref: str) -> bool:
        record = self._record(ref)
        other = other_colour(record.live) if record.live else None
        if other is None or other not in record.runs:
            return False
        return any(self.services.state(unit) == "active" for unit in self._loaded(colour_units(record.runs[other].units, other)))

    def _record(self, ref: str) -> ColourRecord:
        record = self.store.colours.get(ref)
        if record is None:
            raise Id1Error(f"{ref} has no blue-green record: the deployment lost track of its colours")
        return record

    def _loaded(self, units: list[str]) -> list[str]:
        """The units whose files are there (stopping one that never was is an error for systemd)."""
        return [unit for unit in units if (self.units.unit_dir / unit).is_file()]


def _run_of(entry: DeployedCapability) -> ColourRun:
    return ColourRun(version=entry.version, sha256=entry.artifact.sha256, units=tuple(entry.units))

