"""The API knows its callers from the kernel, and roles come from Unix groups (DESIGN.md §7).

Most tests run a real UnixApiServer on a socket in a world-readable temp folder. Requests as
other users come from forked children that drop to a throwaway user before connecting: the
fork keeps the interpreter already loaded, so nothing is executed as those users.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from agent.api.auth import CallerDep, install_roles, requires
from agent.api.peer import PeerCredentials, peer_credentials, peer_from_scope
from agent.api.roles import (
    Account,
    Caller,
    Forbidden,
    Role,
    SystemAccounts,
    identify,
    read_account,
    require,
    role_of,
)
from agent.api.server import ApiServerError, ApiSocketBusy, UnixApiServer
from agent.config import RolesConfig
from agent.errors import Id1Error

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_PEERCRED is Linux's")


def make_app(roles: RolesConfig, *, slow: asyncio.Event | None = None) -> FastAPI:
    """A tiny app: who am I (viewer), approve (approver), who am I for anyone (an open path, which
    the agent's own API does not have), and a slow route for shutdown."""
    app = FastAPI()
    install_roles(app, roles, lookup=SystemAccounts(), open_paths={"/anyone"})

    @app.get("/whoami")
    async def whoami(caller: Annotated[Caller, Depends(requires(Role.viewer))], request: Request):
        peer = peer_from_scope(request.scope)
        return {
            "user": caller.user,
            "uid": caller.uid,
            "groups": list(caller.groups),
            "role": str(caller.role),
            "pid": peer.pid,
        }

    @app.post("/approve")
    async def approve(caller: Annotated[Caller, Depends(requires(Role.approver, "approve updates"))]):
        return {"approved_by": caller.user}

    @app.get("/anyone")
    async def anyone(caller: CallerDep):
        return {"user": caller.user, "role": caller.role and str(caller.role)}

    @app.get("/slow")
    async def slow_route(caller: CallerDep):
        if slow is not None:
            slow.set()
        await asyncio.sleep(0.3)
        return {"done": True}

    return app


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # pytest's tmp_path sits under a 0700 folder that other users cannot cross.
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="id1-api-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def root_client(path: Path) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(path)), base_url="http://id1", timeout=10)


# ---------------------------------------------------------------- roles, without a server


def fixed_accounts(table: dict[int, Account]):
    return lambda uid, gid: table[uid]


def test_root_is_admin_whatever_its_groups():
    assert role_of(0, [], RolesConfig()) is Role.admin


def test_the_highest_role_a_group_grants_wins():
    roles = RolesConfig(viewer=["staff"], approver=["ops"], admin=["wheel"])
    lookup = fixed_accounts({1000: Account("alice", ("alice", "staff", "wheel")), 1001: Account("bob", ("bob",))})
    alice = identify(PeerCredentials(pid=7, uid=1000, gid=1000), roles, lookup=lookup)
    bob = identify(PeerCredentials(pid=8, uid=1001, gid=1001), roles, lookup=lookup)
    assert alice == Caller("alice", 1000, ("alice", "staff", "wheel"), Role.admin)
    assert bob.role is None and not bob.may(Role.viewer)
    assert Role.viewer < Role.approver < Role.admin


def test_a_refusal_names_the_caller_the_action_and_the_groups_that_grant_it():
    viewer = Caller("alice", 1000, ("alice", "id1-viewer"), Role.viewer)
    with pytest.raises(Forbidden) as refused:
        require(viewer, Role.approver, RolesConfig(), action="approve updates")
    assert str(refused.value) == (
        "alice may not approve updates: that needs the approver role (group id1-approver or id1-admin)"
    )
    assert isinstance(refused.value, Id1Error)
    with pytest.raises(Forbidden, match=r"needs the viewer role \(group id1-viewer, id1-approver or id1-admin\)"):
        require(Caller("bob", 1001, (), None), Role.viewer, RolesConfig())
    with pytest.raises(Forbidden, match=r"needs the admin role \(only root has it\)"):
        require(viewer, Role.admin, RolesConfig(admin=[]), action="roll back")
    require(viewer, Role.viewer, RolesConfig())  # allowed: no error


def test_an_unknown_uid_is_named_by_number():
    uid = next(n for n in range(4_242_420, 4_242_520) if not _has_passwd_entry(n))
    account = read_account(uid, 0)
    assert account.user == f"uid {uid}"
    assert account.groups == ("root",)  # the kernel's gid still counts


def _has_passwd_entry(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_account_lookups_are_cached_briefly(monkeypatch):
    calls = []
    monkeypatch.setattr("agent.api.roles.read_account", lambda uid, gid: calls.append(uid) or Account("u", ()))
    now = [100.0]
    accounts = SystemAccounts(ttl=5.0, clock=lambda: now[0])
    accounts(1000, 1000)
    now[0] += 4.9
    accounts(1000, 1000)
    assert calls == [1000]
    now[0] += 0.2
    accounts(1000, 1000)
    assert calls == [1000, 1000]


def test_peer_credentials_come_from_unix_sockets_only():
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert peer_credentials(left) == PeerCredentials(os.getpid(), os.getuid(), os.getgid())
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with socket.create_connection(listener.getsockname()) as tcp:
            assert peer_credentials(tcp) is None
    assert peer_credentials(None) is None


@pytest.mark.asyncio
async def test_a_request_without_kernel_credentials_is_refused():
    transport = httpx.ASGITransport(app=make_app(RolesConfig()))
    async with httpx.AsyncClient(transport=transport, base_url="http://id1") as client:
        response = await client.get("/whoami", headers={"X-User": "root"})
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert "cannot tell who is calling" in response.json()["message"]


# ---------------------------------------------------------------- the server


@pytest.mark.asyncio
async def test_root_is_admin_over_the_socket(socket_dir):
    path = socket_dir / "agent.sock"
    async with UnixApiServer(make_app(RolesConfig()), path), root_client(path) as client:
        whoami = await client.get("/whoami")
        approved = await client.post("/approve")
    assert whoami.status_code == 200
    assert whoami.json() == {"user": "root", "uid": 0, "groups": ["root"], "role": "admin", "pid": os.getpid()}
    assert approved.json() == {"approved_by": "root"}


@pytest.mark.asyncio
async def test_the_socket_is_open_to_everyone_and_removed_at_stop(socket_dir):
    path = socket_dir / "run" / "id1" / "agent.sock"
    old_umask = os.umask(0o077)  # a strict umask must not lock other users out
    try:
        server = UnixApiServer(make_app(RolesConfig()), path)
        await server.start()
    finally:
        os.umask(old_umask)
    try:
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666
        assert stat.S_IMODE((socket_dir / "run").stat().st_mode) == 0o755
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    finally:
        await server.stop()
    assert not path.exists()


@pytest.mark.asyncio
async def test_a_second_server_on_a_live_socket_is_refused(socket_dir):
    path = socket_dir / "agent.sock"
    async with UnixApiServer(make_app(RolesConfig()), path):
        with pytest.raises(ApiSocketBusy) as refused:
            await UnixApiServer(make_app(RolesConfig()), path).start()
        assert str(refused.value) == (
            f"process {os.getpid()} already serves the API on {path}; "
            "stop it first (is another id1 agent running?)"
        )
        async with root_client(path) as client:  # the first server still has its socket
            assert (await client.get("/whoami")).status_code == 200


@pytest.mark.asyncio
async def test_a_stale_socket_file_is_replaced(socket_dir):
    path = socket_dir / "agent.sock"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))  # bound, never listening, closed: what a killed daemon leaves
    leftover.close()
    assert path.exists()
    async with UnixApiServer(make_app(RolesConfig()), path), root_client(path) as client:
        assert (await client.get("/whoami")).status_code == 200
    assert not path.exists()


