"""Dashboard benchmarks (DESIGN.md §10): ``id1 tui`` starting against the real daemon, and moving
the cursor through a history of 1,000 revisions.

**Start to the first complete frame** (target ≤ 1.0 s). The real daemon
(``tests.api.populated``: two revisions, a pending approval, an advisory) is read by the real
``AgentClient``. A complete frame is the first one handed to the terminal in which the overview
shows the agent's status *and* the running revision's manifest (the platform tree). Two figures:

- in process: from building ``DashboardApp`` to that frame, under ``App.run_test(size=(80, 24))``
  (Textual already imported; the live event stream off: it draws nothing, and a stream left
  open by an app that ends inside this process would hold up the daemon's shutdown); beside it,
  the same harness on a trivial Textual app with one ``Static``, until its first frame.
- as a person sees it: from starting ``python -m agent.cli.main tui`` on an 80x24 pseudo-terminal
  to the bytes of that frame having arrived (interpreter start and imports included); beside it,
  a trivial Textual app with one ``Static`` started the same way, until its text arrived.

**Scrolling 1,000 revisions** (target ≤ 50 ms a frame). History holds 1,000 revisions (the fake
agent of the dashboard tests: the daemon would take minutes to make 1,000 deployments, and only
the dashboard is timed here). Each cursor move is one ``down`` key handed to the app's driver,
and its figure is the time from that key to the frame, handed to the terminal, that shows the
cursor on the next row *and* that revision's details. The moves start at row 100, the cursor at
the bottom of the view, so every one of them scrolls the list. Measured: single moves with the
app at rest in between (then it has also fetched and shown what rolling back would change, which
the CPU time per move includes), and a held key (one ``down`` every 30 ms, a usual key-repeat
rate). Also printed: the time spent composing each frame. Beside them, the same harness on a
bare ``DataTable`` with the same 1,000 rows, as tall as the dashboard's list: the floor of a
Textual table on this machine. Last, for comparison with figures taken with Textual's test
harness: the same moves timed around ``pilot.press`` (which returns once the app is idle, in
20 ms steps), dashboard and bare table.

Every figure is the median of several runs; the machine is named. Targets are asserted with
``ID1_BENCH_ENFORCE=1``, twice them always (bounds.py); what each frame shows is always checked.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import select
import statistics
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Static

from agent.client import AgentClient
from tests.api.populated import populated_site
from tests.benchmarks.bounds import at_most
from tests.benchmarks.test_api_benchmark import machine
from tests.tui.conftest import screen_text
from tests.tui.fake import fake_with_history
from tests.tui.settle import settle
from tui.app import DashboardApp
from tui.manifests import difference
from tui.screens.history import HistoryScreen
from tui.screens.overview import OverviewScreen
from tui.text import move

pytestmark = pytest.mark.benchmark

REPO = Path(__file__).resolve().parents[2]
TARGET_START_S = 1.0
TARGET_FRAME_S = 0.050
START_ROUNDS = 5
REVISIONS = 1_000
START_ROW = 100
SINGLE_MOVES = 30
HELD_MOVES = 60
PILOT_MOVES = 20
KEY_REPEAT_S = 0.030

TRIVIAL_APP = """
from textual.app import App
from textual.widgets import Static

class Trivial(App):
    BINDINGS = [("q", "quit")]

    def compose(self):
        yield Static("trivial app: first frame")

Trivial().run()
"""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


class FrameLog:
    """Every frame the app hands to its driver: when, and what ``probe()`` said of the app then.

    Headless apps compose each frame but do not turn it into terminal bytes; this does that too
    (``render_segments``), so a frame costs what it costs on a terminal, minus the write."""

    def __init__(self, app: App, probe: Callable[[], Any]) -> None:
        self.frames: list[tuple[float, Any]] = []
        self._new_frame = asyncio.Event()
        display = app._display

        def recorded(screen: Screen, renderable: Any) -> None:
            if renderable is not None:
                if hasattr(renderable, "render_segments"):
                    renderable.render_segments(app.console)
                self.frames.append((time.perf_counter(), probe()))
                self._new_frame.set()
            display(screen, renderable)

        app._display = recorded  # type: ignore[method-assign]

    def first(self, since: int, wanted: Callable[[Any], bool]) -> float | None:
        return next((moment for moment, seen in self.frames[since:] if wanted(seen)), None)

    async def wait(self, since: int, wanted: Callable[[Any], bool], *, timeout: float = 10.0, what: str = "a frame") -> float:
        """When the first frame from ``since`` on that ``wanted`` what the probe saw was drawn."""
        deadline = time.monotonic() + timeout
        while (moment := self.first(since, wanted)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last frames: {self.frames[-3:]}")
            self._new_frame.clear()
            try:
                await asyncio.wait_for(self._new_frame.wait(), left)
            except TimeoutError:
                pass
        return moment


class FrameTimes:
    """How long each screen update (layout, compositing, rendering: one frame) took, while active."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.active = False

    def __enter__(self) -> FrameTimes:
        original = self._original = Screen._on_timer_update
        times = self

        def timed(screen: Screen) -> None:
            started = time.perf_counter()
            try:
                original(screen)
            finally:
                if times.active:
                    times.durations.append(time.perf_counter() - started)

        Screen._on_timer_update = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc_info: object) -> None:
        Screen._on_timer_update = self._original  # type: ignore[method-assign]


