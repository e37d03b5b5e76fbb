"""``id1 agent run --once`` end to end: a loopback server serving a signed feed and artifacts
that carry real unit files, run by systemctl3 (DESIGN.md §7 exit statuses)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.deploy.releases import ReleaseLayout
from agent.feed.signature import SecretKey, sign
from tests.builders import FeedBuilder
from tests.feedserver import FeedServer
from tests.test_engine import SYSTEMCTL3, artifact, free_port


class Vendor:
    """Publishes feeds whose capabilities are real tarballs with units."""

    def __init__(self, server: FeedServer):
        self.server = server
        self.key = SecretKey.generate()
        self.port = free_port()

    def publish(self, serial: int, auth_versions: dict[str, bool], platforms: dict[str, str], advisory: str | None = None):
        feed = FeedBuilder(serial=serial)
        for version, broken in auth_versions.items():
            feed.capability("core/auth", version)
            data = artifact("core/auth", self.port, broken=broken)
            name = f"core-auth-{version}.tar.gz"
            self.server.publish(f"artifacts/{name}", data)
            feed.data["capabilities"][-1]["artifact"] = {"url": f"artifacts/{name}", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            feed.data["capabilities"][-1]["health"] = {"http": f"http://127.0.0.1:{self.port}/", "timeout_s": 3 if broken else 20}
        for platform, auth in platforms.items():
            feed.suite("core", platform, {"auth": auth}).platform(platform, {"core": platform})
        if advisory:
            feed.advisory("ID1-SA-2026-0001", "core/auth", advisory)
        data = feed.bytes()
        self.server.publish("feed.json", data)
        self.server.publish("feed.json.minisig", sign(data, self.key, trusted_comment=f"serial {serial}").encode())
        return data


@pytest.fixture
def site(tmp_path):
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    root = tmp_path / "host" / "root"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    with FeedServer(tmp_path / "www") as server:
        vendor = Vendor(server)
        config = tmp_path / "agent.toml"

        def configure(channel: str):
            config.write_text(
                f'instance_id = "host-01"\nstate_dir = "{tmp_path / "state"}"\n'
                f'[feed]\nurl = "{server.url_for("feed.json")}"\ntrusted_keys = ["{vendor.key.public_key().to_base64()}"]\n'
                f'[policy]\nchannel = "{channel}"\n'
                f'[services]\nsystemctl = "{SYSTEMCTL3}"\nsystemctl_args = ["--root={root}"]\nunit_dir = "{root}/etc/systemd/system"\n'
            )
            return config

        yield vendor, configure, tmp_path / "state"
        import subprocess

        subprocess.run([str(SYSTEMCTL3), f"--root={root}", "stop", "id1-core-auth.service"], capture_output=True, timeout=60)


def run_once(capsys, config) -> tuple[int, str]:
    code = main(["agent", "run", "--once", "--config", str(config)])
    return code, capsys.readouterr().err


def test_install_forced_fix_automatic_rollback_and_replay(site, capsys):
    vendor, configure, state = site
    layout = ReleaseLayout(state)

    vendor.publish(1, {"1.0.0": False}, {"1.0.0": "1.0.0"})
    code, err = run_once(capsys, configure("auto-update"))
    assert code == 0, err
    assert "deployed: revision 1: core/auth (none) → 1.0.0" in err
    assert layout.current_version("core/auth") == "1.0.0"

    vendor.publish(2, {"1.0.0": False, "1.0.1": False}, {"1.0.0": "1.0.0"}, advisory="<1.0.1")
    code, err = run_once(capsys, configure("frozen"))
    assert code == 0, err
    assert "forced-patch: core/auth 1.0.0 → 1.0.1 (ID1-SA-2026-0001 is enforced whatever the policy)" in err
    assert "deployed: revision 2: core/auth 1.0.0 → 1.0.1" in err
    assert layout.current_version("core/auth") == "1.0.1"

    vendor.publish(3, {"1.0.0": False, "1.0.1": False, "1.1.0": True}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"}, advisory="<1.0.1")
    code, err = run_once(capsys, configure("auto-update"))
    assert code == 1, err
    assert "automatic-rollback: core/auth 1.0.1 → 1.1.0" in err and "answered 500" in err
    assert layout.current_version("core/auth") == "1.0.1"
    code, err = run_once(capsys, configure("auto-update"))
    assert code == 0 and "deployed" not in err and "rollback" not in err, err  # the failed target is not retried

    vendor.publish(2, {"1.0.0": False, "1.0.1": False}, {"1.0.0": "1.0.0"}, advisory="<1.0.1")
    code, err = run_once(capsys, configure("auto-update"))
    assert code == 3 and "feed-rejected: " in err and "feed serial 2 is lower than serial 3" in err
    assert layout.current_version("core/auth") == "1.0.1"
