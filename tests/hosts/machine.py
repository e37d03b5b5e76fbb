"""A test host: a private copy of the base root, booted with systemd as PID 1 (DESIGN.md §11).

    host = TestHost.create("h1")           # copy of base_image() under <cache>/hosts/
    host.boot()                            # systemd-nspawn --boot; returns once `running`
    host.run("systemctl", "is-active", "dbus")       # nsenter into all its namespaces
    host.run("id1", "status", user="alice")          # … as a user of the host
    host.reboot()                          # systemctl poweroff, wait for the exit, boot again
    host.destroy()                         # power off (or kill) and delete the copy

The host shares this machine's network (loopback): a feed served here on 127.0.0.1 is reachable
from inside, and a service inside listening on 127.0.0.1:PORT is reachable from here, so ports
must differ between hosts. Each nspawn runs in a cgroup of its own (without a systemd on this
machine nspawn keeps the cgroup it starts in, and two containers in one would collide), so
several hosts boot and run at once.

Commands run with a clean environment (nothing of this machine's, such as SSL_CERT_FILE, leaks
in). Every wait has a deadline and says what it waited for.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from tests.hosts.image import CACHE, base_image

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_TIMEOUT_S = 90
POWEROFF_TIMEOUT_S = 60


class HostError(AssertionError):
    """The host did not do what the test platform needs (boot, run a command, power off)."""


def _cgroup_mounts() -> dict[str, Path]:
    """Hierarchy (``name=systemd``, ``""`` for cgroup2) → where it is mounted."""
    mounts = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        fstype, options = fields[separator + 1], fields[separator + 3].split(",") + fields[5].split(",")
        if fstype == "cgroup2":
            mounts.setdefault("", Path(fields[4]))
        elif fstype == "cgroup" and "name=systemd" in options:
            mounts["name=systemd"] = Path(fields[4])
    return mounts


def _own_cgroups(name: str) -> list[Path]:
    """Fresh cgroups for one host in the hierarchies systemd uses, beside this process's own."""
    mounts = _cgroup_mounts()
    created = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        mount = mounts.get(controllers)
        if mount is None:
            continue
        folder = mount / path.lstrip("/") / f"id1-test-host-{name}"
        _remove_cgroup(folder)
        folder.mkdir(parents=True, exist_ok=True)
        created.append(folder)
    return created


def _remove_cgroup(folder: Path) -> None:
    if not folder.is_dir():
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


