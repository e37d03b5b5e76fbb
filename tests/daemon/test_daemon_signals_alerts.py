"""What the daemon tells the outside world, with the real daemon: systemd (sd_notify READY,
STATUS, STOPPING), a webhook (failed deployments, rollbacks, forced patches, rejected feeds) and
Prometheus (a textfile that ``promtool check metrics`` accepts); and the health watch rolling
back a release that turns unhealthy during its bake period."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading

import pytest

from tests.daemon.site import Release, Site, poll_until
from tests.test_engine import SYSTEMCTL3


class SystemdSocket:
    """A NOTIFY_SOCKET that keeps every datagram (read on a thread, so its queue never fills)."""

    def __init__(self, path):
        self.messages: list[str] = []
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.2)
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while not self.closed:
            try:
                self.messages.append(self.socket.recv(4096).decode())
            except (TimeoutError, OSError):
                continue

    def saw(self, text: str) -> bool:
        return any(text in message for message in self.messages)

    def close(self):
        self.closed = True
        self.socket.close()


class Webhook:
    """A loopback webhook that records every JSON body it is sent."""

    def __init__(self):
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def kinds(self) -> list[str]:
        return [body["kind"] for body in self.bodies]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site(monkeypatch):
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    box = Site()
    notify = SystemdSocket(box.root / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(box.root / "notify.sock"))
    hook = Webhook()
    box.notify, box.hook = notify, hook
    try:
        yield box
    finally:
        box.stop()
        print(f"--- agent log ---\n{box.log.read_text()[-6000:] if box.log.exists() else '(none)'}")
        box.close()
        notify.close()
        hook.close()


def promtool_accepts(path) -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: `make test` installs it (Debian package prometheus)")
    done = subprocess.run([promtool, "check", "metrics"], input=path.read_bytes(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    return path.read_text()


def test_systemd_webhook_and_metrics_hear_about_what_the_agent_does(site):
    metrics = site.root / "id1.prom"
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    site.configure("frozen", extra=f'[alerts]\nwebhook = "{site.hook.url}"\n[metrics]\ntextfile = "{metrics}"\n')
    site.start()
    poll_until(lambda: site.notify.saw("READY=1"), timeout=30, what="READY=1")
    assert site.notify.saw("STATUS=idle"), site.notify.messages

    # Frozen, nothing installed: the install waits; a critical fix of what runs is forced.
    site.ok("policy", "set", "auto-update")
    site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")
    site.ok("policy", "set", "frozen")
    site.publish(2, {"1.0.0": Release(), "1.0.1": Release()}, {"1.0.0": "1.0.0"}, advisory="<1.0.1")
    site.ok("check")
    site.wait_for(lambda s: s["revision"] == 2 and s["deployment"] is None, what="the forced fix")
    poll_until(lambda: "forced-patch" in site.hook.kinds(), timeout=30, what="the forced-patch alert")
    forced = next(body for body in site.hook.bodies if body["kind"] == "forced-patch")
    assert forced["instance_id"] == "host-01" and "core/auth 1.0.0 → 1.0.1" in forced["summary"]

    # An older serial is a replay: refused, alerted, nothing changes.
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    assert site.cli("check").code == 3
    poll_until(lambda: "feed-rejected" in site.hook.kinds(), timeout=30, what="the feed-rejected alert")
    assert site.status()["revision"] == 2

    text = poll_until(lambda: metrics.exists() and "id1_current_revision 2" in metrics.read_text() and promtool_accepts(metrics),
                      timeout=30, what="metrics for revision 2")
    assert 'id1_deployments_total{status="succeeded"} 2' in text
    assert "id1_pending_approvals 0" in text and "id1_last_successful_check_timestamp_seconds" in text

    assert site.stop() == 0
    poll_until(lambda: site.notify.saw("STOPPING=1"), timeout=10, what="STOPPING=1")
    assert site.notify.saw("STATUS=deploying: core/auth 1.0.0 → 1.0.1")


def test_a_release_that_turns_unhealthy_while_baking_is_rolled_back_and_alerted(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    # A bake period long enough that stopping the unit surely falls inside it, even on a loaded machine.
    site.config.write_text(site.config_text("auto-update", extra=f'[alerts]\nwebhook = "{site.hook.url}"\n')
                           .replace('bake_period = "5s"', 'bake_period = "10m"'))
    site.start()
    site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")
    # 1.1.0 passes its health check at deployment, then its service dies within the bake period.
    site.publish(2, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
    site.ok("check")
    site.wait_for(lambda s: s["revision"] == 2 and s["deployment"] is None, what="revision 2")
    subprocess.run([str(SYSTEMCTL3), f"--root={site.host_root}", "stop", "id1-core-auth.service"], capture_output=True, timeout=60)

    status = site.wait_for(lambda s: s["revision"] == 3 and s["deployment"] is None, timeout=90, what="the automatic rollback")
    assert status["capabilities"][0]["version"] == "1.0.0"
    assert site.unit_active()
    rollback = site.audit("automatic-rollback")[0]
    assert rollback["actor"] == "agent" and "turned unhealthy within the bake period" in rollback["why"]
    poll_until(lambda: "rollback" in site.hook.kinds(), timeout=30, what="the rollback alert")
    assert "core/auth@1.1.0" in {item["ref"] for item in site.get("/blocked").json()}


def test_an_admin_enforces_a_high_advisory_below_the_enforced_severity(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    site.configure("auto-update")
    site.start()
    site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")
    site.ok("policy", "set", "frozen")
    site.publish(2, {"1.0.0": Release(), "1.0.1": Release()}, {"1.0.0": "1.0.0"}, advisory="<1.0.1", severity="high")
    site.ok("check")
    assert site.status()["revision"] == 1  # high is below the enforced severity: the policy (frozen) holds it

    response = httpx_post(site, "/security/enforce", {"advisory_id": "ID1-SA-2026-0001"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    status = site.status()
    assert status["revision"] == 2 and status["capabilities"][0]["version"] == "1.0.1"
    assert status["capabilities"][0]["source"] == "security:ID1-SA-2026-0001"
    assert site.audit("enforce")[0]["actor"] == "root"
    again = httpx_post(site, "/security/enforce", {"advisory_id": "ID1-SA-2026-0001"})
    assert again.status_code == 409 and "not affected" in again.json()["message"]


def httpx_post(site: Site, path: str, body: dict):
    import httpx

    with httpx.Client(transport=httpx.HTTPTransport(uds=str(site.socket)), base_url="http://id1", timeout=120) as client:
        return client.post(path, json=body)
