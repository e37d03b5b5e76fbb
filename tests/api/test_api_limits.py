"""The API's limits (agent.api.limits, gate, body_limit, auth.RoleGate) on the real UnixApiServer.

A server runs in the test's event loop with small limits, so each one is reached in a moment;
connections from other users come from forked children that drop to a throwaway user before
connecting (tests/api/conftest.py). The clients speak raw HTTP where the point is what they
do not send. Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import resource
import select
import signal
import socket
import sys
import tempfile
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.api.app import create_app
from agent.api.gate import ThrottledLog, open_descriptors
from agent.api.limits import ApiLimits, Refusal, Throttle, descriptors_kept, refusal
from agent.api.server import UnixApiServer
from agent.config import RolesConfig
from tests.api.test_peer_roles import make_app

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_PEERCRED is Linux's")

GENEROUS = ApiLimits(head_timeout=30, body_timeout=30)  # limits no test here reaches unless it sets them


# ---------------------------------------------------------------- the rules, without a server


def test_a_user_gets_its_share_and_root_gets_in_when_the_rest_is_full():
    limits = ApiLimits(max_connections=4, max_per_user=3, descriptor_reserve=10)
    room = {"descriptors_open": 50, "descriptor_limit": 1024, "limits": limits}
    assert refusal(1001, {1001: 2}, **room) is None
    assert refusal(1001, {1001: 3}, **room) is Refusal.per_user
    assert refusal(1002, {1001: 3, 1002: 1}, **room) is Refusal.total
    assert refusal(0, {1001: 3, 1002: 1}, **room) is None  # root is counted in neither
    assert refusal(0, {0: 40, 1001: 1}, **room) is None
    assert refusal(0, {0: 40}, descriptors_open=1020, descriptor_limit=1024, limits=limits) is Refusal.descriptors
    assert refusal(1002, {0: 3, 1001: 1}, **room) is None  # root's connections are not the others'


def test_the_last_descriptors_stay_the_agents():
    limits = ApiLimits(descriptor_reserve=256)
    assert descriptors_kept(limits, 1024) == 256
    assert descriptors_kept(limits, 400) == 100  # at most a quarter of a small limit
    assert refusal(0, {}, descriptors_open=768, descriptor_limit=1024, limits=limits) is None
    assert refusal(0, {}, descriptors_open=769, descriptor_limit=1024, limits=limits) is Refusal.descriptors


def test_limits_refuse_nonsense():
    with pytest.raises(ValueError, match="head_timeout"):
        ApiLimits(head_timeout=0)
    with pytest.raises(ValueError, match="max_per_user"):
        ApiLimits(max_per_user=-1)


def test_a_repeated_line_is_written_once_then_counted_once_an_interval():
    throttle = Throttle(60)
    assert throttle.note("refused", 100.0) == 1
    assert [throttle.note("refused", 100.0 + i) for i in range(1, 50)] == [None] * 49
    assert throttle.note("other", 110.0) == 1  # each kind has its own interval
    assert throttle.next_due() == 160.0
    assert throttle.due(159.9) == {}
    assert throttle.due(160.0) == {"refused": 49}
    assert throttle.due(161.0) == {}
    assert throttle.note("refused", 170.0) is None  # 10 s after the sum: counted again
    assert throttle.note("refused", 220.0) == 2  # the held one and this one
    assert throttle.drain() == {}
    throttle.note("refused", 230.0)
    assert throttle.drain() == {"refused": 1}


@pytest.mark.asyncio
async def test_a_count_held_back_is_written_when_its_interval_ends_without_another_event(caplog):
    logger = logging.getLogger("agent.api.test-throttle")
    caplog.set_level(logging.INFO, logger=logger.name)
    throttled = ThrottledLog(logger, 0.2)
    for _ in range(5):
        throttled.event("refused", lambda more: "first" if more is None else f"{more} more", level=logging.INFO)
    assert [record.getMessage() for record in caplog.records] == ["first"]
    await until(lambda: len(caplog.records) == 2, what="the count to be written")
    assert caplog.records[1].getMessage() == "4 more"
    throttled.event("refused", lambda more: "first" if more is None else f"{more} more")
    throttled.close()  # what is held is written when the server stops
    assert [record.getMessage() for record in caplog.records] == ["first", "4 more", "1 more"]


# ---------------------------------------------------------------- helpers


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="id1-limits-"))
    os.chmod(folder, 0o755)  # other users must reach the socket
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def until(condition: Callable[[], Any], *, timeout: float = 10.0, what: str) -> Any:
    """Poll ``condition`` while the loop serves, until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)
    return value


