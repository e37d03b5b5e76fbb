"""A blue-green capability with the real daemon (`id1 agent run`), a real nginx and real units:
seen in `id1 status`, the metrics, history; and the agent killed with SIGKILL while it drains."""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from agent.feed.signature import sign
from tests.bluegreen import blue_green_artifact
from tests.builders import FeedBuilder
from tests.daemon.site import Site, poll_until
from tests.nginx import Nginx
from tests.ports import free_port, free_port_range
from tests.test_engine import SYSTEMCTL3

API = "core/api"


class BlueGreenSite(Site):
    """The daemon site with a blue-green ``core/api`` behind a real nginx."""

    def __init__(self, nginx: Nginx):
        super().__init__()
        self.nginx = nginx
        self.public = free_port()
        colours = free_port_range(4)
        self.switch_table = (
            f'[switch]\nports = "{colours.start}-{colours.stop - 1}"\nnginx_include = "{nginx.include}"\n'
            f"nginx_test = {_toml_list(nginx.test_command)}\nnginx_reload = {_toml_list(nginx.reload_command)}\n"
            'listen = "127.0.0.1"\n'
        )
        self.metrics = self.root / "id1.prom"

    def publish_api(self, serial: int, versions: list[str], platforms: dict[str, str], *, modes: dict[str, str] | None = None):
        now = datetime.now(timezone.utc)
        feed = FeedBuilder(serial=serial, issued_at=now - timedelta(hours=1), expires_at=now + timedelta(days=13))
        for version in versions:
            mode = (modes or {}).get(version, "fine")
            data = blue_green_artifact(API, version, mode)
            name = f"core-api-{version}-{mode}.tar.gz"
            self.server.publish(f"artifacts/{name}", data)
            feed.capability(API, version, units=["id1-core-api@.service"],
                            health={"http": "http://127.0.0.1:@PORT@/healthz", "timeout_s": 3 if "broken" in mode else 30},
                            switch={"mode": "blue-green", "port": self.public})
            feed.data["capabilities"][-1]["artifact"] = {"url": f"artifacts/{name}", "sha256": hashlib.sha256(data).hexdigest(),
                                                         "size": len(data)}
        for platform, api in platforms.items():
            feed.suite("core", platform, {"api": api}).platform(platform, {"core": platform})
        data = feed.bytes()
        self.server.publish("feed.json", data)
        self.server.publish("feed.json.minisig", sign(data, self.key, trusted_comment=f"serial {serial}").encode())

    def setup(self, *, drain: str) -> None:
        self.configure("auto-update", extra=f'[metrics]\ntextfile = "{self.metrics}"\n' + self.switch_table + f'drain = "{drain}"\n')

    def public_answer(self) -> str | None:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.public, timeout=5)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            body = response.read().decode().strip()
            return body if response.status == 200 else None
        except OSError:
            return None
        finally:
            connection.close()

    def answers(self, expected: str, *, timeout_s: float = 15.0) -> bool:
        """True once a new connection gets ``expected`` (polled: nginx's old workers may take a
        few new connections right after a reload and route them by the old include)."""
        return bool(poll_until(lambda: self.public_answer() == expected, timeout=timeout_s, what=f"the public port to answer {expected!r}"))

    def post_check(self) -> None:
        """POST /check straight to the socket (not the CLI: its output capture is process-wide)."""
        import httpx

        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://id1", timeout=300) as client:
                client.post("/check")
        except httpx.HTTPError:
            pass  # the agent was killed meanwhile

    def colour_state(self, colour: str) -> str:
        import subprocess

        done = subprocess.run([str(SYSTEMCTL3), f"--root={self.host_root}", "is-active", f"id1-core-api@{colour}.service"],
                              capture_output=True, text=True, timeout=60)
        return done.stdout.strip() or "inactive"


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


@pytest.fixture
def bg(tmp_path):
    with Nginx(tmp_path / "nginx") as nginx:
        site = BlueGreenSite(nginx)
        try:
            yield site
        finally:
            site.close()


