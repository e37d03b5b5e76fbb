"""A local user in no role group attacks the real daemon through its 0666 socket (issue 12).

The daemon is ``id1 agent run`` as a subprocess (``tests.daemon.site.Site``) with the descriptor
limit a systemd service gets by default (soft RLIMIT_NOFILE 1024). The attacker is a throwaway
Unix user in no group; its connections come from a forked child that dropped to that user before
connecting, so the daemon sees that user's credentials, as it would for anyone logged in.

    idle connections   1,100 connections that send nothing, re-opened as soon as the agent
                       closes one: root's ``id1 status`` and ``id1 check`` still work, the
                       agent holds a bounded number of them, and its log stays small
    a huge body        1 GB streamed to a route by a user with no role: 403 at once, nothing
                       read (the daemon's memory does not grow); an admin's oversized body: 413
    the schema         /openapi.json and /docs need the viewer role, like every other read
"""

from __future__ import annotations

import json
import os
import pwd
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from agent.api.limits import ApiLimits
from tests.api.conftest import ThrowawayAccounts
from tests.api.test_api_limits import drop_to, keep_only
from tests.daemon.site import REPO, Release, Site, poll_until
from tests.test_engine import SYSTEMCTL3

SYSTEMD_DEFAULT_NOFILE = 1024
IDLE_CONNECTIONS = 1_100
ADMIN_ANSWERS_WITHIN = 5.0  # seconds, for `id1 status` as root during the attack
HELD_AT_MOST = ApiLimits().max_per_user  # connections of one user the agent holds at once
LOG_LINES_AT_MOST = 100
LOG_BYTES_AT_MOST = 50_000


@pytest.fixture(scope="module")
def site(accounts: ThrowawayAccounts) -> Iterator[Site]:
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    box = Site(nofile=SYSTEMD_DEFAULT_NOFILE)
    try:
        box.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
        box.configure("manual-approval", extra=accounts.roles_toml())
        box.start()
        poll_until(lambda: status_of(box)["pending_approval"], what="the first approval")
        yield box
    finally:
        box.close()


def status_of(site: Site) -> dict:
    """GET /status as root, straight from the API."""
    answer = site.get("/status")
    assert answer.status_code == 200, answer.text
    return answer.json()


# ------------------------------------------------------------------ idle connections


@dataclass
class AttackReport:
    connects: int  # connections the attacker opened, re-openings included
    closed_by_agent: int  # of those, how many the agent closed
    closed_after_holding: int  # of those, how many it had kept open for 3 s or more (idle, then cut)
    open_at_most: int  # the most of its connections not closed yet, after the first round (queued ones too)
    open_at_end: int
    rounds: int


class IdleConnections:
    """A forked child, dropped to ``user``, holding ``count`` connections that send nothing.

    Once a second it looks which ones the agent closed and opens them again, as an attacker
    would, until ``stop()``. ``ready`` is set once all ``count`` have been opened.
    """

    def __init__(self, user: str, path: str, count: int, interval: float = 1.0):
        self.user, self.path, self.count, self.interval = user, path, count, interval

    def __enter__(self) -> IdleConnections:
        entry = pwd.getpwnam(self.user)
        ready_read, ready_write = os.pipe()
        report_read, report_write = os.pipe()
        stop_read, stop_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            try:
                keep_only(ready_write, report_write, stop_read)
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker's own limit is not ours to test
                drop_to(self.user)
                assert os.getuid() == entry.pw_uid
                report = self._attack(ready_write, stop_read)
            except BaseException as error:  # noqa: BLE001 - everything goes back to the parent
                report = {"error": repr(error)}
            os.write(report_write, json.dumps(report).encode())
            os._exit(0)
        os.close(ready_write), os.close(report_write), os.close(stop_read)
        self.pid, self._ready, self._report, self._stop = pid, ready_read, report_read, stop_write
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        readable, _, _ = select.select([self._ready], [], [], timeout)
        assert readable and os.read(self._ready, 1) == b"1", "the attacker did not open its connections"

    def stop(self, timeout: float = 60) -> AttackReport:
        os.close(self._stop)
        readable, _, _ = select.select([self._report], [], [], timeout)
        if not readable:
            os.kill(self.pid, signal.SIGKILL)
        with os.fdopen(self._report, "rb") as pipe:
            raw = pipe.read()
        os.waitpid(self.pid, 0)
        self.pid = None
        os.close(self._ready)
        report = json.loads(raw or b'{"error": "killed"}')
        assert "error" not in report, report["error"]
        return AttackReport(**report)

    def __exit__(self, *exc_info: object) -> None:
        if self.pid is not None:  # not stopped: the test failed on the way
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)

    # --- in the child

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(self.path)
        except (BlockingIOError, ConnectionRefusedError):  # the listen queue is full: next round
            sock.close()
            return None
        return sock

    def _attack(self, ready_fd: int, stop_fd: int) -> dict:
        held: dict[int, tuple[socket.socket, float]] = {}
        connects = closed = closed_late = rounds = 0
        open_at_most = 0
        wanted = self.count
        while len(held) < wanted:
            sock = self._connect()
            if sock is None:
                time.sleep(0.01)
                continue
            held[sock.fileno()] = sock, time.monotonic()
            connects += 1
        os.write(ready_fd, b"1")
        while True:
            stop, _, _ = select.select([stop_fd], [], [], self.interval)
            poller = select.poll()
            for fd in held:
                poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
            for fd, _ in poller.poll(0):  # an idle connection hears only its end: a 503 and EOF, or EOF
                sock, opened = held.pop(fd)
                sock.close()
                closed += 1
                closed_late += time.monotonic() - opened >= 3
            rounds += 1
            if rounds > 1:  # the first round sees what the agent did with the burst
                open_at_most = max(open_at_most, len(held))
            if stop:
                break
            while len(held) < wanted:  # open again whatever the agent closed
                sock = self._connect()
                if sock is None:
                    break
                held[sock.fileno()] = sock, time.monotonic()
                connects += 1
        return {"connects": connects, "closed_by_agent": closed, "closed_after_holding": closed_late,
                "open_at_most": open_at_most, "open_at_end": len(held), "rounds": rounds}