# --- start to the first complete frame ----------------------------------------------------------

class Trivial(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("trivial app: first frame")


def overview_complete(app: DashboardApp) -> bool:
    screen = app.screen
    return (isinstance(screen, OverviewScreen) and screen.status is not None and screen.current is not None
            and screen.current.get("number") == screen.status.get("revision"))


async def start_in_process(make: Callable[[], App], complete: Callable[[App], bool]) -> tuple[float, App]:
    started = time.perf_counter()
    app = make()
    log = FrameLog(app, lambda: complete(app))
    async with app.run_test(size=(80, 24)):
        shown = await log.wait(0, bool, timeout=30, what="the first complete frame")
        return shown - started, app


def dashboard_on(socket: Path) -> Callable[[], DashboardApp]:
    def make() -> DashboardApp:
        return DashboardApp(AgentClient.connect(socket), refresh_s=0, live=False)
    return make


ESCAPES = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78])")


def start_on_a_terminal(command: list[str], markers: list[bytes], *, timeout: float = 30) -> float:
    """Start ``command`` on an 80x24 pseudo-terminal; seconds until every marker has been drawn
    (escape sequences removed), then ``q`` ends it (it must, within 10 s)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {key: value for key, value in os.environ.items() if not key.startswith("TEXTUAL")}
    env.update(TERM="xterm-256color", LANG="C.UTF-8", PYTHONPATH=str(REPO))
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=REPO,
                               start_new_session=True)
    os.close(follower)
    seen = bytearray()
    try:
        deadline = time.monotonic() + timeout
        while True:
            text = ESCAPES.sub(b"", bytes(seen))
            if all(marker in text for marker in markers):
                return time.perf_counter() - started
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(f"{command} did not draw {markers} within {timeout:g} s: {bytes(seen)[-1500:]!r}")
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    seen.extend(os.read(leader, 65536))
                except OSError:
                    pass
    finally:
        try:
            os.write(leader, b"q")
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(leader)


def test_start_to_the_first_complete_frame_against_the_real_daemon(tmp_path):
    trivial_script = tmp_path / "trivial_app.py"
    trivial_script.write_text(TRIVIAL_APP)
    with populated_site() as host:
        socket = host.site.socket
        status = host.site.status()
        pending = status["pending_approval"]["id"]
        # What the complete overview shows: the status (the pending approval) and the manifest
        # (the suite's version is only in the manifest; the status-only tree leaves it out).
        suite_version = AgentClient.connect(socket).revision(status["revision"])["manifest"]["suites"]["core"]["version"]
        markers = [f"{pending}: 1 change AWAIT approval".encode(), f"core {suite_version}".encode()]

        in_process, baseline_in_process, on_terminal, baseline_on_terminal = [], [], [], []
        asyncio.run(start_in_process(Trivial, lambda app: True))  # warm-up (first CSS parse, caches)
        for _ in range(START_ROUNDS):
            seconds, app = asyncio.run(start_in_process(dashboard_on(socket), overview_complete))
            in_process.append(seconds)
            app.client.close()
            baseline_in_process.append(asyncio.run(start_in_process(Trivial, lambda app: True))[0])
        for _ in range(START_ROUNDS):
            on_terminal.append(start_on_a_terminal([sys.executable, "-m", "agent.cli.main", "tui", "--socket", str(socket)],
                                                   markers))
            baseline_on_terminal.append(start_on_a_terminal([sys.executable, str(trivial_script)],
                                                            [b"trivial app: first frame"]))

    figures = {name: statistics.median(values) for name, values in (
        ("app", in_process), ("base_app", baseline_in_process), ("tty", on_terminal), ("base_tty", baseline_on_terminal))}
    print(f"\nid1 tui, start to the first complete frame (the overview with the agent's status and the running "
          f"manifest), real daemon, 80x24, medians of {START_ROUNDS} ({machine()}):\n"
          f"  in process (App.run_test): {ms(figures['app'])}; trivial one-Static app, same harness: "
          f"{ms(figures['base_app'])} ({figures['app'] / figures['base_app']:.1f}x)\n"
          f"  `python -m agent.cli.main tui` on a pty, imports included: {ms(figures['tty'])} (target <= "
          f"{ms(TARGET_START_S)}); trivial one-Static app started the same way: {ms(figures['base_tty'])} "
          f"({figures['tty'] / figures['base_tty']:.1f}x, {ms(figures['tty'] - figures['base_tty'])} more)")
    at_most("first complete frame through the CLI", figures["tty"], TARGET_START_S, " s")


# --- scrolling 1,000 revisions ------------------------------------------------------------------

class BareTable(App[None]):
    """The baseline: a DataTable with the same 1,000 rows and the same border, as tall as the
    dashboard's list (so a scrolling move repaints as many rows), and nothing else."""

    CSS = "DataTable { border: round $primary; }"

    def __init__(self, height: int) -> None:
        super().__init__()
        self.table_height = height

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.styles.height = self.table_height
        for label in ("rev", "deployed", "platform", "feed", "deployment", ""):
            table.add_column(label)
        for number in range(REVISIONS, 0, -1):
            table.add_row(str(number), "2026-11-21 08:00 UTC", "2.4.0", str(38 + number), f"deployment-{number}",
                          "RUNNING" if number == REVISIONS else "")
        table.focus()


