"""The demo's timeline: the vendor publishes, the agent acts, the narration says what happened.

    story = Story(vendor, server, sandbox.socket, narrator, id1=id1_command())
    story.start()      # a thread; story.finished is set once the last act has played
    story.stop()

Acts (each waits for the agent, never for the clock alone, so a slow machine only makes it slower):

    1  feed 1: platform 1.0.0 awaits approval. Nobody approves within APPROVE_AFTER_S? The demo
       does, with `id1 approve --yes` and a comment saying so (audited under this user's name).
    2  feed 2: a critical advisory on core/auth; the fix is deployed at once without approval.
    3  analytics goes on auto-update (`id1 policy set`), feed 3 brings analytics/report 1.1.0,
       which fails its health check: the agent rolls it back on its own and blocks 1.1.0.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.client import AgentClient
from agent.demo.errors import StoryStuck
from agent.demo.feed_server import FeedServer
from agent.demo.vendor import ADVISORY_ID, PUBLICATIONS, DemoVendor
from agent.errors import Id1Error

APPROVE_AFTER_S = 30.0
PAUSE_S = 12.0
"""Between acts, so that each one can be seen on screen before the next begins."""
ACT_TIMEOUT_S = 120.0


class Narrator:
    """Timestamped lines to ``.demo/narration.log``, and to the terminal while ``echo`` is on
    (off while the dashboard owns the terminal)."""

    def __init__(self, log: Path, *, echo: bool = True):
        self.log = log
        self.echo = echo
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        line = f"[{elapsed // 60}:{elapsed % 60:02d}] {text}"
        with self._lock:
            with self.log.open("a", encoding="utf-8") as log:
                log.write(line + "\n")
            if self.echo:  # wrapped to the terminal, continuation lines indented under the text
                width = max(40, shutil.get_terminal_size().columns - 1)
                self.echo = tell(textwrap.fill(line, width, subsequent_indent=" " * (line.index("] ") + 2), break_on_hyphens=False))


def tell(text: str) -> bool:
    """Print ``text`` on the terminal; False once the terminal is gone (closed: EIO, EPIPE)."""
    try:
        print(text, flush=True)
    except (OSError, ValueError):
        return False
    return True


class _Stopped(Exception):
    pass


class Story:
    def __init__(self, vendor: DemoVendor, server: FeedServer, socket: Path, narrator: Narrator, *, id1: list[str],
                 approve_after_s: float = APPROVE_AFTER_S, pause_s: float = PAUSE_S):
        self.vendor = vendor
        self.server = server
        self.socket = socket
        self.narrator = narrator
        self.id1 = id1
        self.approve_after_s = approve_after_s
        self.pause_s = pause_s
        self.finished = threading.Event()
        """Set once the last act has played."""
        self.ended = threading.Event()
        """Set when the timeline thread ends, however it ends."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-story", daemon=True)

    def publish(self, stage: int) -> None:
        serial = self.vendor.build(stage)
        self.server.publish()
        self.narrator.say(f"The vendor published feed serial {serial}: {PUBLICATIONS[stage].headline}.")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(15)

    # --- the acts -----------------------------------------------------------------------------

    def _run(self) -> None:
        client = AgentClient.connect(self.socket)
        try:
            self._play(client)
            self.finished.set()
        except _Stopped:
            pass
        except Id1Error as error:
            self.narrator.say(f"The demo's story stopped here: {error}")
        except Exception as error:  # a bug in the demo must not take the dashboard down with it
            self.narrator.say(f"The demo's story stopped on an unexpected error: {type(error).__name__}: {error}")
        finally:
            client.close()
            self.ended.set()

    def _play(self, client: AgentClient) -> None:
        say = self.narrator.say
        status = self._wait(client, lambda s: s.get("pending_approval") or s.get("revision"), "the first plan")
        if status.get("pending_approval"):
            approval = status["pending_approval"]["id"]
            say(f"Act 1: platform 1.0.0 awaits approval ({approval}). Approve it in the dashboard: 2, a, y.")
            status = self._wait(client, lambda s: not s.get("pending_approval") or s.get("revision"),
                                "an approval", timeout=self.approve_after_s, quiet=True)
            if status is None and self._id1("approve", approval, "--yes", "--comment",
                                            f"approved by the demo: nobody approved within {self.approve_after_s:.0f} s",
                                            decided_meanwhile=True):
                say(f"Nobody approved within {self.approve_after_s:.0f} s, so the demo approved {approval} "
                    "itself (`id1 approve --yes`; the audit screen, 6, shows it).")
            else:  # (or decided by someone just as the demo was about to)
                decided = client.approval(approval)
                who = decided.get("decided_by") or "someone"
                if decided.get("status") == "rejected":
                    raise StoryStuck(f"{approval} was rejected by {who}; nothing is installed, so there is no more "
                                     "story to tell (q quits; `make demo` starts again)")
                say(f"{approval} was approved by {who}." if decided.get("decided_by") else f"{approval} is {decided.get('status')}.")
        status = self._wait(client, lambda s: s.get("revision"), "the first deployment")
        say(f"Revision {status['revision']} is deployed: platform {status.get('platform')} runs "
            f"{_running(status)}, each a real service answering /healthz.")
        self._pause()

        self.publish(2)
        say(f"Act 2: {ADVISORY_ID} is critical, so its fix is enforced whatever the policy: "
            "it deploys without waiting for approval.")
        status = self._wait(client, lambda s: _version(s, "core/auth") == "1.0.1", "the forced security fix")
        say(f"The critical fix was forced: core/auth 1.0.0 → 1.0.1 is deployed as revision {status['revision']}, "
            "nobody approved it (audit: forced-patch).")
        self._pause()

        self._id1("policy", "set", "auto-update", "--suite", "analytics", "--reason", "demo: analytics takes updates as they come")
        say("Act 3: the admin put suite analytics on auto-update (`id1 policy set auto-update --suite analytics`).")
        seen = {entry.get("seq") for entry in client.audit(action="automatic-rollback", limit=50)}
        self.publish(3)
        say("analytics/report 1.1.0 deploys at once (auto-update), but its service answers 500 on /healthz...")
        self._wait(client, lambda s: any(entry.get("seq") not in seen for entry in client.audit(action="automatic-rollback", limit=50))
                   and _version(s, "analytics/report") == "1.0.0" and s.get("activity") == "idle",
                   "the automatic rollback")
        say("analytics/report 1.1.0 failed its health check and the agent rolled it back on its own: "
            "1.0.0 runs again and 1.1.0 is blocked (overview: 1 version blocked; audit: 6).")
        say("That is the whole story. Look around: 3 history, 5 security, 6 audit. "
            "q quits and ends everything the demo started.")

    # --- helpers ------------------------------------------------------------------------------

    def _wait(self, client: AgentClient, condition: Callable[[dict], Any], what: str, *,
              timeout: float = ACT_TIMEOUT_S, quiet: bool = False) -> dict | None:
        """Poll the agent's status until ``condition(status)``; the status then. After ``timeout``:
        None when ``quiet``, else StoryStuck."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = client.status()
                if condition(status):
                    return status
            except Id1Error:
                pass  # the agent is busy starting or restarting: ask again
            if time.monotonic() > deadline:
                if quiet:
                    return None
                raise StoryStuck(f"the agent showed no {what} within {timeout:.0f} s (see .demo/agent.log)")
            if self._stop.wait(0.5):
                raise _Stopped

    def _pause(self) -> None:
        if self._stop.wait(self.pause_s):
            raise _Stopped

    def _id1(self, *args: str, decided_meanwhile: bool = False) -> bool:
        """``id1 ARGS`` on the demo agent; True when done. With ``decided_meanwhile``, False when
        the agent refused because it was already decided (exit 5: someone was quicker)."""
        done = subprocess.run([*self.id1, *args, "--socket", str(self.socket)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120)
        with self.vendor.log.open("a", encoding="utf-8") as log:
            log.write(f"$ id1 {' '.join(args)}\n{done.stdout}{done.stderr}")
        if decided_meanwhile and done.returncode == 5:
            return False
        if done.returncode != 0:
            raise StoryStuck(f"`id1 {' '.join(args[:3])}` failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()}")
        return True


def _version(status: dict, capability: str) -> str | None:
    for state in status.get("capabilities") or []:
        if state.get("capability") == capability:
            return state.get("version")
    return None


def _running(status: dict) -> str:
    return ", ".join(f"{state['capability']} {state['version']}" for state in status.get("capabilities") or [])
