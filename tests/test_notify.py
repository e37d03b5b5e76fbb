"""SystemdNotifier against real AF_UNIX datagram sockets, as systemd's notify socket is one."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.daemon.notify import SystemdNotifier


class NotifySocket:
    """Stands in for systemd: a bound SOCK_DGRAM socket whose datagrams a test reads."""

    def __init__(self, address: str | bytes):
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(address)
        self.socket.settimeout(5)

    def receive(self) -> str:
        return self.socket.recv(4096).decode()

    def nothing_waiting(self) -> bool:
        self.socket.settimeout(0)  # with a timeout set, Python polls and ignores MSG_DONTWAIT
        try:
            self.socket.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.socket.settimeout(5)
        return False

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[NotifySocket, str]]:
    path = tmp_path / "notify"
    assert len(os.fsencode(path)) < 108, "AF_UNIX paths are limited to 107 bytes"
    receiver = NotifySocket(str(path))
    yield receiver, str(path)
    receiver.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[NotifySocket, str]]:
    name = f"id1-test-{uuid.uuid4().hex}"
    receiver = NotifySocket(b"\0" + name.encode())
    yield receiver, "@" + name
    receiver.close()


def test_each_notification_is_one_datagram_to_a_socket_path(path_socket):
    receiver, path = path_socket
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})

    assert notifier.ready() and notifier.status("checking the feed") and notifier.watchdog() and notifier.stopping()

    assert [receiver.receive() for _ in range(4)] == ["READY=1", "STATUS=checking the feed", "WATCHDOG=1", "STOPPING=1"]
    assert receiver.nothing_waiting()
    notifier.close()


def test_an_abstract_socket_is_named_with_an_at_sign(abstract_socket):
    receiver, name = abstract_socket
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": name})

    notifier.ready()

    assert receiver.receive() == "READY=1"
    notifier.close()


def test_reloading_carries_the_monotonic_clock_in_microseconds(path_socket):
    receiver, path = path_socket
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    first, second = receiver.receive().split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after
    notifier.close()


def test_a_status_cannot_smuggle_in_another_assignment(path_socket):
    receiver, path = path_socket
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})

    notifier.status("core 1.3.0 failed:\nREADY=1")

    assert receiver.receive() == "STATUS=core 1.3.0 failed: READY=1"
    notifier.close()


def test_without_notify_socket_every_call_does_nothing():
    notifier = SystemdNotifier.from_environment({"WATCHDOG_USEC": "30000000"})

    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False and notifier.reloading() is False
    assert notifier.watchdog_interval() is None


def test_a_vanished_socket_is_logged_once_and_never_raises(path_socket, caplog):
    receiver, path = path_socket
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.ready()
    receiver.close()
    os.unlink(path)

    with caplog.at_level(logging.DEBUG, logger="id1.systemd"):
        results = [notifier.watchdog(), notifier.status("still here"), notifier.watchdog()]

    assert results == [False, False, False]
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert path in warnings[0].getMessage()
    notifier.close()


def test_a_socket_that_is_not_unix_is_refused_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="id1.systemd"):
        notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})

    assert not notifier.enabled and notifier.ready() is False
    assert "vsock:2:1234" in caplog.text


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_is_pinged_at_half_its_interval_when_it_is_ours(environment, expected):
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "/run/systemd/notify", **environment})

    assert notifier.watchdog_interval() == expected


def test_the_process_environment_is_read_by_default(path_socket, monkeypatch):
    receiver, path = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    notifier = SystemdNotifier.from_environment()
    notifier.watchdog()

    assert receiver.receive() == "WATCHDOG=1"
    assert notifier.watchdog_interval() == 1.0
    notifier.close()