async def scroll(app: App, table: DataTable, log: FrameLog, frame_times: FrameTimes, *,
                 rest: Callable[[int], Any] | None = None, check: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """From row ``START_ROW`` (the cursor at the bottom of the view, so every move scrolls the
    list), ``SINGLE_MOVES`` moves with the app at rest between them, then ``HELD_MOVES`` at the
    key-repeat rate.

    After each single move: ``await rest(row)`` (until the app has done all a move makes it do),
    the CPU time taken, then ``check(row)``."""
    press = lambda: app._driver.send_message(events.Key("down", None))  # noqa: E731
    since = len(log.frames)
    table.move_cursor(row=START_ROW, animate=False)
    await log.wait(since, lambda seen: seen[0] == START_ROW, what=f"the cursor on row {START_ROW}")
    if rest is not None:
        await rest(START_ROW)
    single, cpu, held = [], [], []
    frame_times.active = True
    for _ in range(SINGLE_MOVES):
        row = table.cursor_row + 1
        since = len(log.frames)
        started, cpu_started = time.perf_counter(), time.process_time()
        press()
        shown = await log.wait(since, lambda seen, row=row: seen[0] == row, what=f"the cursor on row {row}")
        single.append(shown - started)
        if rest is not None:
            await rest(row)
        cpu.append(time.process_time() - cpu_started)
        if check is not None:
            check(row)
        await asyncio.sleep(0.05)  # the app at rest again before the next key
    sent: list[tuple[int, float, int]] = []
    for _ in range(HELD_MOVES):
        row = sent[-1][0] + 1 if sent else table.cursor_row + 1
        sent.append((row, time.perf_counter(), len(log.frames)))
        press()
        await asyncio.sleep(KEY_REPEAT_S)
    for row, started, since in sent:
        # A frame showing this row, or one past it (keys that came within one frame share it).
        shown = await log.wait(since, lambda seen, row=row: seen[0] >= row, what=f"the cursor on row {row}")
        held.append(shown - started)
    frame_times.active = False
    assert table.cursor_row == START_ROW + SINGLE_MOVES + HELD_MOVES
    return {"single": single, "cpu": cpu, "held": held}


async def scroll_dashboard(frame_times: FrameTimes) -> tuple[dict[str, list[float]], int]:
    """The figures, and the height of the list (the baseline's table is made as tall)."""
    fake = fake_with_history(REVISIONS)
    app = DashboardApp(fake, refresh_s=0, live=False, coalesce_s=0.02)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("3")
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, HistoryScreen)
            table = screen.query_one("#revisions", DataTable)
            assert table.row_count == REVISIONS and table.cursor_row == 0
            # A move is shown once the frame has the cursor on the row *and* that revision's facts.
            log = FrameLog(app, lambda: (table.cursor_row if screen.selected == REVISIONS - table.cursor_row else -1,
                                         screen.detail_shown))

            async def details_shown(row: int) -> None:
                # Once the cursor rests, the pane shows what rolling back to that revision changes.
                number = REVISIONS - row
                await log.wait(0, lambda seen: seen[0] == row and seen[1] == number, timeout=5,
                               what=f"revision {number}'s details")

            def details_right(row: int) -> None:
                number = REVISIONS - row
                text = screen_text(app)
                assert f"Revision   {number}, platform {fake.revisions_kept[number]['manifest']['platform']}" in text, text
                moves = difference(fake.revisions_kept[REVISIONS]["manifest"], fake.revisions_kept[number]["manifest"])
                summary = (f"from revision {REVISIONS} it would change {len(moves)} capabilit" if moves
                           else f"the same versions as the running revision {REVISIONS}")
                assert summary in text, text
                listed = [change for change in moves if re.search(
                    rf"{re.escape(change.capability)}\s+{re.escape(move(change.from_version, change.to_version))}", text)]
                # The first ones, then how many more the rollback preview lists (the pane has a fixed height).
                assert listed == moves[:len(listed)] and len(listed) >= min(len(moves), 2), (moves, text)
                assert len(listed) == len(moves) or f"... and {len(moves) - len(listed)} more" in text, (moves, text)
                assert str(number) in text.split("Revisions, newest first")[1].split("Revision ")[0]  # the row is in view

            figures = await scroll(app, table, log, frame_times, rest=details_shown, check=details_right)
            assert screen.selected == REVISIONS - table.cursor_row
            return figures, table.outer_size.height
    finally:
        fake.close()


