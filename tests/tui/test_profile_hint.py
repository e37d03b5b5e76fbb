"""packaging/profile.d/id1.sh, run by sh as a login shell would source it, with a fake ``id1`` on
PATH: approvers and admins learn what awaits them, within about a second whatever the agent does,
and nobody else (nor scp or `ssh host cmd`) sees a thing."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "packaging" / "profile.d" / "id1.sh"
HINT = SOURCE  # a world-readable copy once the module's fixture has made it (see below)
STATUS = {"instance_id": "host-01", "activity": "idle", "role": "approver",
          "pending_approval": {"id": "approval-3", "status": "pending", "created_at": "2026-11-21T08:00:00Z", "changes": 3},
          "deployment": None, "capabilities": [{"capability": "core/auth", "version": "1.0.1"}]}
SH = shutil.which("sh") or "/bin/sh"


def _login_user() -> tuple[list[str], str]:
    """Who logs in: this user, or ``nobody`` when the tests run as root (root is always told,
    which would make every group test pass for nothing)."""
    if os.getuid() != 0:
        return [], grp.getgrgid(os.getgid()).gr_name
    nobody = pwd.getpwnam("nobody")
    return (["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--init-groups"],
            grp.getgrgid(nobody.pw_gid).gr_name)


RUN_AS, MY_GROUP = _login_user()


@pytest.fixture(scope="module", autouse=True)
def readable_hint():
    """The login user (``nobody`` under root) sources a copy in a world-readable folder: the
    clone itself may sit in a folder only its owner can enter (CI's, a home directory)."""
    global HINT
    folder = Path(tempfile.mkdtemp(prefix="id1-hint-script-"))
    folder.chmod(0o755)
    HINT = folder / "id1.sh"
    shutil.copyfile(SOURCE, HINT)
    HINT.chmod(0o644)
    yield
    HINT = SOURCE
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def tmp_path():
    """A folder the login user can read (pytest's own is private to the user running the tests)."""
    folder = Path(tempfile.mkdtemp(prefix="id1-hint-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)

pytestmark = pytest.mark.skipif(shutil.which("timeout") is None or (os.getuid() == 0 and not shutil.which("setpriv")),
                                reason="needs coreutils timeout (and util-linux setpriv when run as root)")


def fake_id1(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o777)  # the fake writes its calls here
    script = folder / "id1"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return folder


def canned(folder: Path, status: dict, *, indent: int | None = None) -> Path:
    (folder / "status.json").parent.mkdir(parents=True, exist_ok=True)
    (folder / "status.json").write_text(json.dumps(status, indent=indent))
    return fake_id1(folder, f'echo "$@" >> "{folder}/calls"\n'
                            f'[ "$1 $2" = "status --json" ] || exit 2\ncat "{folder}/status.json"\n')


def login(folder: Path | None, *, interactive: bool = True, **env: str) -> tuple[str, float]:
    path = f"{folder}:/usr/bin:/bin" if folder else "/usr/bin:/bin"
    environment = {"PATH": path, "HOME": str(folder or "/tmp"), "ID1_APPROVER_GROUPS": MY_GROUP, **env}
    command = [*RUN_AS, SH, "-i", "-c", f". {HINT}"] if interactive else [*RUN_AS, SH, "-c", f". {HINT}"]
    started = time.monotonic()
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    return done.stdout, time.monotonic() - started


def test_an_approver_is_told_how_many_updates_await_and_how_to_act(tmp_path):
    out, _ = login(canned(tmp_path / "bin", STATUS))
    assert out == ("id1: 3 updates await approval on this host (approval-3).\n"
                   "     review: id1 updates   approve: id1 approve   reject: id1 reject --reason ...   dashboard: id1 tui\n")


def test_pretty_printed_json_is_read_too(tmp_path):
    status = {**STATUS, "pending_approval": {**STATUS["pending_approval"], "changes": 1}}
    out, _ = login(canned(tmp_path / "bin", status, indent=2))
    assert out.startswith("id1: 1 update awaits approval on this host (approval-3).\n")


def test_an_admin_group_counts_and_nothing_awaiting_says_nothing(tmp_path):
    folder = canned(tmp_path / "bin", {**STATUS, "pending_approval": None})
    out, _ = login(folder, ID1_APPROVER_GROUPS="nobody-group", ID1_ADMIN_GROUPS=f"wheel {MY_GROUP}")
    assert out == ""
    assert (folder / "calls").read_text() == "status --json\n"


def test_someone_in_neither_group_is_not_told_and_the_agent_not_asked(tmp_path):
    folder = canned(tmp_path / "bin", STATUS)
    out, _ = login(folder, ID1_APPROVER_GROUPS="id1-approver-elsewhere", ID1_ADMIN_GROUPS="id1-admin-elsewhere")
    assert out == ""
    assert not (folder / "calls").exists()


def test_a_hanging_agent_costs_at_most_about_a_second(tmp_path):
    folder = fake_id1(tmp_path / "bin", f'sleep 5\ncat "{tmp_path}/never.json"\n')
    out, elapsed = login(folder)
    assert out == "id1: the update agent is not answering (see: id1 status)\n"
    assert elapsed < 1.2, elapsed


def test_an_agent_that_is_down_is_one_line(tmp_path):
    folder = fake_id1(tmp_path / "bin", 'echo "id1: the agent is not running: no socket at /run/id1/agent.sock" >&2\nexit 69\n')
    out, elapsed = login(folder)
    assert out == "id1: the update agent is not answering (see: id1 status)\n"
    assert elapsed < 1.2


def test_no_id1_installed_says_nothing(tmp_path):
    out, _ = login(None)
    assert out == ""


def test_non_interactive_shells_and_off_stay_quiet(tmp_path):
    folder = canned(tmp_path / "bin", STATUS)
    assert login(folder, interactive=False)[0] == ""
    assert login(folder, ID1_LOGIN_HINT="off")[0] == ""
    assert login(folder, interactive=False, ID1_LOGIN_HINT="always")[0].startswith("id1: 3 updates await")


def test_sourcing_leaves_the_login_shell_as_it_was(tmp_path):
    folder = canned(tmp_path / "bin", STATUS)
    environment = {"PATH": f"{folder}:/usr/bin:/bin", "HOME": str(tmp_path), "ID1_APPROVER_GROUPS": MY_GROUP}
    script = f'. {HINT} >/dev/null; echo "alive member=${{member:-}} answer=${{answer:-}} opts=$-"'
    done = subprocess.run([*RUN_AS, SH, "-i", "-c", script], env=environment, capture_output=True, text=True, timeout=20,
                          stdin=subprocess.DEVNULL)
    assert done.stdout.startswith("alive member= answer= opts=")