def timed_cli(site: Site, *args: str, deadline: float) -> tuple[float, int, str]:
    """``id1 ARGS`` as root on the site's socket, in a process of its own, as an admin runs it;
    (seconds, exit status, output). Still running after ``deadline`` seconds fails the test."""
    command = [sys.executable, "-m", "agent.cli.main", *args, "--socket", str(site.socket)]
    began = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=deadline, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"id1 {' '.join(args)} did not answer within {deadline:g} s")
    return time.monotonic() - began, done.returncode, done.stdout + done.stderr


def descriptors(pid: int) -> tuple[int, int]:
    """How many descriptors ``pid`` has open, and how many of them are sockets."""
    total = sockets = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            sockets += os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:")
        except OSError:  # closed meanwhile
            continue
        total += 1
    return total, sockets


class DescriptorWatch(threading.Thread):
    """Samples a process's descriptors every 20 ms: the most it had open, and the most sockets.

    What the agent holds is counted where it is held: a connection the agent has not accepted
    yet is still open at the attacker's end, however fast the agent is."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.most = self.most_sockets = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.02):
            total, sockets = descriptors(self.pid)
            self.most, self.most_sockets = max(self.most, total), max(self.most_sockets, sockets)

    def __enter__(self) -> DescriptorWatch:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop_event.set()
        self.join()


def test_idle_connections_from_a_user_without_a_role_do_not_exhaust_the_agent(site, accounts, capsys):
    assert resource.prlimit(site.process.pid, resource.RLIMIT_NOFILE)[0] == SYSTEMD_DEFAULT_NOFILE
    log_before = site.log.stat().st_size
    fds_before, sockets_before = descriptors(site.process.pid)
    status_seconds: list[float] = []
    with IdleConnections(accounts.nobody, str(site.socket), IDLE_CONNECTIONS) as attack, \
            DescriptorWatch(site.process.pid) as watch:
        attack.wait_ready()
        attack_began = time.monotonic()
        # The admin asks while the attacker's connections are fresh, and again later.
        for _ in range(3):
            seconds, code, out = timed_cli(site, "status", deadline=ADMIN_ANSWERS_WITHIN * 3)
            assert code == 0, out
            assert "host-01" in out, out
            status_seconds.append(seconds)
            time.sleep(1)
        # A feed poll needs descriptors of its own: a socket to the feed, its files.
        check_seconds, code, check_said = timed_cli(site, "check", deadline=60)
        assert code == 0, check_said
        # Kept up long enough for the agent's idle timeout to cut the connections it took, twice.
        while time.monotonic() - attack_began < 12:
            time.sleep(0.5)
        report = attack.stop()

    log_lines = site.log.read_bytes()[log_before:].decode(errors="replace").splitlines()
    log_grown = site.log.stat().st_size - log_before
    with capsys.disabled():
        print(f"\n  {IDLE_CONNECTIONS} idle connections from {accounts.nobody}, re-opened once a second for "
              f"{report.rounds} s: {report.connects} connects, {report.closed_by_agent} closed by the agent "
              f"({report.closed_after_holding} of them after 3 s or more); the daemon's descriptors: "
              f"{fds_before} before, at most {watch.most} (soft limit {SYSTEMD_DEFAULT_NOFILE}), sockets at most "
              f"{watch.most_sockets - sockets_before} more than before; root's `id1 status` answered in "
              f"{', '.join(f'{s:.2f}' for s in status_seconds)} s, `id1 check` in {check_seconds:.2f} s "
              f"({check_said.strip()!r}); the log grew {len(log_lines)} lines, {log_grown} bytes:\n    "
              + "\n    ".join(log_lines))
    assert max(status_seconds) < ADMIN_ANSWERS_WITHIN
    # The user's share, root's CLI, the feed poll's socket and a refusal being answered at most.
    assert watch.most_sockets - sockets_before <= HELD_AT_MOST + 3, "the agent held more connections than its share"
    assert watch.most < SYSTEMD_DEFAULT_NOFILE * 3 // 4
    assert report.closed_by_agent >= IDLE_CONNECTIONS - HELD_AT_MOST
    assert report.closed_after_holding >= HELD_AT_MOST, "the connections the agent took were never cut"
    assert len(log_lines) <= LOG_LINES_AT_MOST and log_grown <= LOG_BYTES_AT_MOST, "\n".join(log_lines[:20])
    assert site.process.poll() is None
    assert status_of(site)["pending_approval"]  # the agent still works for root afterwards


# ------------------------------------------------------------------ a huge body


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def post_streamed_body_as(user: str, path: str, url: str, size: int, timeout: float = 60) -> dict:
    """POST ``size`` bytes of (invalid) JSON to ``url`` as ``user``, streamed in 64 KiB chunks
    with a Content-Length, from a forked child dropped to the user; its status and body, and
    how many bytes it got to send before the answer."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            keep_only(write_end)
            drop_to(user)
            sent = [0]
            chunk = b"[" * 65536

            def body():
                while sent[0] < size:
                    piece = chunk[: size - sent[0]]
                    sent[0] += len(piece)
                    yield piece

            began = time.monotonic()
            with httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://id1", timeout=timeout) as client:
                response = client.post(url, content=body(), headers={"Content-Type": "application/json",
                                                                     "Content-Length": str(size)})
            report = {"status": response.status_code, "body": response.json(), "sent": sent[0],
                      "seconds": time.monotonic() - began}
        except BaseException as error:  # noqa: BLE001 - everything goes back to the parent
            report = {"error": repr(error)}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    readable, _, _ = select.select([read_end], [], [], timeout + 30)
    if not readable:
        os.kill(pid, signal.SIGKILL)
    with os.fdopen(read_end, "rb") as pipe:
        raw = pipe.read()
    os.waitpid(pid, 0)
    report = json.loads(raw or b'{"error": "the child was killed"}')
    assert "error" not in report, report["error"]
    return report


