"""``python -m agent.demo`` (what ``make demo`` runs): the whole set-up, the dashboard, the clean-up.

    python -m agent.demo                       # needs a terminal: opens `id1 tui` on the sandbox
    python -m agent.demo --headless 180        # no dashboard: print the story, end after it (or 180 s)

Start: claim the sandbox (``.demo/`` in the current folder, wiped), make the vendor's key and
first feed, serve it on loopback, configure and start the agent, then play the story (a thread)
while ``id1 tui`` runs in the foreground. End — ``q`` in the dashboard, Ctrl-C, SIGTERM or
SIGHUP (the terminal closed) — stop the story, SIGTERM the agent, stop every unit through
systemctl3, stop the feed server, and end any process still referring to the sandbox.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from agent.demo.feed_server import FeedServer
from agent.demo.host import DemoAgent, find_systemctl3, id1_command
from agent.demo.sandbox import Sandbox, processes_referring_to
from agent.demo.story import APPROVE_AFTER_S, PAUSE_S, Narrator, Story, tell
from agent.demo.vendor import CAPABILITIES, DemoVendor
from agent.errors import Id1Error

READ_TIME_S = 5.0
"""How long the introduction stays on screen before the dashboard covers it (Enter skips)."""


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP: end the demo, cleaning up as for ``q``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agent.demo",
        description="A sandboxed ID-1 host that plays out approvals, a forced security fix and an automatic "
        "rollback in `id1 tui`. Everything lives in the sandbox folder; q ends everything.",
    )
    parser.add_argument("--sandbox", type=Path, default=Path(".demo"), metavar="DIR",
                        help="the sandbox folder, wiped at start (default: .demo)")
    parser.add_argument("--headless", type=float, metavar="SECONDS",
                        help="no dashboard: print the story and end once it has played (or after SECONDS)")
    parser.add_argument("--approve-after", type=float, default=APPROVE_AFTER_S, metavar="SECONDS",
                        help=f"approve the first install if nobody has after this long (default {APPROVE_AFTER_S:g})")
    parser.add_argument("--pause", type=float, default=PAUSE_S, metavar="SECONDS",
                        help=f"pause between acts (default {PAUSE_S:g})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.headless is None and not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("make demo opens a dashboard and needs a terminal: run it in one "
              "(or `python -m agent.demo --headless 300` to print the story)", file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        return Demo(args).run()
    except Interrupted:
        tell("demo: interrupted; everything it started has been stopped")
        return 130
    except Id1Error as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1


def _interrupt(signum: int, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


class Demo:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.sandbox = Sandbox.claim(args.sandbox)
        self.narrator = Narrator(self.sandbox.narration)
        self.id1 = id1_command()
        self.server: FeedServer | None = None
        self.agent = DemoAgent(self.sandbox, id1=self.id1)
        self.story: Story | None = None
        self.tui: subprocess.Popen | None = None

    def run(self) -> int:
        try:
            self._introduce()
            self._set_up()
            if self.args.headless is not None:
                return self._play_headless(self.args.headless)
            return self._run_dashboard()
        finally:
            self._clean_up()

    def _introduce(self) -> None:
        where = _shown(self.sandbox.root)
        for line in (
            f"id1 demo: a sandboxed ID-1 host in {where}/ (no root; nothing outside is touched)",
            "",
            "  vendor  a demo key; feeds built with `id1 feed build`, served on loopback",
            "  host    `id1 agent run`, units run by systemctl3 --root, 3 tiny HTTP services",
            "  policy  manual approval; critical advisories are enforced whatever the policy",
            "",
            "What the dashboard will show within about two minutes:",
            f"  1. Platform 1.0.0 awaits approval: press 2, a, y (or the demo does, {self.args.approve_after:.0f} s on).",
            "  2. A critical advisory for core/auth: its fix deploys at once, unapproved.",
            "  3. Analytics goes on auto-update; its release 1.1.0 fails its health check",
            "     and the agent rolls it back on its own.",
            "Keys: 1-7 screens (2 updates, 3 history, 6 audit), ? help, q quits, ends all.",
            f"Narration: {where}/narration.log   agent log: {where}/agent.log",
            "",
        ):
            tell(line)

    def _set_up(self) -> None:
        say = self.narrator.say
        ports = dict(zip(CAPABILITIES, _free_ports(len(CAPABILITIES)), strict=True))
        vendor = DemoVendor(self.sandbox.vendor, ports, id1=self.id1, python=sys.executable, log=self.sandbox.root / "commands.log")
        public_key = vendor.make_key()
        say(f"The vendor made its signing key ({public_key[:12]}…), trusted by the demo agent.")
        self.server = FeedServer(vendor.feed).start()
        self.story = Story(vendor, self.server, self.sandbox.socket, self.narrator, id1=self.id1,
                           approve_after_s=self.args.approve_after, pause_s=self.args.pause)
        self.story.publish(1)
        self.agent.configure(self.server.url, public_key, find_systemctl3())
        self.agent.start()
        say(f"The agent runs (pid {self.agent.process.pid}), serving its API on {_shown(self.sandbox.socket)}.")
        self.story.start()

    def _play_headless(self, seconds: float) -> int:
        self.story.ended.wait(seconds)
        if self.story.finished.is_set():
            return 0
        if not self.story.ended.is_set():
            self.narrator.say(f"The story did not finish within {seconds:g} s.")
        return 1

    def _run_dashboard(self) -> int:
        tell(f"Opening the dashboard in {READ_TIME_S:.0f} s (Enter: now)...")
        _wait_for_enter(READ_TIME_S)
        self.narrator.echo = False  # the dashboard owns the terminal from here
        self.tui = subprocess.Popen([*self.id1, "tui", "--socket", str(self.sandbox.socket)])
        code = self.tui.wait()
        self.tui = None
        return code

    def _clean_up(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        if self.tui is not None:
            _end_dashboard(self.tui)
        # The terminal may be gone (closed: SIGHUP): then nothing is printed, and the clean-up goes on.
        self.narrator.echo = tell("Stopping the demo...")
        if self.story is not None:
            self.story.stop()
        stopped = self.agent.stop()
        if self.server is not None:
            self.server.stop()
            stopped.append("the feed server")
        swept = self.sandbox.end_leftovers()
        if swept:
            stopped.append(f"{len(swept)} leftover process(es)")
        left = _still_referring(self.sandbox.root)
        self.narrator.say("Stopped " + ("; ".join(stopped) or "nothing (nothing had started)") + ".")
        if left:
            self.narrator.say(f"Processes {', '.join(map(str, left))} still refer to {self.sandbox.root} and could not be ended.")
        else:
            tell(f"Nothing of the demo runs any more. Its files stay in {_shown(self.sandbox.root)}/ until the next `make demo`.")
        self.sandbox.pid_file.unlink(missing_ok=True)


def _still_referring(root: Path, settle_s: float = 2.0) -> list[int]:
    """Processes still referring to the sandbox once those just killed have had time to go."""
    deadline = time.monotonic() + settle_s
    while (left := processes_referring_to(root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _free_ports(count: int) -> list[int]:
    """Loopback ports free right now, one per capability service (they keep theirs across versions)."""
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def _wait_for_enter(seconds: float) -> None:
    try:
        ready, _, _ = select.select([sys.stdin], [], [], seconds)
        if ready:
            sys.stdin.readline()
    except (OSError, ValueError):
        time.sleep(seconds)


def _end_dashboard(tui: subprocess.Popen) -> None:
    """The dashboard outlived the demo (a signal): end it and give the terminal back sane."""
    if tui.poll() is None:
        tui.terminate()
        try:
            tui.wait(5)
        except subprocess.TimeoutExpired:
            tui.kill()
            tui.wait(5)
    try:
        if sys.stdout.isatty():
            # Leave the alternate screen, show the cursor, stop mouse reporting; then cooked mode.
            sys.stdout.write("\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1003l\x1b[?1006l")
            sys.stdout.flush()
            subprocess.run(["stty", "sane"], stdin=sys.stdin, stderr=subprocess.DEVNULL, check=False, timeout=10)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass  # the terminal is gone


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when inside it (``.demo``), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