async def closed_by_server(reader: asyncio.StreamReader, *, timeout: float = 10.0) -> tuple[bytes, float]:
    """Read until the server ends the connection; what it said and how long it took."""
    began = time.monotonic()
    said = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                said += chunk
    except ConnectionError:  # closed with our unread bytes in its buffer, or while we were still writing
        pass
    except TimeoutError:
        pytest.fail(f"the server did not close the connection within {timeout:g} s (it said {said[:200]!r})")
    return said, time.monotonic() - began


async def raw(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(str(path))


def keep_only(*fds: int) -> None:
    """In a forked child: close every descriptor inherited from the test but stdio and ``fds``,
    so it holds no copy of the server's sockets or of another child's pipes."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def drop_to(user: str) -> None:
    entry = pwd.getpwnam(user)
    os.setgroups(os.getgrouplist(user, entry.pw_gid))
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


class HeldAs:
    """A forked child, dropped to ``user``, holding ``count`` connections to ``path`` that send
    nothing, until ``release()``; it reports which of them the server answered and closed."""

    def __init__(self, user: str | None, path: Path, count: int):
        self.user, self.path, self.count = user, path, count

    async def __aenter__(self) -> HeldAs:
        ready_read, ready_write = os.pipe()
        report_read, report_write = os.pipe()
        stop_read, stop_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            try:
                keep_only(ready_write, report_write, stop_read)
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # not the limit the test may have set
                if self.user is not None:
                    drop_to(self.user)
                socks = []
                for _ in range(self.count):
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.connect(str(self.path))
                    socks.append(sock)
                os.write(ready_write, b"1")
                select.select([stop_read], [], [])
                answered = []
                for sock in socks:
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable:
                        try:
                            answered.append(sock.recv(65536).decode(errors="replace"))
                        except OSError:
                            answered.append("")
                report = {"answered": answered}
            except BaseException as error:  # noqa: BLE001 - everything goes back to the parent
                report = {"error": repr(error)}
            os.write(report_write, json.dumps(report).encode())
            os._exit(0)
        os.close(ready_write), os.close(report_write), os.close(stop_read)
        self.pid, self._ready, self._report, self._stop = pid, ready_read, report_read, stop_write
        await until(lambda: select.select([self._ready], [], [], 0)[0], what="the child's connections")
        return self

    async def release(self) -> list[str]:
        """What the server said on each connection it closed ("" for a bare close)."""
        os.close(self._stop)
        await until(lambda: select.select([self._report], [], [], 0)[0], what="the child's report")
        with os.fdopen(self._report, "rb") as pipe:
            report = json.loads(pipe.read())
        os.waitpid(self.pid, 0)
        self.pid = None
        os.close(self._ready)
        assert "error" not in report, report["error"]
        return report["answered"]

    async def __aexit__(self, *exc_info: object) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


async def request_as(user: str, path: Path, head: bytes, *, timeout: float = 15) -> dict:
    """Send ``head`` (and nothing more) as ``user`` from a forked child; the status line and
    body of the answer, and how long it took."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            keep_only(write_end)
            drop_to(user)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(str(path))
            began = time.monotonic()
            sock.sendall(head)
            answer = b""
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass
            status, _, rest = answer.partition(b"\r\n")
            body = rest.partition(b"\r\n\r\n")[2].decode()
            # The pipe is read once the child is gone: the report must fit in its buffer.
            report = {"status": status.decode(), "body": body[:4000], "seconds": time.monotonic() - began}
        except BaseException as error:  # noqa: BLE001
            report = {"error": repr(error)}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    try:
        await until(lambda: os.waitpid(pid, os.WNOHANG) != (0, 0), timeout=timeout + 5, what=f"the request as {user}")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    with os.fdopen(read_end, "rb") as pipe:
        report = json.loads(pipe.read())
    assert "error" not in report, report["error"]
    return report


def client(path: Path) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(path)), base_url="http://id1", timeout=10)


# ---------------------------------------------------------------- deadlines


@pytest.mark.asyncio
async def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(socket_dir):
    path = socket_dir / "agent.sock"
    async with UnixApiServer(make_app(RolesConfig()), path, limits=ApiLimits(head_timeout=0.5)) as server:
        reader, writer = await raw(path)
        said, seconds = await closed_by_server(reader)
        writer.close()
        assert said == b"" and 0.4 < seconds < 5
        await until(lambda: server.gate.held() == 0, what="the slot to be given back")


