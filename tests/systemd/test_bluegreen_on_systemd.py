"""Blue-green on a host with systemd as PID 1 and Debian's nginx running under it: the agent as
shipped (its .deb, its sandboxed unit unchanged by the test) writes the include into
/etc/nginx/conf.d, runs the real ``nginx -t`` and ``systemctl reload nginx`` (the ``[switch]``
defaults), and users reach the live colour through nginx's public port.

One host plays the story in order (each test starts where the previous one left it):
a first install goes live in blue → an update goes live in green without a failed request, blue
stopped and disabled → a reboot brings nginx and green back by themselves → after nginx itself
restarted, a release that fails only behind nginx is switched back to green, still running →
the journal says it in one line each, no traceback.
"""

from __future__ import annotations

import http.client
import threading
import time

import pytest

from tests.hosts.agent import AGENT, AgentHost
from tests.hosts.machine import HostError
from tests.hosts.vendor import BlueGreenService, ServiceVendor
from tests.ports import free_port, free_port_range

API = "core/api"
NGINX = "nginx.service"
INCLUDE = "/etc/nginx/conf.d/id1-upstreams.conf"
HEADER = "# Written by id1-agent"
DRAIN_S = 2


@pytest.fixture(scope="module")
def story(deb, tmp_path_factory):
    from tests.feedserver import FeedServer
    from tests.systemd.conftest import require_host_platform

    require_host_platform()
    with FeedServer(tmp_path_factory.mktemp("www")) as server:
        vendor = ServiceVendor(server)
        ports = free_port_range(4)  # two per blue-green capability, and room for a second one
        api = BlueGreenService(API, public_port=free_port())
        host = AgentHost.create("agent-bluegreen")
        try:
            host.boot()
            host.install(deb)
            yield host, vendor, api, ports
        finally:
            host.destroy()


