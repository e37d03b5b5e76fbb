"""``id1 feed build``: artifacts hashed and sized, serial bumped, times set, validated, signed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.feed.catalog import parse_feed
from agent.feed.signature import PublicKey, verify

SOURCE = """
valid_for = "7d"
[[platforms]]
version = "1.0.0"
released_at = 2026-11-20T12:00:00Z
suites = { core = "1.0.0" }
[[suites]]
name = "core"
version = "1.0.0"
capabilities = { auth = "1.0.0" }
[[capabilities]]
suite = "core"
name = "auth"
version = "1.0.0"
units = ["id1-core-auth.service"]
"""


@pytest.fixture
def vendor(tmp_path, capsys):
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "core-auth-1.0.0.tar.gz").write_bytes(b"\x1f\x8b fake tarball bytes")
    (tmp_path / "releases.toml").write_text(SOURCE)
    assert main(["feed", "keygen", "--out", str(tmp_path / "vendor"), "--no-password"]) == 0
    capsys.readouterr()
    return tmp_path


def build(vendor: Path, *extra: str) -> int:
    return main(["feed", "build", "--source", str(vendor / "releases.toml"), "--artifacts", str(vendor / "artifacts"),
                 "--out", str(vendor / "out"), "--key", str(vendor / "vendor.key"), "--now", "2026-11-27T12:00:00Z", *extra])


def test_build_fills_in_artifacts_times_and_signs(vendor):
    assert build(vendor) == 0
    data = (vendor / "out" / "feed.json").read_bytes()
    feed = json.loads(data)
    artifact = feed["capabilities"][0]["artifact"]
    blob = b"\x1f\x8b fake tarball bytes"
    assert artifact == {"url": "artifacts/core-auth-1.0.0.tar.gz", "sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
    assert (vendor / "out" / "artifacts" / "core-auth-1.0.0.tar.gz").read_bytes() == blob
    assert (feed["serial"], feed["issued_at"], feed["expires_at"]) == (1, "2026-11-27T12:00:00Z", "2026-12-04T12:00:00Z")
    assert "valid_for" not in feed
    parse_feed(data)
    public = PublicKey.from_file_text((vendor / "vendor.pub").read_text())
    signed = verify(data, (vendor / "out" / "feed.json.minisig").read_text(), [public])
    assert "serial:1" in signed.trusted_comment


def test_each_build_raises_the_serial_and_a_lower_one_is_refused(vendor, capsys):
    assert build(vendor) == 0
    assert build(vendor) == 0
    assert json.loads((vendor / "out" / "feed.json").read_bytes())["serial"] == 2
    assert build(vendor, "--serial", "10") == 0
    before = (vendor / "out" / "feed.json").read_bytes()
    capsys.readouterr()
    assert build(vendor, "--serial", "5") == 2
    assert "serial 5 is not higher than the published feed's 10" in capsys.readouterr().err
    assert (vendor / "out" / "feed.json").read_bytes() == before


def test_an_invalid_description_is_refused_by_path_and_nothing_is_written(vendor, capsys):
    (vendor / "releases.toml").write_text(SOURCE.replace('suites = { core = "1.0.0" }', 'suites = { core = "9.9.9" }'))
    assert build(vendor) == 3
    err = capsys.readouterr().err
    assert "platforms[0].suites.core: no suite release core 9.9.9 in the feed" in err
    assert not (vendor / "out" / "feed.json").exists()


def test_a_missing_artifact_is_named(vendor, capsys):
    (vendor / "artifacts" / "core-auth-1.0.0.tar.gz").unlink()
    assert build(vendor) == 3
    assert "capabilities[0].artifact: " in capsys.readouterr().err


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("minisign") is None and not os.environ.get("CI"),
                    reason="Debian's minisign is not installed (make test installs it; never skipped in CI)")
def test_the_built_feed_passes_stock_minisign(vendor):
    assert build(vendor) == 0
    checked = subprocess.run(["minisign", "-V", "-p", str(vendor / "vendor.pub"), "-m", str(vendor / "out" / "feed.json")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "serial:1" in checked.stdout