@pytest.mark.asyncio
async def test_a_head_trickled_a_byte_at_a_time_is_cut_at_the_head_timeout(socket_dir):
    path = socket_dir / "agent.sock"
    async with UnixApiServer(make_app(RolesConfig()), path, limits=ApiLimits(head_timeout=1.0)):
        reader, writer = await raw(path)

        async def trickle() -> None:
            writer.write(b"GET /whoami HTTP/1.1\r\nhost: id1\r\n")
            while True:  # one header byte every 50 ms, forever: each byte "arrives in time"
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.05)

        trickling = asyncio.create_task(trickle())
        try:
            said, seconds = await closed_by_server(reader)
        finally:
            trickling.cancel()
            with pytest.raises((asyncio.CancelledError, ConnectionError)):
                await trickling
            writer.close()
    assert said == b"" and 0.9 < seconds < 5


@pytest.mark.asyncio
async def test_the_next_request_on_a_kept_alive_connection_has_the_same_deadline(socket_dir):
    path = socket_dir / "agent.sock"
    async with UnixApiServer(make_app(RolesConfig()), path, limits=ApiLimits(head_timeout=1.0)):
        reader, writer = await raw(path)
        writer.write(b"GET /whoami HTTP/1.1\r\nhost: id1\r\n\r\n")
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
        await reader.readuntil(b'"pid":')
        began = time.monotonic()
        writer.write(b"GET /whoami HTTP/1.1\r\n")  # then a byte every 50 ms
        trickling = True

        async def trickle() -> None:
            while trickling:
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.05)

        task = asyncio.create_task(trickle())
        try:
            said, _ = await closed_by_server(reader)
        finally:
            task.cancel()
            with pytest.raises((asyncio.CancelledError, ConnectionError)):
                await task
            writer.close()
    assert b"HTTP/1.1" not in said
    assert 0.9 < time.monotonic() - began < 5


@pytest.mark.asyncio
async def test_a_body_still_coming_after_the_body_timeout_is_cut(socket_dir, accounts):
    path = socket_dir / "agent.sock"
    limits = ApiLimits(head_timeout=30, body_timeout=1.0)
    async with UnixApiServer(create_app(None, accounts.roles, limits=limits), path, limits=limits):
        reader, writer = await raw(path)
        writer.write(b"POST /approvals/a-1/approve HTTP/1.1\r\nhost: id1\r\ncontent-type: application/json\r\n"
                     b"content-length: 100\r\n\r\n{")
        began = time.monotonic()
        said, _ = await closed_by_server(reader)
        writer.close()
    assert b"HTTP/1.1 2" not in said
    assert 0.9 < time.monotonic() - began < 5


@pytest.mark.asyncio
async def test_no_deadline_while_the_app_answers(socket_dir):
    path = socket_dir / "agent.sock"
    app = make_app(RolesConfig())
    release = asyncio.Event()

    @app.get("/held")
    async def held() -> dict:
        await release.wait()
        return {"done": True}

    limits = ApiLimits(head_timeout=0.5, body_timeout=0.5)
    async with UnixApiServer(app, path, limits=limits), client(path) as http:
        answer = asyncio.create_task(http.get("/held"))
        await asyncio.sleep(3 * limits.head_timeout)  # the deadlines are for the caller's bytes only
        release.set()
        answer = await answer
    assert answer.status_code == 200 and answer.json() == {"done": True}


# ---------------------------------------------------------------- how many connections


@pytest.mark.asyncio
async def test_one_user_holds_at_most_its_share_and_is_told_so(socket_dir, accounts, caplog):
    path = socket_dir / "agent.sock"
    uid = pwd.getpwnam(accounts.nobody).pw_uid
    limits = ApiLimits(max_per_user=5, head_timeout=30)
    caplog.set_level(logging.INFO, logger="agent.api")
    async with UnixApiServer(make_app(accounts.roles), path, limits=limits) as server:
        async with HeldAs(accounts.nobody, path, 45) as held:
            await until(lambda: server.gate.held(uid) == 5, what="the user's share to be taken")
            async with client(path) as http:  # root still gets in
                assert (await http.get("/whoami")).status_code == 200
            assert server.gate.held(uid) == 5
            answered = await held.release()
        await until(lambda: server.gate.held() == 0, what="every slot to be given back")
    assert len(answered) == 40
    assert all(said.startswith("HTTP/1.1 503") for said in answered), answered[:3]
    body = json.loads(answered[0].partition("\r\n\r\n")[2])
    assert body == {"code": "unavailable", "fields": [], "message": (
        f"uid {uid} already holds 5 connections to the agent, the most one user may; close some and try again")}
    refusals = [record.getMessage() for record in caplog.records if "refused" in record.getMessage()]
    assert refusals == [  # the first at once, the rest summed up when the server stops
        f"API: refused a connection from {accounts.nobody} (uid {uid}): it already holds 5, the most one user may "
        "(more like it are counted and logged once a minute)",
        f"API: refused 39 more connections from {accounts.nobody} (uid {uid}): it already holds 5, the most one user may",
    ]