GIB = 1 << 30


def test_a_huge_body_from_a_user_without_a_role_is_refused_before_it_is_read(site, accounts, capsys):
    rss_before = rss_kib(site.process.pid)
    approval = status_of(site)["pending_approval"]["id"]
    answer = post_streamed_body_as(accounts.nobody, str(site.socket), f"/approvals/{approval}/approve", GIB)
    rss_after = rss_kib(site.process.pid)
    with capsys.disabled():
        print(f"\n  1 GiB posted by {accounts.nobody}: {answer['status']} after {answer['seconds']:.2f} s, "
              f"{answer['sent']:,} bytes sent; the daemon's RSS {rss_before:,} KiB before, {rss_after:,} KiB after")
    assert answer["status"] == 403 and answer["body"]["code"] == "forbidden", answer
    assert answer["body"]["message"].startswith(f"{accounts.nobody} may not ")
    assert answer["seconds"] < 5
    assert answer["sent"] < GIB // 4, "the agent read most of the body before refusing it"
    assert rss_after - rss_before < 20 * 1024, f"the daemon's RSS grew from {rss_before} to {rss_after} KiB"
    assert status_of(site)["pending_approval"]["id"] == approval  # nothing was decided


def test_an_oversized_body_is_refused_even_for_an_admin(site):
    approval = status_of(site)["pending_approval"]["id"]
    rss_before = rss_kib(site.process.pid)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(site.socket)), base_url="http://id1", timeout=30) as client:
        declared = client.post(f"/approvals/{approval}/approve", content=b'{"comment": "' + b"x" * (8 << 20) + b'"}',
                               headers={"Content-Type": "application/json"})

        def chunks():  # no Content-Length: chunked, counted as it is read
            yield b'{"comment": "'
            for _ in range(64):
                yield b"x" * (1 << 20)

        chunked = client.post(f"/approvals/{approval}/approve", content=chunks(), headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and declared.json()["code"] == "too-large", declared.text
    assert chunked.status_code == 413 and chunked.json()["code"] == "too-large", chunked.text
    assert "MiB" in declared.json()["message"]
    assert rss_kib(site.process.pid) - rss_before < 20 * 1024
    assert status_of(site)["pending_approval"]["id"] == approval


# ------------------------------------------------------------------ the schema


def get_as(user: str, path: str, url: str) -> int:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 0
        try:
            keep_only(write_end)
            drop_to(user)
            with httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://id1", timeout=30) as client:
                status = client.get(url).status_code
        finally:
            os.write(write_end, str(status).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        status = int(pipe.read() or b"0")
    os.waitpid(pid, 0)
    return status


@pytest.mark.parametrize("url", ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/no-such-path"])
def test_the_schema_and_its_pages_need_the_viewer_role(site, accounts, url):
    assert get_as(accounts.nobody, str(site.socket), url) == 403
    if url != "/no-such-path":
        assert get_as(accounts.viewer, str(site.socket), url) == 200
        assert site.get(url).status_code == 200  # root
