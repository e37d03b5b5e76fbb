"""What the agent's sandbox allows, measured from inside it (standard library only).

Shipped as a capability's health command, so the agent itself runs it under id1-agent.service's
sandbox (the commands the agent runs inherit it). It tries each thing once and writes one JSON
object to REPORT: probe name → "allowed" or "denied (ERRNO)". It always exits 0: the probe is
the measurement, not the health. docs/security.md shows the same table, and
tests/systemd/test_agent_sandbox_on_systemd.py checks that the two agree.

    python3 sandbox_probe.py REPORT HOST_TMP_MARKER FEED_PORT
"""

import ctypes
import errno
import json
import mmap
import os
import socket
import subprocess
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)


def outcome(attempt) -> str:
    try:
        result = attempt()
    except OSError as error:
        return f"denied ({errno.errorcode.get(error.errno, error.errno)})"
    if result is False:
        return "denied"
    return "allowed"


def libc_call(name, *args):
    def call():
        if getattr(libc, name)(*args) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))
    return call


def write(path):
    def attempt():
        with open(path, "w") as file:
            file.write("probe")
        os.unlink(path)
    return attempt


def listing(path):
    return lambda: os.listdir(path) is not None


def connect(family, kind, address=None):
    def attempt():
        with socket.socket(family, kind) as sock:
            if address:
                sock.settimeout(5)
                sock.connect(address)
    return attempt


def setuid_file(folder):
    def attempt():
        path = os.path.join(folder, ".probe-setuid")
        with open(path, "w"):
            pass
        try:
            os.chmod(path, 0o4755)
        finally:
            os.unlink(path)
    return attempt


def write_exec_memory():
    memory = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    memory.close()


def reboot_outcome() -> str:
    """reboot(2) with a command that does not exist: EINVAL once permitted, so nothing reboots."""
    if libc.reboot(0x0BAD1D1) == 0:
        return "allowed"
    number = ctypes.get_errno()
    return "allowed" if number == errno.EINVAL else f"denied ({errno.errorcode.get(number, number)})"


def status_field(name):
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return None


def talk_to_pid1():
    done = subprocess.run(["systemctl", "is-system-running"], capture_output=True, text=True, timeout=30)
    if done.stdout.strip() not in ("running", "degraded"):
        raise OSError(errno.EACCES, done.stderr.strip())


def main() -> None:
    report, host_tmp_marker, feed_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
    timespec = (ctypes.c_long * 2)(int(time.time()), 0)
    found = {
        "write the unit folder /etc/systemd/system": outcome(write("/etc/systemd/system/.id1-probe")),
        "write the state folder /var/lib/id1": outcome(write("/var/lib/id1/.id1-probe")),
        "write the config folder /etc/id1": outcome(write("/etc/id1/.id1-probe")),
        "write the runtime folder /run/id1": outcome(write("/run/id1/.id1-probe")),
        "write elsewhere in /etc": outcome(write("/etc/.id1-probe")),
        "write /usr": outcome(write("/usr/local/.id1-probe")),
        "write /var/log": outcome(write("/var/log/.id1-probe")),
        "read /root and /home": outcome(lambda: (os.listdir("/root"), os.listdir("/home"))),
        "see the host's /tmp": "allowed" if os.path.exists(host_tmp_marker) else "denied",
        "write its own /tmp": outcome(write("/tmp/.id1-probe")),
        "see /proc/sys": "allowed" if os.path.exists("/proc/sys/kernel") else "denied",
        "write /sys": outcome(write("/sys/kernel/id1-probe")),
        "make a setuid file": outcome(setuid_file("/var/lib/id1")),
        "any capability (CapEff)": "denied" if int(status_field("CapEff"), 16) == 0 else "allowed",
        "gain privileges (NoNewPrivs)": "denied" if status_field("NoNewPrivs") == "1" else "allowed",
        "syscalls outside @system-service (seccomp filter)": "denied" if status_field("Seccomp") == "2" else "allowed",
        "switch to another user (setuid)": outcome(lambda: os.setuid(65534)),
        "new user or mount namespace": outcome(libc_call("unshare", CLONE_NEWUSER | CLONE_NEWNS)),
        "set the hostname": outcome(libc_call("sethostname", b"id1-probe", 9)),
        "set the clock": outcome(libc_call("clock_settime", 0, timespec)),
        "reboot": reboot_outcome(),
        "writable and executable memory": outcome(write_exec_memory),
        "netlink sockets": outcome(connect(socket.AF_NETLINK, socket.SOCK_RAW)),
        "packet sockets": outcome(connect(socket.AF_PACKET, socket.SOCK_RAW)),
        "TCP to 127.0.0.1 (feeds, health checks)": outcome(connect(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", feed_port))),
        "talk to PID 1 (systemctl)": outcome(talk_to_pid1),
    }
    with open(report, "w") as file:
        json.dump(found, file, indent=1)


main()