class TestHost:
    __test__ = False  # not a pytest test class

    def __init__(self, name: str, root: Path):
        self.name = name
        self.root = root
        self.log = root.parent / f"{root.name}.console.log"
        self._nspawn: subprocess.Popen | None = None
        self._cgroups: list[Path] = []
        self.leader: int | None = None
        self.boots = 0

    # ── life cycle ───────────────────────────────────────────────────────────────────────────

    @classmethod
    def create(cls, name: str) -> TestHost:
        """A private copy of the base root, with a machine id and hostname of its own."""
        image = base_image()
        hosts = CACHE / "hosts"
        hosts.mkdir(parents=True, exist_ok=True)
        _remove_stale_copies(hosts)
        root = hosts / f"{name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        done = subprocess.run(["cp", "-a", "--reflink=auto", str(image), str(root)], capture_output=True, text=True)
        if done.returncode != 0:
            raise HostError(f"cannot copy the base root: {done.stderr.strip()}")
        (root / ".complete").unlink(missing_ok=True)
        (root / ".owner").write_text(f"{os.getpid()}\n")
        (root / "etc" / "machine-id").write_text(uuid.uuid4().hex + "\n")
        (root / "etc" / "hostname").write_text(name + "\n")
        return cls(name, root)

    def boot(self, timeout_s: float = BOOT_TIMEOUT_S) -> None:
        if self.running:
            raise HostError(f"host {self.name} is already running")
        self._cgroups = _own_cgroups(f"{self.name}-{os.getpid()}")
        cgroups = [str(folder / "cgroup.procs") for folder in self._cgroups]

        def enter_own_cgroup() -> None:  # in the child, before exec: nspawn starts in its own cgroup
            for procs in cgroups:
                with open(procs, "w") as file:
                    file.write(str(os.getpid()))

        log = open(self.log, "ab")
        try:
            self._nspawn = subprocess.Popen(
                ["systemd-nspawn", "-D", str(self.root), "--register=no", "--keep-unit", "--boot", "--console=pipe",
                 "-M", self.name],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=enter_own_cgroup,
                start_new_session=True, env={"PATH": PATH, "SYSTEMD_LOG_LEVEL": "notice"},
            )
        finally:
            log.close()
        self.boots += 1
        deadline = time.monotonic() + timeout_s
        self.leader = self._wait_for_leader(deadline)
        answer = self._wait_for_boot(deadline)
        if answer != "running":
            failed = self._run_raw(["systemctl", "--failed", "--no-legend", "--plain"], timeout=30).stdout.strip()
            raise HostError(f"host {self.name} booted {answer or 'nowhere'} (not running); failed units: {failed or 'none'}\n{self.console_tail()}")

    def poweroff(self, timeout_s: float = POWEROFF_TIMEOUT_S) -> None:
        """A clean shutdown: every unit stopped as on a real host; returns once nspawn has exited."""
        if not self.running:
            return
        self._run_raw(["systemctl", "poweroff"], timeout=30)
        try:
            self._nspawn.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise HostError(f"host {self.name} did not power off within {timeout_s:g} s\n{self.console_tail()}") from None
        self._after_exit()

    def reboot(self) -> None:
        self.poweroff()
        self.boot()

    def kill(self) -> None:
        """Stop the container however it is: nspawn's SIGTERM halts it, SIGKILL if that hangs."""
        if self._nspawn is not None and self._nspawn.poll() is None:
            self._nspawn.send_signal(signal.SIGTERM)
            try:
                self._nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._nspawn.pid, signal.SIGKILL)
                self._nspawn.wait(timeout=30)
        self._after_exit()

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
        self.log.unlink(missing_ok=True)

    @property
    def running(self) -> bool:
        return self._nspawn is not None and self._nspawn.poll() is None

    # ── inside the host ──────────────────────────────────────────────────────────────────────

    def run(self, *argv: str, user: str | None = None, check: bool = True, timeout: float = 120.0,
            input: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """``argv`` inside the host (as ``user``, with that user's groups, if given)."""
        command = list(argv)
        if user is not None:
            command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--reset-env", *command]
        done = self._run_raw(command, timeout=timeout, input=input, env=env)
        if check and done.returncode != 0:
            raise HostError(f"on {self.name}{' as ' + user if user else ''}: {' '.join(argv)} exited {done.returncode}\n"
                            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done

    def spawn(self, *argv: str) -> subprocess.Popen:
        """``argv`` inside the host in the background (its output captured): wait() or kill() it."""
        if not self.running or self.leader is None:
            raise HostError(f"host {self.name} is not running")
        return subprocess.Popen(self._enter(list(argv), None), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def sh(self, script: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run("sh", "-c", script, **kwargs)

    def path(self, inside: str) -> Path:
        """Where a file of the host lies on this machine (to write or read it directly)."""
        return self.root / inside.lstrip("/")

    def write(self, inside: str, data: str | bytes, mode: int = 0o644) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        target.chmod(mode)

    def wait_until(self, condition, *, timeout_s: float, what: str, interval_s: float = 0.2):
        """Poll ``condition()`` until it returns something true; HostError naming ``what`` at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise HostError(f"on {self.name}: timed out after {timeout_s:g} s waiting for {what}")
            time.sleep(interval_s)

    def console_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ── plumbing ─────────────────────────────────────────────────────────────────────────────

    def _run_raw(self, command: list[str], *, timeout: float, input: str | None = None,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        if not self.running or self.leader is None:
            raise HostError(f"host {self.name} is not running")
        argv = self._enter(command, env)
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as error:
            raise HostError(f"on {self.name}: {' '.join(command)} did not finish within {timeout:g} s") from error

    def _enter(self, command: list[str], env: dict[str, str] | None) -> list[str]:
        environment = {"PATH": PATH, "LANG": "C.UTF-8", "TERM": "dumb", **(env or {})}
        # env -i: nsenter keeps this process's environment, which is not the host's.
        return ["nsenter", "-t", str(self.leader), "-a", "env", "-i",
                *(f"{key}={value}" for key, value in environment.items()), *command]

    def _wait_for_leader(self, deadline: float) -> int:
        """The container's PID 1: nspawn's child once it runs systemd."""
        children = Path(f"/proc/{self._nspawn.pid}/task/{self._nspawn.pid}/children")
        while time.monotonic() < deadline:
            if self._nspawn.poll() is not None:
                raise HostError(f"systemd-nspawn for {self.name} exited {self._nspawn.returncode}\n{self.console_tail()}")
            try:
                for pid in children.read_text().split():
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
            except OSError:
                pass
            time.sleep(0.05)
        raise HostError(f"host {self.name}: systemd did not start within the boot timeout\n{self.console_tail()}")

    def _wait_for_boot(self, deadline: float) -> str:
        """``running`` once booted, or the state it ended in (``degraded``…). Right after PID 1
        starts, systemctl cannot reach it yet (no answer at all): that is asked again."""
        last = ""
        while time.monotonic() < deadline:
            done = self._run_raw(["systemctl", "is-system-running", "--wait"], timeout=max(1.0, deadline - time.monotonic()))
            answer = done.stdout.strip()
            # Not "offline": that is what PID 1 says in its first moments, before /run/systemd/system.
            if answer in ("running", "degraded", "maintenance", "stopping"):
                return answer
            last = answer or done.stderr.strip()
            time.sleep(0.1)
        return f"nowhere within the boot timeout ({last})"

    def _after_exit(self) -> None:
        self.leader = None
        for folder in self._cgroups:
            _remove_cgroup(folder)
        self._cgroups = []


def _remove_stale_copies(hosts: Path) -> None:
    """Copies left by test runs that died without destroying their hosts."""
    for owner in hosts.glob("*/.owner"):
        try:
            pid = int(owner.read_text())
            os.kill(pid, 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue
        _kill_containers_of(owner.parent)
        shutil.rmtree(owner.parent, ignore_errors=True)
        Path(f"{owner.parent}.console.log").unlink(missing_ok=True)


def _kill_containers_of(root: Path) -> None:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"systemd-nspawn") and str(root).encode() in argv:
            try:
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
            except OSError:
                pass