def answer(port: int, path: str = "/") -> str | None:
    """What a user gets on ``port`` of this machine's loopback (the host shares it): the body of
    a 200 on a new connection, or None (refused, reset, another status)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read().decode(errors="replace").strip()
        return body if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


class Users:
    """Requests on the public port, one after another on new connections, while a deployment runs."""

    def __init__(self, port: int):
        self.port = port
        self.answers: list[str | None] = []
        self.times: list[float] = []  # when each answer came (wall clock: the host's journal uses the same)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            said = answer(self.port)
            self.times.append(time.time())
            self.answers.append(said)
            self._stop.wait(0.02)

    def __enter__(self) -> Users:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def first(self, expected: str) -> float:
        return self.times[self.answers.index(expected)]

    def seen(self) -> list[str | None]:
        """The answers in order, each run of equal answers once."""
        return [one for index, one in enumerate(self.answers) if index == 0 or self.answers[index - 1] != one]


def capability(status: dict) -> dict:
    [found] = [c for c in status["capabilities"] if c["capability"] == API]
    return found


def wait_answer(host: AgentHost, port: int, expected: str, what: str, timeout_s: float = 30) -> None:
    said: list[str | None] = []

    def reached() -> bool:
        said.append(answer(port))
        return said[-1] == expected

    try:
        host.wait_until(reached, timeout_s=timeout_s, what=what)
    except HostError as error:
        raise HostError(f"{error}; the port said {said[-1]!r}, expected {expected!r}") from None


def test_nginx_runs_and_a_first_install_goes_live_in_blue(story):
    host, vendor, api, ports = story
    # Debian's nginx as installed: enabled and running under systemd; its nginx.conf includes
    # conf.d/*.conf in the http block, where the agent's include goes.
    assert host.enablement(NGINX) == "enabled" and host.unit_state(NGINX) == "active"
    assert "include /etc/nginx/conf.d/*.conf;" in host.path("/etc/nginx/nginx.conf").read_text()
    assert host.path("/etc/nginx/conf.d").is_dir() and not host.path(INCLUDE).exists()

    vendor.publish({"1.0.0": [api.release("1.0.0")]})
    # The [switch] defaults for nginx_include, nginx_test (nginx -t) and nginx_reload (systemctl
    # reload nginx); the public port on loopback only (this machine is shared).
    host.configure(vendor, channel="auto-update", extra=(
        f'[switch]\nports = "{ports.start}-{ports.stop - 1}"\ndrain = "{DRAIN_S}s"\nlisten = "127.0.0.1"\n'))
    host.systemctl("start", AGENT)
    said = host.id1("check", check=False)
    status = host.wait_idle()
    assert status["revision"] == 1, f"{said.stdout}{said.stderr}\n{host.id1('updates', check=False).stdout}\n{host.journal()[-3000:]}"

    assert answer(api.public_port) == "1.0.0 blue"
    live = capability(status)
    assert (live["version"], live["live_colour"], live["public_port"]) == ("1.0.0", "blue", api.public_port)
    assert live["units"] == [api.unit("blue")]
    assert f"blue live on :{api.public_port}" in host.id1("status").stdout
    assert host.unit_state(api.unit("blue")) == "active" and host.enablement(api.unit("blue")) == "enabled"
    assert host.unit_state(api.unit("green")) == "inactive"
    blue_port = ports.start  # the lowest free pair: blue, green
    assert f"/var/lib/id1/releases/core/api/1.0.0/serve.py {blue_port} blue " in host.unit_property(api.unit("blue"), "ExecStart")
    assert answer(blue_port) == "1.0.0 blue"  # the colour itself, on its private port
    include = host.path(INCLUDE).read_text()
    assert include.startswith(HEADER) and f"server 127.0.0.1:{blue_port};" in include, include
    assert f"listen 127.0.0.1:{api.public_port};" in include
    host.run("nginx", "-t")  # what the agent left nginx is valid


def test_an_update_goes_live_in_green_without_a_failed_request_and_blue_stops(story):
    host, vendor, api, ports = story
    vendor.publish({"1.0.0": [api.release("1.0.0")], "1.1.0": [api.release("1.1.0")]})
    with Users(api.public_port) as users:
        said = host.id1("check", check=False)
        status = host.wait_idle()
        wait_answer(host, api.public_port, "1.1.0 green", "users to reach green through nginx")
    assert status["revision"] == 2, f"{said.stdout}{said.stderr}\n{host.journal()[-3000:]}"
    # Every request got an answer: blue until nginx moved them, green after.
    assert users.seen() == ["1.0.0 blue", "1.1.0 green"], users.seen()
    assert len(users.answers) > 10, "too few requests to say anything"

    live = capability(status)
    assert (live["version"], live["live_colour"], live["public_port"]) == ("1.1.0", "green", api.public_port)
    assert live["units"] == [api.unit("green")]
    assert host.unit_state(api.unit("green")) == "active" and host.enablement(api.unit("green")) == "enabled"
    assert host.unit_state(api.unit("blue")) == "inactive" and host.enablement(api.unit("blue")) == "disabled"
    # Each colour runs its own release on its own port: blue's file still names 1.0.0.
    assert f"/var/lib/id1/releases/core/api/1.1.0/serve.py {ports.start + 1} green " in host.unit_property(api.unit("green"), "ExecStart")
    assert f"/var/lib/id1/releases/core/api/1.0.0/serve.py {ports.start} blue " in host.unit_property(api.unit("blue"), "ExecStart")
    assert f"server 127.0.0.1:{ports.start + 1};" in host.path(INCLUDE).read_text()
    # The drain: blue was stopped switch.drain after users were moved to green, not before.
    stopping = host.run("journalctl", "-u", api.unit("blue"), "-o", "short-unix", "--no-pager", "--grep", "^Stopping").stdout
    stopped_at = float(stopping.strip().splitlines()[-1].split()[0])
    assert stopped_at - users.first("1.1.0 green") >= DRAIN_S - 0.5, stopping


def test_a_reboot_brings_nginx_and_the_green_colour_back_by_themselves(story):
    host, vendor, api, ports = story
    before = host.status()
    host.reboot()
    host.wait_agent_ready()
    host.wait_until(lambda: host.unit_state(NGINX) == "active", timeout_s=30, what="nginx after the reboot")
    host.wait_until(lambda: host.unit_state(api.unit("green")) == "active", timeout_s=30, what="green after the reboot")
    wait_answer(host, api.public_port, "1.1.0 green", "users to reach green through nginx after the reboot")
    assert host.unit_state(api.unit("blue")) == "inactive"
    after = host.wait_idle()
    assert after["revision"] == before["revision"] == 2
    assert after["capabilities"] == before["capabilities"]
    assert capability(after)["live_colour"] == "green"
    assert host.run("systemctl", "is-system-running").stdout.strip() == "running"


def test_a_release_failing_behind_nginx_is_switched_back_to_green_still_running(story):
    host, vendor, api, ports = story
    # An operator restarts nginx: it writes a new /run/nginx.pid, which the agent's `nginx -t`
    # must still be allowed to open (its sandbox does not hold on to the old file).
    host.systemctl("restart", NGINX)
    wait_answer(host, api.public_port, "1.1.0 green", "green through the restarted nginx")
    vendor.publish({"1.1.0": [api.release("1.1.0")], "1.2.0": [api.release("1.2.0", broken_behind_proxy=True)]})
    with Users(api.public_port) as users:
        said = host.id1("check", check=False)
        status = host.wait_idle()
    assert status["revision"] == 2, f"{said.stdout}{said.stderr}\n{host.journal()[-3000:]}"
    # 1.2.0 passed its own colour's check, went live in blue, failed through nginx, and users
    # were moved back to green, which had kept running.
    assert users.seen()[0] == "1.1.0 green" and users.seen()[-1] == "1.1.0 green", users.seen()
    assert "1.2.0 blue" in users.seen(), users.seen()
    assert None not in users.answers, users.seen()
    live = capability(status)
    assert (live["version"], live["live_colour"]) == ("1.1.0", "green")
    assert host.unit_state(api.unit("green")) == "active" and host.enablement(api.unit("green")) == "enabled"
    assert host.unit_state(api.unit("blue")) == "inactive" and host.enablement(api.unit("blue")) == "disabled"
    assert answer(api.public_port) == "1.1.0 green"
    assert "core/api@1.2.0: deployment dep-3 failed" in host.id1("updates").stdout
    journal = host.journal()
    assert "automatic-rollback: " in journal and "is not healthy through nginx" in journal, journal[-3000:]


def test_the_journal_says_each_switch_in_one_line_and_no_traceback(story):
    host, vendor, api, ports = story
    journal = host.journal()
    assert "Traceback" not in journal, journal[-5000:]
    for expected in ("deployed: revision 1", "deployed: revision 2", "automatic-rollback: "):
        assert any(expected in line for line in journal.splitlines()), f"no line says {expected!r}:\n{journal[-3000:]}"