@pytest.mark.asyncio
async def test_users_share_the_total_and_root_gets_in_beyond_it(socket_dir, accounts):
    path = socket_dir / "agent.sock"
    limits = ApiLimits(max_connections=6, max_per_user=4, head_timeout=30)
    async with UnixApiServer(make_app(accounts.roles), path, limits=limits) as server:
        async with HeldAs(accounts.nobody, path, 4) as nobody, HeldAs(accounts.viewer, path, 4) as viewer:
            await until(lambda: server.gate.held() == 6, what="the total to be taken")
            async with HeldAs(None, path, 2) as root:  # root's own share
                await until(lambda: server.gate.held(0) == 2, what="root's connections")
                async with client(path) as http:  # a third of root's: a request
                    assert (await http.get("/whoami")).json()["role"] == "admin"
                root_refused = await root.release()
            refused = await nobody.release() + await viewer.release()
    assert root_refused == []
    assert len(refused) == 2 and all("the most it takes" in said for said in refused)


@pytest.mark.asyncio
async def test_the_last_descriptors_are_kept_for_the_agents_own_work(socket_dir):
    path = socket_dir / "agent.sock"
    limits = ApiLimits(descriptor_reserve=8, head_timeout=30)
    async with UnixApiServer(make_app(RolesConfig()), path, limits=limits) as server:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        tight = open_descriptors() + 8 + 10  # the real limit, set a few connections above what is open
        resource.setrlimit(resource.RLIMIT_NOFILE, (tight, hard))
        try:
            async with HeldAs(None, path, 30) as held:  # root: no share counts, only descriptors
                await until(lambda: server.gate.held() + server.gate.refused[Refusal.descriptors] == 30,
                            what="every connection to be taken or refused")
                most = open_descriptors()
                said = await held.release()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        taken = 30 - len(said)
    assert 0 < taken < 30
    assert most <= tight - descriptors_kept(limits, tight)
    assert all("file descriptors" in answer for answer in said), said[:2]


def ours(caplog) -> list[str]:
    """What the server logged (not the test's own httpx client)."""
    return [record.getMessage() for record in caplog.records if record.name.startswith(("uvicorn", "agent"))]


@pytest.mark.asyncio
async def test_garbage_and_upgrade_requests_do_not_fill_the_log(socket_dir, caplog):
    path = socket_dir / "agent.sock"
    caplog.set_level(logging.INFO)
    async with UnixApiServer(make_app(RolesConfig()), path, limits=GENEROUS):
        for _ in range(100):
            reader, writer = await raw(path)
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            said, _ = await closed_by_server(reader)
            writer.close()
            assert said.startswith(b"HTTP/1.1 400")
        async with client(path) as http:
            for _ in range(100):
                answer = await http.get("/whoami", headers={"Connection": "upgrade", "Upgrade": "websocket"})
                assert answer.status_code == 200
        during = len(ours(caplog))
    lines = ours(caplog)
    assert during <= 3, lines
    assert "Invalid HTTP request received. (99 more since the last such line)" in lines
    assert len(lines) <= 6, lines


# ---------------------------------------------------------------- bodies


@pytest.mark.asyncio
async def test_a_body_declared_over_the_cap_is_refused_before_it_is_sent(socket_dir):
    path = socket_dir / "agent.sock"
    async with UnixApiServer(create_app(None, RolesConfig(), limits=GENEROUS), path, limits=GENEROUS):
        reader, writer = await raw(path)  # root: an admin
        writer.write(b"POST /approvals/a-1/approve HTTP/1.1\r\nhost: id1\r\ncontent-type: application/json\r\n"
                     b"content-length: 1073741824\r\n\r\n")  # and not one byte of it
        said, seconds = await closed_by_server(reader)
        writer.close()
    assert said.startswith(b"HTTP/1.1 413") and b"connection: close" in said.lower()
    assert json.loads(said.partition(b"\r\n\r\n")[2])["code"] == "too-large"
    assert seconds < 5


