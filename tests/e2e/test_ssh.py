"""Approvals over a real SSH login (DESIGN.md §9): Debian's ``sshd`` on a loopback port, a
throwaway user in the approver group, a key made for the test, the real daemon.

The user logs in with ``ssh -tt`` in a tmux pane (80x24, ``TERM=xterm-256color``); the login
shell sources packaging/profile.d/id1.sh (from the user's ``~/.profile``, as /etc/profile.d
would), which tells the approver that an update awaits. The user answers the ``id1 approve``
prompt with ``y`` and the daemon deploys; then, for a second update, runs ``id1 tui``, presses
``2``, ``a``, ``y``, and the daemon deploys again; ``q``, ``exit``. The audit log names the user.

The user runs ``id1`` from a venv every local user can execute (``make e2e-venv``, see
tests/e2e/world_venv.py): the test suite's own interpreter lives under /root. Everything made
here goes at the end: sshd, the tmux server (and the session with it), the user and its group,
the folders.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemon.site import REPO, Release, Site, poll_until
from tests.e2e import world_venv
from tests.e2e.terminal import Tmux
from tests.test_engine import SYSTEMCTL3

SSHD = Path("/usr/sbin/sshd")
HINT = REPO / "packaging" / "profile.d" / "id1.sh"
PROMPT = "e2e-ssh$ "


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def venv() -> Path:
    if os.geteuid() != 0:
        pytest.fail("the SSH end-to-end test starts sshd and creates a Unix user: run it as root (CI does)")
    for tool in (SSHD, Path("/usr/bin/ssh"), Path("/usr/bin/ssh-keygen")):
        if not tool.exists():
            pytest.fail(f"{tool} is missing: `make test` installs it (Debian packages openssh-server, openssh-client)")
    venv = world_venv.DEFAULT
    if world_venv.problem(venv) and (venv / "bin" / "id1").exists():
        world_venv.build(venv)  # sources changed since: this checkout is reinstalled, in seconds
    trouble = world_venv.problem(venv)
    if trouble:
        pytest.fail(trouble)
    return venv


@pytest.fixture
def folder() -> Iterator[Path]:
    """World-traversable (the user's home is in it), removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="id1-e2e-ssh-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Approver:
    name: str
    group: str
    home: Path


@pytest.fixture
def approver(folder: Path) -> Iterator[Approver]:
    """A throwaway user with a real shell, in the approver group named in the daemon's config."""
    tag = secrets.token_hex(3)
    person = Approver(f"id1ssh{tag}", f"id1ssh{tag}-approver", folder / "home")
    made_user = made_group = False
    try:
        _run("groupadd", person.group)
        made_group = True
        _run("useradd", "--no-create-home", "--home-dir", str(person.home), "--shell", "/bin/bash", "-G", person.group,
             person.name)
        made_user = True
        _run("usermod", "-p", "*", person.name)  # no password, but not locked: sshd without PAM refuses locked accounts
        person.home.mkdir()
        yield person
    finally:
        if made_user:
            _end_processes_of(person.name)
            subprocess.run(["userdel", person.name], capture_output=True, timeout=60)
        if made_group:
            subprocess.run(["groupdel", person.group], capture_output=True, timeout=60)


def _end_processes_of(user: str) -> None:
    """Whatever the throwaway user still runs (it exists only for this test), one process id at a time."""
    uid = pwd.getpwnam(user).pw_uid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Sshd:
    port: int
    client_key: Path
    log: Path


@pytest.fixture
def sshd(folder: Path, approver: Approver) -> Iterator[Sshd]:
    """Debian's sshd on 127.0.0.1:PORT with its own host key and config, letting only the approver in, by key."""
    keys = folder / "keys"
    keys.mkdir(mode=0o700)
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host"))
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "client"))
    dot_ssh = approver.home / ".ssh"
    dot_ssh.mkdir(mode=0o700)
    (dot_ssh / "authorized_keys").write_text((keys / "client.pub").read_text())
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {dot_ssh / 'authorized_keys'}\nAllowUsers {approver.name}\n"
        "UsePAM no\nStrictModes no\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin no\nPrintMotd no\nPrintLastLog no\nX11Forwarding no\nAllowTcpForwarding no\nLogLevel VERBOSE\n")
    privsep = Path("/run/sshd")  # sshd's privilege-separation folder; the package's tmpfiles.d makes it at boot
    made_privsep = not privsep.exists()
    privsep.mkdir(mode=0o755, exist_ok=True)
    checked = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, f"sshd refuses the test's config: {checked.stderr}"
    log = folder / "sshd.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=output, stderr=subprocess.STDOUT)
    try:
        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"sshd exited with {process.returncode}: {log.read_text()}")
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0
        poll_until(listening, timeout=20, what=f"sshd to listen on port {port}")
        _chown_tree(approver.home, approver.name)
        yield Sshd(port, keys / "client", log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if made_privsep:
            shutil.rmtree(privsep, ignore_errors=True)
        print(f"--- sshd log ---\n{log.read_text()[-3000:] if log.exists() else '(none)'}")


def _chown_tree(top: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for folder, dirs, files in os.walk(top):
        for path in (folder, *(os.path.join(folder, name) for name in dirs + files)):
            os.chown(path, entry.pw_uid, entry.pw_gid)


@pytest.fixture
def site(approver: Approver) -> Iterator[Site]:
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    box = Site()
    try:
        box.publish(1, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0"}, notes={"1.0.0": "First release."})
        box.configure("manual-approval", extra=f'[roles]\napprover = ["{approver.group}"]\n')
        box.start()
        box.wait_for(lambda s: s["pending_approval"], what="the first approval")
        yield box
    finally:
        box.stop()
        print(f"--- agent log ---\n{box.log.read_text()[-3000:] if box.log.exists() else '(none)'}")
        box.close()


def login_profile(approver: Approver, venv: Path, site: Site) -> None:
    """The approver's ~/.profile: id1 on the PATH, the test daemon's socket, and the login hint
    (packaging/profile.d/id1.sh, copied where the user can read it, sourced as /etc/profile would)."""
    shutil.copy(HINT, approver.home / "id1-login-hint.sh")
    (approver.home / ".profile").write_text(
        f'export PATH="{venv}/bin:$PATH"\nexport ID1_SOCKET="{site.socket}"\n'
        f'export ID1_APPROVER_GROUPS="{approver.group}"\nexport LANG=C.UTF-8\n'
        f"PS1='{PROMPT}'\n"
        '. "$HOME/id1-login-hint.sh"\n')
    _chown_tree(approver.home, approver.name)


def test_an_approver_logs_in_over_ssh_is_told_and_approves_at_the_prompt_and_in_the_dashboard(
        venv, approver, sshd, site, folder):
    login_profile(approver, venv, site)
    ssh = ["/usr/bin/ssh", "-tt", "-F", "/dev/null", "-p", str(sshd.port), "-i", str(sshd.client_key),
           "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"{approver.name}@127.0.0.1"]
    with Tmux(folder / "tmux", ssh, term="xterm-256color") as pane:
        # The login: the hint (within its one second, the agent answering) and the prompt.
        started = time.monotonic()
        screen = pane.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), what="the login shell's prompt")
        assert "id1: 1 update awaits approval on this host (approval-1)." in screen, screen
        assert "approve: id1 approve" in screen and "dashboard: id1 tui" in screen
        assert "not answering" not in screen
        print(f"login to prompt: {time.monotonic() - started:.2f} s")

        # The approval prompt: the change, then [y/N], answered y.
        pane.type("id1 approve")
        pane.press("Enter")
        screen = pane.wait_for("Approve approval-1? [y/N]", what="the approval prompt")
        assert re.search(r"core/auth\s+\(none\)\s+1\.0\.0\s+latest", screen) and "First release." in screen, screen
        pane.type("y")
        pane.press("Enter")
        pane.wait_for(f"approval-1 approved by {approver.name}", what="the approval's answer")
        status = site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")
        assert [(c["capability"], c["version"]) for c in status["capabilities"]] == [("core/auth", "1.0.0")]
        assert site.audit("approve")[0]["actor"] == approver.name

        # A second update (root pins 1.1.0); the approver approves it from the dashboard.
        site.ok("pin", "capability", "core/auth", "1.1.0", "--reason", "try 1.1.0")
        site.wait_for(lambda s: s["pending_approval"], what="the approval of 1.1.0")
        pane.type("id1 tui")
        pane.press("Enter")
        screen = pane.wait_for("approval-2: 1 change AWAIT approval", what="the dashboard's overview")
        assert f"{approver.name} (approver)" in screen, screen
        pane.press("2")
        pane.wait_for(lambda s: re.search(r"approval-2\s+PENDING", s), what="approval-2 on Updates")
        pane.press("a")
        pane.wait_for("Approve approval-2?", what="the approve dialog")
        pane.press("y")
        site.wait_for(lambda s: s["revision"] == 2 and s["deployment"] is None, what="revision 2")
        approval = site.audit("approve")[0]
        assert approval["actor"] == approver.name and "approval-2" in approval["what"], approval
        pane.wait_for(lambda s: re.search(rf"approval-2\s+deployed\s+.*{approver.name}", s), what="approval-2 shown deployed")

        # q leaves the dashboard for the shell; exit ends the login, and ssh with it.
        pane.press("q")
        pane.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), what="the prompt after the dashboard")
        pane.type("exit")
        pane.press("Enter")
        assert pane.wait_exit(timeout=20) == 0
        assert "Traceback" not in pane.screen()