async def scroll_bare(frame_times: FrameTimes, height: int) -> dict[str, list[float]]:
    app = BareTable(height)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(DataTable)
        assert table.outer_size.height == height
        log = FrameLog(app, lambda: (table.cursor_row, None))
        return await scroll(app, table, log, frame_times)


async def through_pilot(app: App, table: Callable[[App], DataTable], prepare: Callable[[Any], Any]) -> list[float]:
    """The same moves as Textual's test harness times them: ``pilot.press("down")`` returns once the
    app has gone idle (measured in 20 ms steps of CPU time), so the figure includes that wait."""
    async with app.run_test(size=(80, 24)) as pilot:
        await prepare(pilot)
        table(app).move_cursor(row=START_ROW, animate=False)
        await pilot.pause(0.3)
        times = []
        for _ in range(PILOT_MOVES):
            started = time.perf_counter()
            await pilot.press("down")
            times.append(time.perf_counter() - started)
        assert table(app).cursor_row == START_ROW + PILOT_MOVES
        return times


async def dashboard_through_pilot() -> list[float]:
    fake = fake_with_history(REVISIONS)
    try:
        async def to_history(pilot) -> None:
            await settle(pilot)
            await pilot.press("3")
            await settle(pilot)

        return await through_pilot(DashboardApp(fake, refresh_s=0, live=False, coalesce_s=0.02),
                                   lambda app: app.screen.query_one("#revisions", DataTable), to_history)
    finally:
        fake.close()


async def bare_through_pilot(height: int) -> list[float]:
    async def ready(pilot) -> None:
        await pilot.pause()

    return await through_pilot(BareTable(height), lambda app: app.query_one(DataTable), ready)


def test_frame_time_scrolling_a_history_of_1000_revisions():
    with FrameTimes() as dashboard_frames:
        dashboard, height = asyncio.run(scroll_dashboard(dashboard_frames))
    with FrameTimes() as bare_frames:
        bare = asyncio.run(scroll_bare(bare_frames, height))
    pilot_dashboard = statistics.median(asyncio.run(dashboard_through_pilot()))
    pilot_bare = statistics.median(asyncio.run(bare_through_pilot(height)))

    def line(name: str, figures: dict[str, list[float]], frames: FrameTimes) -> str:
        return (f"  {name}: one move {ms(statistics.median(figures['single']))} (p90 "
                f"{ms(statistics.quantiles(figures['single'], n=10)[-1])}), held key {ms(statistics.median(figures['held']))} "
                f"(max {ms(max(figures['held']))}); composing a frame {ms(statistics.median(frames.durations))} "
                f"(max {ms(max(frames.durations))}); CPU per move {ms(statistics.median(figures['cpu']))}")

    print(f"\nid1 tui History, {REVISIONS} revisions, 80x24, key to the frame showing the cursor moved and that revision's facts, medians of "
          f"{SINGLE_MOVES} single moves and {HELD_MOVES} held-key moves (one per {ms(KEY_REPEAT_S)}) ({machine()}):\n"
          f"{line('dashboard  ', dashboard, dashboard_frames)}\n"
          f"{line('bare table ', bare, bare_frames)}\n"
          f"  ratio one move {statistics.median(dashboard['single']) / statistics.median(bare['single']):.1f}x, "
          f"held key {statistics.median(dashboard['held']) / statistics.median(bare['held']):.1f}x "
          f"(target <= {ms(TARGET_FRAME_S)} a move)\n"
          f"  through Textual's pilot.press (returns once the app is idle, in 20 ms steps), medians of {PILOT_MOVES}: "
          f"dashboard {ms(pilot_dashboard)}, bare table {ms(pilot_bare)} ({pilot_dashboard / pilot_bare:.1f}x)")
    at_most("one cursor move in a History of 1,000 revisions", statistics.median(dashboard["single"]), TARGET_FRAME_S, " s")
    at_most("a held-key move in a History of 1,000 revisions", statistics.median(dashboard["held"]), TARGET_FRAME_S, " s")