@pytest.mark.asyncio
async def test_a_file_that_is_not_a_socket_is_left_alone(socket_dir):
    path = socket_dir / "agent.sock"
    path.write_text("not a socket")
    with pytest.raises(ApiServerError, match="exists and is not a socket"):
        await UnixApiServer(make_app(RolesConfig()), path).start()
    assert path.read_text() == "not a socket"


@pytest.mark.asyncio
async def test_the_daemon_keeps_its_signal_handlers(socket_dir):
    def daemon_handler(signum, frame):
        pass

    before = {sig: signal.signal(sig, daemon_handler) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        async with UnixApiServer(make_app(RolesConfig()), socket_dir / "agent.sock"):
            for sig in before:
                assert signal.getsignal(sig) is daemon_handler
        for sig in before:
            assert signal.getsignal(sig) is daemon_handler
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@pytest.mark.asyncio
async def test_stop_lets_a_request_in_flight_finish(socket_dir):
    path = socket_dir / "agent.sock"
    started = asyncio.Event()
    server = UnixApiServer(make_app(RolesConfig(), slow=started), path)
    await server.start()
    async with root_client(path) as client:
        request = asyncio.create_task(client.get("/slow"))
        await asyncio.wait_for(started.wait(), 5)
        began = time.monotonic()
        await server.stop()
        response = await request
    assert response.status_code == 200 and response.json() == {"done": True}
    assert time.monotonic() - began < 5
    assert not path.exists()


# ---------------------------------------------------------------- other users, for real


async def request_as(user: str, path: Path, method: str, url: str, headers: dict[str, str] | None = None) -> dict:
    """Make one request as ``user`` from a forked child; returns status, body and the child's pid.

    The client is built before the fork (as root), but connects only after the child has
    dropped to the user, so the kernel records the user's credentials.
    """
    entry = pwd.getpwnam(user)
    gids = os.getgrouplist(user, entry.pw_gid)
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://id1", timeout=10)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_end)
            os.setgroups(gids)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            response = client.request(method, url, headers=headers)
            report = {"status": response.status_code, "body": response.json(), "pid": os.getpid(), "uid": os.getuid()}
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            report = {"error": repr(exc)}
        finally:
            os.write(write_end, json.dumps(report).encode())
            os._exit(0)
    os.close(write_end)
    client.close()
    deadline = time.monotonic() + 15
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):  # keep the loop free: it serves the child
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"the request as {user} did not finish")
            await asyncio.sleep(0.01)
        with os.fdopen(read_end, "rb") as pipe:
            report = json.loads(pipe.read())
    except BaseException:
        os.close(read_end)
        raise
    assert "error" not in report, report["error"]
    assert report["uid"] == entry.pw_uid
    return report


