"""Our keys and signatures against the stock ``minisign`` binary, both ways, for real.

DESIGN.md §4 promises a vendor can sign with ``minisign -S`` and check ``id1 feed sign``'s
output with ``minisign -V``. Password-protected keys here use minisign's own scrypt limits
(1 GiB, a few seconds per derivation), because that is what a vendor's key file holds.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.errors import SignatureError
from agent.feed.signature import PublicKey, SecretKey, sign, verify

MINISIGN = shutil.which("minisign")
REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60
PASSWORD = "vendor pass phrase"
FEED = b'{"format": 1, "serial": 42, "platforms": []}\n'

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(  # never skipped in CI, where `make test` installs it: a missing binary fails there
        MINISIGN is None and not os.environ.get("CI"),
        reason="the stock minisign tool is not installed (apt-get install minisign); "
        "these tests run it for real",
    ),
]


@pytest.fixture(autouse=True)
def no_password_in_environment(monkeypatch):
    monkeypatch.delenv("ID1_KEY_PASSWORD", raising=False)


def minisign(
    *args: str | Path, password: str | None = None, repeat: int = 1
) -> subprocess.CompletedProcess:
    """Run minisign; off a terminal it reads each password it asks for as a line of stdin."""
    stdin = (password + "\n") * repeat if password is not None else ""
    return subprocess.run(
        [MINISIGN, *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def succeed(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    output = result.stderr + result.stdout
    assert result.returncode == 0, f"minisign failed ({result.returncode}): {output}"
    return result


def signature_of(path: Path) -> str:
    return path.with_name(path.name + ".minisig").read_text()


@pytest.fixture
def feed_file(tmp_path: Path) -> Path:
    path = tmp_path / "feed.json"
    path.write_bytes(FEED)
    return path


@pytest.fixture
def minisign_keys(tmp_path: Path) -> tuple[Path, Path]:
    """A key pair made by `minisign -G -W` (no password)."""
    pub, sec = tmp_path / "minisign.pub", tmp_path / "minisign.key"
    succeed(minisign("-G", "-W", "-p", pub, "-s", sec))
    return pub, sec


# ── minisign signs, we verify ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("flags", "prehashed"), [([], True), (["-l"], False)], ids=["ED", "legacy-Ed"]
)
def test_we_verify_what_minisign_signs(minisign_keys, feed_file, flags, prehashed):
    pub, sec = minisign_keys
    succeed(minisign("-S", *flags, "-s", sec, "-m", feed_file, "-t", "serial:42\tissued by vendor"))

    signature = signature_of(feed_file)
    trusted = [PublicKey.from_file_text(pub.read_text())]

    result = verify(FEED, signature, trusted, subject="feed.json")

    assert result.trusted_comment == "serial:42\tissued by vendor"
    assert result.prehashed is prehashed


def test_we_verify_minisign_default_trusted_comment(minisign_keys, feed_file):
    pub, sec = minisign_keys
    succeed(minisign("-S", "-s", sec, "-m", feed_file))

    result = verify(FEED, signature_of(feed_file), [PublicKey.from_file_text(pub.read_text())])

    assert result.trusted_comment.startswith("timestamp:")
    assert result.trusted_comment.endswith("\tfile:feed.json\thashed")


def test_the_public_key_line_minisign_prints_is_the_one_we_read(minisign_keys):
    pub, _ = minisign_keys
    key = PublicKey.from_file_text(pub.read_text())

    assert pub.read_text() == key.to_file_text()


def test_we_load_a_minisign_w_secret_key(minisign_keys, feed_file):
    pub, sec = minisign_keys
    key = SecretKey.from_file_text(sec.read_text(), None)

    assert key.public_key() == PublicKey.from_file_text(pub.read_text())


def test_a_password_protected_minisign_key_loads_and_its_signatures_verify(tmp_path, feed_file):
    pub, sec = tmp_path / "vendor.pub", tmp_path / "vendor.key"
    succeed(minisign("-G", "-p", pub, "-s", sec, password=PASSWORD, repeat=2))  # asks twice
    public = PublicKey.from_file_text(pub.read_text())

    key = SecretKey.from_file_text(sec.read_text(), PASSWORD)

    assert key.public_key() == public
    succeed(minisign("-S", "-s", sec, "-m", feed_file, "-t", "by minisign", password=PASSWORD))
    assert verify(FEED, signature_of(feed_file), [public]).trusted_comment == "by minisign"
    (tmp_path / "ours.minisig").write_text(sign(FEED, key, trusted_comment="by id1"))
    checked = succeed(minisign("-V", "-p", pub, "-m", feed_file, "-x", tmp_path / "ours.minisig"))
    assert "Trusted comment: by id1" in checked.stdout


# ── we sign, minisign verifies ───────────────────────────────────────────────────────────────


def test_id1_keygen_and_sign_verify_with_minisign(tmp_path, feed_file, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["feed", "keygen", "--out", str(tmp_path / "vendor"), "--no-password"]) == 0
    printed = capsys.readouterr().out.strip()
    assert main(["feed", "sign", "--key", str(tmp_path / "vendor.key"),
                 "--trusted-comment", "serial:42", str(feed_file)]) == 0

    by_file = succeed(minisign("-V", "-p", tmp_path / "vendor.pub", "-m", feed_file))
    by_line = succeed(minisign("-V", "-P", printed, "-m", feed_file, "-Q"))

    assert "Trusted comment: serial:42" in by_file.stdout
    assert by_line.stdout == "serial:42\n"
    # -H: minisign accepts only a prehashed signature
    succeed(minisign("-V", "-H", "-p", tmp_path / "vendor.pub", "-m", feed_file))


def test_id1_sign_legacy_verifies_with_minisign_which_sees_it_is_legacy(
    tmp_path, feed_file, monkeypatch
):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["feed", "keygen", "--out", str(tmp_path / "vendor"), "--no-password"]) == 0
    key_file = str(tmp_path / "vendor.key")
    assert main(["feed", "sign", "--key", key_file, "--legacy", str(feed_file)]) == 0

    checked = succeed(minisign("-V", "-p", tmp_path / "vendor.pub", "-m", feed_file))
    assert "\tfile:feed.json\n" in checked.stdout
    refused = minisign("-V", "-H", "-p", tmp_path / "vendor.pub", "-m", feed_file)
    assert refused.returncode != 0 and "Legacy" in refused.stderr


def test_id1_keygen_as_a_separate_process_makes_keys_minisign_signs_with(tmp_path, feed_file):
    env = {k: v for k, v in os.environ.items() if k != "ID1_KEY_PASSWORD"}
    command = [sys.executable, "-m", "agent.cli.main", "feed", "keygen", "--no-password"]
    result = subprocess.run(
        [*command, "--out", str(tmp_path / "vendor")],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    public = PublicKey.from_file_text((tmp_path / "vendor.pub").read_text())
    assert result.stdout == public.to_base64() + "\n"

    succeed(minisign("-S", "-s", tmp_path / "vendor.key", "-m", feed_file, "-t", "by minisign"))

    assert verify(FEED, signature_of(feed_file), [public]).trusted_comment == "by minisign"
    succeed(minisign("-V", "-p", tmp_path / "vendor.pub", "-m", feed_file))


def test_a_password_protected_id1_key_works_in_minisign_and_id1(tmp_path, feed_file, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    password_file = str(tmp_path / "pw")
    prefix = str(tmp_path / "vendor")
    assert main(["feed", "keygen", "--out", prefix, "--password-file", password_file]) == 0
    pub, sec = tmp_path / "vendor.pub", tmp_path / "vendor.key"
    theirs = tmp_path / "minisign.minisig"

    signing = ["-S", "-s", sec, "-m", feed_file, "-x", theirs, "-t", "by minisign"]
    succeed(minisign(*signing, password=PASSWORD))
    checked = succeed(minisign("-V", "-p", pub, "-m", feed_file, "-x", theirs))
    assert "Trusted comment: by minisign" in checked.stdout

    args = ["--key", str(sec), "--password-file", password_file, "--trusted-comment", "by id1"]
    assert main(["feed", "sign", *args, str(feed_file)]) == 0
    assert "Trusted comment: by id1" in succeed(minisign("-V", "-p", pub, "-m", feed_file)).stdout

    wrong = minisign("-S", "-s", sec, "-m", feed_file, "-x", tmp_path / "no.minisig", password="no")
    assert wrong.returncode != 0 and "Wrong password" in wrong.stderr


def test_minisign_recreates_exactly_our_public_key_file(tmp_path):
    # A key id whose printed form starts with a zero nibble shows how minisign pads (it doesn't).
    key = SecretKey(bytes.fromhex("080706050403020a"), bytes(range(32)))
    assert key.public_key().key_id_hex == "A02030405060708"
    (tmp_path / "ours.key").write_text(key.to_file_text(None))

    succeed(minisign("-R", "-s", tmp_path / "ours.key", "-p", tmp_path / "theirs.pub"))

    assert (tmp_path / "theirs.pub").read_text() == key.public_key().to_file_text()


def test_our_encrypted_key_with_other_scrypt_limits_still_works_in_minisign(tmp_path, feed_file):
    # minisign stores the limits in the key file (it lowers them on small machines); any the
    # file states must work, not only the defaults.
    key = SecretKey.generate()
    interactive = {"opslimit": 524_288, "memlimit": 16_777_216}
    (tmp_path / "ours.key").write_text(key.to_file_text(PASSWORD, **interactive))
    (tmp_path / "ours.pub").write_text(key.public_key().to_file_text())

    succeed(minisign("-S", "-s", tmp_path / "ours.key", "-m", feed_file, password=PASSWORD))

    succeed(minisign("-V", "-p", tmp_path / "ours.pub", "-m", feed_file))


# ── tampering is refused by both ─────────────────────────────────────────────────────────────


def test_a_tampered_file_is_refused_by_minisign_and_by_us(minisign_keys, feed_file):
    pub, sec = minisign_keys
    succeed(minisign("-S", "-s", sec, "-m", feed_file))
    feed_file.write_bytes(FEED.replace(b"42", b"43"))

    refused = minisign("-V", "-p", pub, "-m", feed_file)

    assert refused.returncode != 0 and "Signature verification failed" in refused.stderr
    with pytest.raises(SignatureError, match="signature does not match feed.json"):
        verify(feed_file.read_bytes(), signature_of(feed_file),
               [PublicKey.from_file_text(pub.read_text())], subject="feed.json")


def test_an_altered_trusted_comment_is_refused_by_minisign_and_by_us(tmp_path, feed_file):
    key = SecretKey.generate()
    (tmp_path / "ours.pub").write_text(key.public_key().to_file_text())
    text = sign(FEED, key, trusted_comment="serial:42").replace("serial:42", "serial:99")
    feed_file.with_name("feed.json.minisig").write_text(text)

    refused = minisign("-V", "-p", tmp_path / "ours.pub", "-m", feed_file)

    assert refused.returncode != 0 and "Comment signature verification failed" in refused.stderr
    with pytest.raises(SignatureError, match="trusted comment was altered"):
        verify(FEED, text, [key.public_key()])


def test_a_signature_by_another_key_is_refused_by_minisign_and_by_us(minisign_keys, feed_file):
    pub, _ = minisign_keys
    stranger = SecretKey.generate()
    text = sign(FEED, stranger, trusted_comment="serial:42")
    feed_file.with_name("feed.json.minisig").write_text(text)

    refused = minisign("-V", "-p", pub, "-m", feed_file)

    assert refused.returncode != 0
    assert stranger.public_key().key_id_hex in refused.stderr  # both tools print the same key id
    stranger_id = stranger.public_key().key_id_hex
    with pytest.raises(SignatureError, match=f"signed by key {stranger_id}, which is not"):
        verify(FEED, text, [PublicKey.from_file_text(pub.read_text())])