def test_status_history_and_metrics_show_the_live_colour_and_a_kill_during_the_drain_converges(bg):
    bg.publish_api(1, ["1.0.0"], {"1.0.0": "1.0.0"})
    bg.setup(drain="60s")
    bg.start()
    bg.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")
    assert bg.answers("1.0.0 blue")
    [api] = bg.status()["capabilities"]
    assert (api["live_colour"], api["public_port"], api["units"]) == ("blue", bg.public, ["id1-core-api@blue.service"])
    assert f"1.0.0 (blue live on :{bg.public})" in bg.ok("status").out
    poll_until(lambda: bg.metrics.exists() and 'id1_live_colour{capability="core/api",colour="blue"} 1' in bg.metrics.read_text(),
               what="the metrics to show blue live")

    bg.publish_api(2, ["1.0.0", "1.1.0"], {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
    threading.Thread(target=bg.post_check, daemon=True).start()  # answers once deployed: not waited for
    bg.wait_for(lambda s: (s["deployment"] or {}).get("state") == "draining", timeout=120, what="the drain")
    assert bg.answers("1.1.0 green")  # users moved before the drain
    assert (bg.colour_state("blue"), bg.colour_state("green")) == ("active", "active")

    bg.send(signal.SIGKILL)  # killed while the old colour drains
    bg.process.wait(30)
    assert bg.answers("1.1.0 green")  # nginx keeps routing without the agent

    bg.setup(drain="1s")
    started = time.monotonic()
    bg.start()
    status = bg.wait_for(lambda s: s["revision"] == 2 and s["deployment"] is None, timeout=120, what="the resumed deployment")
    assert time.monotonic() - started < 110
    [api] = status["capabilities"]
    assert (api["version"], api["live_colour"]) == ("1.1.0", "green")
    assert bg.answers("1.1.0 green")
    poll_until(lambda: bg.colour_state("blue") == "inactive", what="the old colour stopped")
    assert bg.colour_state("green") == "active"
    history = bg.ok("history", "--json").json()
    assert [r["number"] for r in history["revisions"]][:2] == [2, 1]
    poll_until(lambda: 'id1_live_colour{capability="core/api",colour="green"} 1' in bg.metrics.read_text(),
               what="the metrics to show green live")
    [latest] = bg.get("/deployments", params={"limit": 1}).json()
    steps = [entry["state"] for entry in latest["journal"]]
    assert steps.count("checking") == 2 and steps[-1] == "committed", steps  # run again after the kill, then done


def test_a_release_that_fails_through_nginx_goes_back_to_the_old_colour_and_is_blocked(bg):
    bg.publish_api(1, ["1.0.0"], {"1.0.0": "1.0.0"})
    bg.setup(drain="1s")
    bg.start()
    bg.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")

    bg.publish_api(2, ["1.0.0", "1.1.0"], {"1.0.0": "1.0.0", "1.1.0": "1.1.0"}, modes={"1.1.0": "broken-behind-proxy"})
    bg.cli("check")
    poll_until(lambda: bg.audit("automatic-rollback"), timeout=120, what="the automatic rollback")
    status = bg.wait_for(lambda s: s["deployment"] is None, what="the undo to end")
    assert status["revision"] == 1 and status["capabilities"][0]["live_colour"] == "blue"
    assert bg.answers("1.0.0 blue")
    assert "core/api@1.1.0" in bg.ok("updates").out
    poll_until(lambda: bg.colour_state("green") == "inactive", what="the failed colour stopped")


KILL_STEPS = ["starting-idle", "starting core/api green", "checking-idle", "switching-traffic", "switching core/api green",
              "verifying-public", "draining", "stopping-old", "stopping core/api blue"]


@pytest.mark.parametrize("step", KILL_STEPS)
def test_sigkill_at_each_step_of_the_switch_the_next_start_leaves_one_healthy_colour_live(bg, step):
    bg.publish_api(1, ["1.0.0"], {"1.0.0": "1.0.0"})
    bg.setup(drain="1s")
    bg.start()
    bg.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")
    bg.stop()

    bg.publish_api(2, ["1.0.0", "1.1.0"], {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
    bg.start(env={"ID1_FAILPOINT_KILL_AT": step})  # the agent SIGKILLs itself on reaching the step
    threading.Thread(target=bg.post_check, daemon=True).start()
    assert bg.process.wait(120) == -signal.SIGKILL, bg.log.read_text()
    assert f"ID1_FAILPOINT_KILL_AT={step}" in bg.log.read_text()

    bg.start()
    status = bg.wait_for(lambda s: s["revision"] == 2 and s["deployment"] is None, timeout=120, what="the resumed deployment")
    [api] = status["capabilities"]
    assert (api["version"], api["live_colour"]) == ("1.1.0", "green")
    assert bg.answers("1.1.0 green")
    assert (bg.colour_state("green"), bg.colour_state("blue")) == ("active", "inactive")
    assert not bg.ok("updates", "--json").json()["problems"]  # a crash is not a bad release: nothing blocked
