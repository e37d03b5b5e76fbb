"""What each local user may do, with the ``id1`` CLI against the real daemon (DESIGN.md §7 roles).

Throwaway Unix users are created for the test (as root, as in CI): one in no id1 group, one in
the viewer group, one in the approver group. Each runs the CLI in a forked child that has dropped
to that user (``setgroups``/``setgid``/``setuid``), so the daemon sees the user's credentials on
the socket, exactly as it would for an admin logged in over SSH.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import subprocess

import pytest

from tests.daemon.site import Release, Site, run_cli
from tests.test_engine import SYSTEMCTL3


def _create(kind: str, *args: str) -> None:
    subprocess.run([kind, *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def people():
    if os.geteuid() != 0:
        pytest.fail("the role tests create Unix users: run them as root (CI does)")
    tag = secrets.token_hex(3)
    groups = {role: f"id1g{tag}-{role}" for role in ("viewer", "approver", "admin")}
    users = {kind: f"id1u{tag}-{kind}" for kind in ("nobody", "viewer", "approver")}
    try:
        for group in groups.values():
            _create("groupadd", group)
        _create("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", users["nobody"])
        _create("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "-G", groups["viewer"], users["viewer"])
        _create("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "-G", groups["approver"], users["approver"])
        yield users, groups
    finally:
        for user in users.values():
            subprocess.run(["userdel", user], capture_output=True)
        for group in groups.values():
            subprocess.run(["groupdel", group], capture_output=True)


def cli_as(user: str, *args: str) -> tuple[int, str, str]:
    """``id1 ARGS`` run by ``user`` (a forked child dropped to the user); exit status, stdout, stderr."""
    entry = pwd.getpwnam(user)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_end)
            os.setgroups(os.getgrouplist(user, entry.pw_gid))
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            result = run_cli(list(args))
            report = {"code": result.code, "out": result.out, "err": result.err, "uid": os.getuid()}
        except BaseException as error:  # noqa: BLE001 - everything goes back to the parent
            report = {"code": -1, "out": "", "err": f"child failed: {error!r}", "uid": os.getuid()}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert report["uid"] == entry.pw_uid
    return report["code"], report["out"], report["err"]


@pytest.fixture(scope="module")
def site(people):
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    users, groups = people
    box = Site()
    try:
        box.publish(1, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0"})
        roles = f'[roles]\nviewer = ["{groups["viewer"]}"]\napprover = ["{groups["approver"]}"]\nadmin = ["{groups["admin"]}"]\n'
        box.configure("manual-approval", extra=roles)
        box.start()
        box.wait_for(lambda s: s["pending_approval"], what="the first approval")
        yield box
    finally:
        box.stop()
        box.close()


def test_a_user_in_no_group_may_do_nothing_and_is_told_which_group_grants_what(site, people):
    users, groups = people
    code, out, err = cli_as(users["nobody"], "--socket", str(site.socket), "status")
    assert code == 77 and out == ""
    assert err.strip() == (f"id1: {users['nobody']} may not read the agent's state: that needs the viewer role "
                           f"(group {groups['viewer']}, {groups['approver']} or {groups['admin']})")
    code, _, err = cli_as(users["nobody"], "--socket", str(site.socket), "approve", "--yes")
    assert code == 77 and groups["approver"] in err and "Traceback" not in err


def test_a_viewer_reads_everything_but_may_not_decide(site, people):
    users, groups = people
    socket = ("--socket", str(site.socket))
    for verb in (["status"], ["updates"], ["history"], ["audit"], ["policy", "show"], ["status", "--json"]):
        code, out, err = cli_as(users["viewer"], *socket, *verb)
        assert code == 0, (verb, err)
    code, out, _ = cli_as(users["viewer"], *socket, "status", "--json")
    assert json.loads(out)["role"] == "viewer" and json.loads(out)["user"] == users["viewer"]

    code, _, err = cli_as(users["viewer"], *socket, "approve", "--yes")
    assert code == 77 and f"{users['viewer']} may not approve" in err and f"group {groups['approver']} or {groups['admin']}" in err
    code, _, err = cli_as(users["viewer"], *socket, "pin", "capability", "core/auth", "1.0.0")
    assert code == 77 and f"group {groups['admin']}" in err
    assert site.status()["pending_approval"] is not None  # nothing was decided


def test_an_approver_approves_but_may_not_pin_or_roll_back(site, people):
    users, groups = people
    socket = ("--socket", str(site.socket))
    code, _, err = cli_as(users["approver"], *socket, "pin", "capability", "core/auth", "1.1.0", "--reason", "try")
    assert code == 77 and f"{users['approver']} may not" in err and f"group {groups['admin']}" in err
    code, _, err = cli_as(users["approver"], *socket, "policy", "set", "auto-update")
    assert code == 77 and f"group {groups['admin']}" in err

    code, out, err = cli_as(users["approver"], *socket, "approve", "--yes", "--comment", "looks good")
    assert code == 0, err
    site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")
    approvals = site.audit("approve")
    assert approvals and approvals[0]["actor"] == users["approver"] and approvals[0]["why"] == "looks good"

    site.ok("pin", "capability", "core/auth", "1.1.0", "--reason", "the admin wants 1.1.0")  # root is admin
    site.wait_for(lambda s: s["pending_approval"], what="the approval of 1.1.0")
    assert cli_as(users["approver"], *socket, "approve", "--yes")[0] == 0
    site.wait_for(lambda s: s["revision"] == 2 and s["deployment"] is None, what="revision 2")

    code, _, err = cli_as(users["approver"], *socket, "rollback", "--to", "1", "--yes", "--reason", "no")
    assert code == 77 and f"{users['approver']} may not" in err and f"group {groups['admin']}" in err
    assert site.status()["revision"] == 2  # nothing rolled back