def post_endless_chunks(path: Path) -> tuple[bytes, int]:
    """POST a chunked body that never ends, until the server answers or stops reading; what
    it answered and how many body bytes were sent. Blocking: run it in a thread."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"POST /approvals/a-1/approve HTTP/1.1\r\nhost: id1\r\ncontent-type: application/json\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        chunk = b"x" * 8192
        sent = 0
        try:
            while not select.select([sock], [], [], 0)[0] and sent < 64 << 20:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        said = b""
        try:
            while data := sock.recv(65536):
                said += data
        except ConnectionResetError:  # after the answer: the server closed with our bytes unread
            pass
    return said, sent


@pytest.mark.asyncio
async def test_a_chunked_body_is_cut_at_the_cap(socket_dir):
    path = socket_dir / "agent.sock"
    limits = ApiLimits(max_body_bytes=64 * 1024, head_timeout=30, body_timeout=30)
    async with UnixApiServer(create_app(None, RolesConfig(), limits=limits), path, limits=limits):
        said, sent = await asyncio.to_thread(post_endless_chunks, path)
    assert said.startswith(b"HTTP/1.1 413"), said[:300]
    assert "(65,536 bytes)" in json.loads(said.partition(b"\r\n\r\n")[2])["message"]
    assert sent < 4 << 20, f"the server read {sent} bytes of a body capped at 64 KiB"


@pytest.mark.asyncio
async def test_a_caller_without_a_role_is_refused_before_its_body_is_read(socket_dir, accounts):
    path = socket_dir / "agent.sock"
    async with UnixApiServer(create_app(None, accounts.roles, limits=GENEROUS), path, limits=GENEROUS):
        head = (b"POST /approvals/a-1/approve HTTP/1.1\r\nhost: id1\r\ncontent-type: application/json\r\n"
                b"content-length: 1000\r\n\r\n")  # a body well under the cap, never sent
        answer = await request_as(accounts.nobody, path, head)
        viewer = await request_as(accounts.viewer, path, b"GET /openapi.json HTTP/1.1\r\nhost: id1\r\nconnection: close\r\n\r\n")
        schema = await request_as(accounts.nobody, path, b"GET /openapi.json HTTP/1.1\r\nhost: id1\r\n\r\n")
    assert answer["status"] == "HTTP/1.1 403 Forbidden" and answer["seconds"] < 5
    assert json.loads(answer["body"])["message"].startswith(f"{accounts.nobody} may not read the agent's state")
    assert schema["status"] == "HTTP/1.1 403 Forbidden"
    assert viewer["status"] == "HTTP/1.1 200 OK" and viewer["body"].startswith('{"openapi":')


@pytest.mark.asyncio
async def test_a_request_without_kernel_credentials_is_refused_by_the_gate_too():
    transport = httpx.ASGITransport(app=create_app(None, RolesConfig()))
    async with httpx.AsyncClient(transport=transport, base_url="http://id1") as http:
        answer = await http.get("/openapi.json")
    assert answer.status_code == 403 and "cannot tell who is calling" in answer.json()["message"]


@pytest.mark.asyncio
async def test_out_of_descriptors_the_log_gets_a_line_a_second_not_thousands(socket_dir, caplog):
    """Should the agent's own work use every descriptor, asyncio logs each failed accept with a
    traceback, and tries again up to 2,048 times before it pauses: hundreds of MB a minute."""
    path = socket_dir / "agent.sock"
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with UnixApiServer(make_app(RolesConfig()), path, limits=GENEROUS):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        callers = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(50)]
        used_up = []
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_descriptors() + 10, hard))
        try:
            with contextlib.suppress(OSError):
                while True:  # the agent's own work takes every descriptor left
                    used_up.append(os.open("/dev/null", os.O_RDONLY))
            for caller in callers:  # connecting takes no new descriptor; accepting one does
                caller.setblocking(False)
                caller.connect(str(path))
            await until(lambda: out_of_resource(caplog), what="asyncio to report the failed accept")
            began = time.monotonic()
            await asyncio.sleep(2.0)  # what a few seconds of it write
            seconds = time.monotonic() - began
            lines = out_of_resource(caplog)
        finally:
            for fd in used_up:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            for caller in callers:
                caller.close()
    assert lines <= 2 + seconds, f"{lines} lines in {seconds:.1f} s"


def out_of_resource(caplog) -> int:
    return sum("out of system resource" in record.getMessage() for record in caplog.records)