@pytest.mark.asyncio
async def test_roles_come_from_the_callers_unix_groups(socket_dir, accounts):
    roles = accounts.roles
    path = socket_dir / "agent.sock"
    async with UnixApiServer(make_app(roles), path):
        nobody = await request_as(accounts.nobody, path, "GET", "/whoami")
        nobody_anyone = await request_as(accounts.nobody, path, "GET", "/anyone")
        viewer_reads = await request_as(accounts.viewer, path, "GET", "/whoami")
        viewer_approves = await request_as(accounts.viewer, path, "POST", "/approve")
        approver_approves = await request_as(accounts.approver, path, "POST", "/approve")

    viewer_group, approver_group, admin_group = roles.viewer[0], roles.approver[0], roles.admin[0]
    assert nobody["status"] == 403
    assert nobody["body"]["message"] == (
        f"{accounts.nobody} may not read the agent's state: that needs the viewer role "
        f"(group {viewer_group}, {approver_group} or {admin_group})"
    )
    assert nobody_anyone["body"] == {"user": accounts.nobody, "role": None}

    assert viewer_reads["status"] == 200
    assert viewer_reads["body"]["user"] == accounts.viewer
    assert viewer_reads["body"]["role"] == "viewer"
    assert viewer_group in viewer_reads["body"]["groups"]
    assert viewer_reads["body"]["pid"] == viewer_reads["pid"]  # the kernel's view of the caller

    assert viewer_approves["status"] == 403
    assert viewer_approves["body"]["message"] == (
        f"{accounts.viewer} may not approve updates: that needs the approver role "
        f"(group {approver_group} or {admin_group})"
    )
    assert approver_approves["status"] == 200
    assert approver_approves["body"] == {"approved_by": accounts.approver}


@pytest.mark.asyncio
async def test_a_caller_cannot_claim_to_be_someone_else(socket_dir, accounts):
    path = socket_dir / "agent.sock"
    forged = {"X-User": "root", "X-Remote-User": "root", "X-Forwarded-For": "127.0.0.1", "Authorization": "root"}
    async with UnixApiServer(make_app(accounts.roles), path):
        whoami = await request_as(accounts.viewer, path, "GET", "/whoami", headers=forged)
        approve = await request_as(accounts.viewer, path, "POST", "/approve", headers=forged)
    assert whoami["body"]["user"] == accounts.viewer
    assert whoami["body"]["uid"] == pwd.getpwnam(accounts.viewer).pw_uid
    assert whoami["body"]["role"] == "viewer"
    assert approve["status"] == 403
