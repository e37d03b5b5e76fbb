"""minisign signatures and key files: what the agent accepts, what it refuses, and why.

The stock tool's side of the format is checked in test_minisign_interop.py; these tests pin
our own behaviour and run in milliseconds (encrypted keys use libsodium's "interactive" scrypt
limits here instead of minisign's 1 GiB ones: same format, cheaper derivation).
"""

from __future__ import annotations

import base64
import io
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.cli.main import main
from agent.errors import KeyFileError, SignatureError
from agent.feed.signature import (
    PublicKey,
    SecretKey,
    VerifiedSignature,
    scrypt_parameters,
    secret_key_needs_password,
    sign,
    verify,
)

KEY = SecretKey.generate()
OTHER_KEY = SecretKey.generate()
FEED = b'{"format": 1, "serial": 42}\n'
COMMENT = "timestamp:1795000000\tfile:feed.json\thashed"
FAST_SCRYPT = {"opslimit": 524_288, "memlimit": 16_777_216}  # libsodium's *_INTERACTIVE limits


@pytest.fixture(autouse=True)
def no_password_in_environment(monkeypatch):
    monkeypatch.delenv("ID1_KEY_PASSWORD", raising=False)


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def flip_bit_in_base64_line(text: str, line: int, byte: int) -> str:
    """The signature text with one bit changed inside the binary of one base64 line."""
    lines = lines_of(text)
    blob = bytearray(base64.b64decode(lines[line]))
    blob[byte] ^= 0x01
    lines[line] = base64.b64encode(bytes(blob)).decode()
    return "\n".join(lines) + "\n"


# ── signing and verifying ────────────────────────────────────────────────────────────────────


def test_a_prehashed_signature_verifies_and_returns_its_trusted_comment():
    text = sign(FEED, KEY, trusted_comment=COMMENT)

    result = verify(FEED, text, [KEY.public_key()])

    assert result == VerifiedSignature(KEY.public_key().key_id_hex, COMMENT, prehashed=True)
    assert base64.b64decode(lines_of(text)[1])[:2] == b"ED"


def test_a_legacy_signature_verifies():
    text = sign(FEED, KEY, trusted_comment="release 42", prehashed=False)

    result = verify(FEED, text, [KEY.public_key()])

    assert result.prehashed is False
    assert result.trusted_comment == "release 42"
    assert base64.b64decode(lines_of(text)[1])[:2] == b"Ed"


def test_signature_text_is_the_four_minisign_lines():
    text = sign(FEED, KEY, trusted_comment=COMMENT, untrusted_comment="vendor key 2026")

    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 5
    assert lines[0] == "untrusted comment: vendor key 2026"
    assert lines[1].startswith("RU")  # "ED" base64-encoded
    assert lines[2] == f"trusted comment: {COMMENT}"
    assert len(base64.b64decode(lines[3])) == 64


def test_any_trusted_key_in_the_list_is_accepted_so_vendors_can_rotate_keys():
    text = sign(FEED, KEY, trusted_comment=COMMENT)

    result = verify(FEED, text, [OTHER_KEY.public_key(), KEY.public_key()])

    assert result.key_id_hex == KEY.public_key().key_id_hex


def test_a_non_ascii_trusted_comment_survives_the_round_trip():
    text = sign(FEED, KEY, trusted_comment="release «été» 42")

    assert verify(FEED, text, [KEY.public_key()]).trusted_comment == "release «été» 42"


def test_the_untrusted_comment_is_not_signed_so_editing_it_is_harmless():
    text = sign(FEED, KEY, trusted_comment=COMMENT)
    edited = text.replace("signature from id1 secret key", "anything at all", 1)

    assert verify(FEED, edited, [KEY.public_key()]).trusted_comment == COMMENT


def test_windows_line_endings_are_accepted():
    text = sign(FEED, KEY, trusted_comment=COMMENT).replace("\n", "\r\n")

    assert verify(FEED, text, [KEY.public_key()]).trusted_comment == COMMENT


def test_the_signature_file_may_come_as_bytes():
    text = sign(FEED, KEY, trusted_comment=COMMENT)

    assert verify(FEED, text.encode(), [KEY.public_key()]).trusted_comment == COMMENT


@given(
    data=st.binary(min_size=1, max_size=512),
    position=st.integers(min_value=0),
    change=st.integers(min_value=1, max_value=255),
)
def test_any_single_byte_change_of_the_data_is_refused(data, position, change):
    text = sign(data, KEY, trusted_comment=COMMENT)
    tampered = bytearray(data)
    tampered[position % len(data)] ^= change

    with pytest.raises(SignatureError, match="does not match"):
        verify(bytes(tampered), text, [KEY.public_key()])


@pytest.mark.parametrize("prehashed", [True, False], ids=["ED", "Ed"])
def test_appended_data_is_refused(prehashed):
    text = sign(FEED, KEY, trusted_comment=COMMENT, prehashed=prehashed)

    with pytest.raises(SignatureError, match="signature does not match feed.json"):
        verify(FEED + b" ", text, [KEY.public_key()], subject="feed.json")


@pytest.mark.parametrize("byte", [10, 40, 73], ids=["first", "middle", "last"])
def test_a_flipped_bit_in_the_signature_is_refused(byte):
    text = flip_bit_in_base64_line(sign(FEED, KEY, trusted_comment=COMMENT), line=1, byte=byte)

    with pytest.raises(SignatureError, match="does not match"):
        verify(FEED, text, [KEY.public_key()])


@pytest.mark.parametrize("byte", [0, 31, 63])
def test_a_flipped_bit_in_the_global_signature_is_refused(byte):
    text = flip_bit_in_base64_line(sign(FEED, KEY, trusted_comment=COMMENT), line=3, byte=byte)

    with pytest.raises(SignatureError, match="trusted comment was altered"):
        verify(FEED, text, [KEY.public_key()])


@pytest.mark.parametrize(
    "altered",
    [COMMENT.replace("1795000000", "1895000000"), COMMENT + " ", COMMENT[:-1], ""],
    ids=["changed", "appended", "truncated", "emptied"],
)
def test_an_altered_trusted_comment_is_refused(altered):
    text = sign(FEED, KEY, trusted_comment=COMMENT).replace(COMMENT, altered)

    with pytest.raises(SignatureError, match="trusted comment was altered"):
        verify(FEED, text, [KEY.public_key()])


def test_switching_the_algorithm_tag_is_refused():
    text = sign(FEED, KEY, trusted_comment=COMMENT)
    lines = lines_of(text)
    blob = base64.b64decode(lines[1])
    lines[1] = base64.b64encode(b"Ed" + blob[2:]).decode()

    with pytest.raises(SignatureError, match="does not match"):
        verify(FEED, "\n".join(lines) + "\n", [KEY.public_key()])


def test_a_signature_by_an_untrusted_key_names_both_keys():
    text = sign(FEED, OTHER_KEY, trusted_comment=COMMENT)
    signer, trusted = OTHER_KEY.public_key().key_id_hex, KEY.public_key().key_id_hex

    with pytest.raises(SignatureError) as caught:
        verify(FEED, text, [KEY.public_key()])

    assert str(caught.value) == (
        f"signed by key {signer}, which is not a trusted key (trusted: {trusted})"
    )


def test_no_trusted_keys_at_all_is_said_plainly():
    text = sign(FEED, KEY, trusted_comment=COMMENT)

    with pytest.raises(SignatureError, match=r"\(trusted: none\)"):
        verify(FEED, text, [])


def test_a_key_with_the_same_id_but_another_ed25519_key_is_refused():
    impostor = SecretKey(KEY.key_id, OTHER_KEY.seed)
    text = sign(FEED, impostor, trusted_comment=COMMENT)

    with pytest.raises(SignatureError, match="does not match"):
        verify(FEED, text, [KEY.public_key()])


GOOD = sign(FEED, KEY, trusted_comment=COMMENT)
GOOD_LINES = lines_of(GOOD)
UNTRUSTED, SIG, TRUSTED, GLOBAL = GOOD_LINES
UNKNOWN_ALG = base64.b64encode(b"Xy" + base64.b64decode(SIG)[2:]).decode()


def joined(*lines: str) -> str:
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected 4 lines"),
        ("\n\n\n", "expected 4 lines"),
        ("garbage", "expected 4 lines"),
        (joined(UNTRUSTED, SIG, TRUSTED), "expected 4 lines"),
        (joined("comment", SIG, TRUSTED, GLOBAL), "first line should start with 'untrusted comm"),
        (joined(UNTRUSTED, "not base64!", TRUSTED, GLOBAL), "second line is not a base64"),
        (joined(UNTRUSTED, SIG[:-8], TRUSTED, GLOBAL), "second line is not a base64"),
        (joined(UNTRUSTED, GLOBAL, TRUSTED, GLOBAL), "second line is not a base64"),
        (joined(UNTRUSTED, SIG, COMMENT, GLOBAL), "third line should start with 'trusted comm"),
        (joined(UNTRUSTED, SIG, TRUSTED, SIG), "fourth line is not a base64"),
        (joined(UNTRUSTED, SIG, TRUSTED, "%%%"), "fourth line is not a base64"),
        (joined(UNTRUSTED, UNKNOWN_ALG, TRUSTED, GLOBAL), "unsupported signature algorithm 'Xy'"),
        (GOOD.replace("trusted comment: ", "trusted comment: \udcff\ud800"), "not UTF-8 text"),
    ],
    ids=[
        "empty", "blank-lines", "one-line", "three-lines", "no-untrusted-prefix", "bad-base64",
        "short-signature", "global-signature-as-signature", "no-trusted-prefix",
        "signature-as-global", "bad-global-base64", "unknown-algorithm", "lone-surrogate",
    ],
)
def test_a_malformed_signature_file_is_one_clear_signature_error(text, message):
    with pytest.raises(SignatureError) as caught:
        verify(FEED, text, [KEY.public_key()])

    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_sign_refuses_comments_minisign_could_not_read_back():
    with pytest.raises(ValueError, match="one line"):
        sign(FEED, KEY, trusted_comment="two\nlines")
    with pytest.raises(ValueError, match="one line"):
        sign(FEED, KEY, trusted_comment=COMMENT, untrusted_comment="carriage\rreturn")
    with pytest.raises(ValueError, match="at most 8173"):
        sign(FEED, KEY, trusted_comment="x" * 8174)
    assert verify(FEED, sign(FEED, KEY, trusted_comment="x" * 8173), [KEY.public_key()])


def test_two_megabytes_verify_in_a_few_milliseconds():
    data = bytes(range(256)) * 8192
    text = sign(data, KEY, trusted_comment=COMMENT)

    best = min(_timed(lambda: verify(data, text, [KEY.public_key()])) for _ in range(5))

    assert best < 0.05, f"verifying 2 MiB took {best * 1000:.1f} ms"


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


# ── public keys ──────────────────────────────────────────────────────────────────────────────

# Made by `minisign -G -W`, which printed "minisign public key 7DB2279E66247302".
MINISIGN_PUB = "RWQCcyRmnieyfQp7jIULyBucXbPQh9J2ym+0vA75ntHZkY1HP5iAKFJ9"


def test_a_public_key_reads_from_its_base64_line():
    key = PublicKey.from_base64(MINISIGN_PUB)

    assert key.key_id == bytes.fromhex("027324669e27b27d")
    assert key.key_id_hex == "7DB2279E66247302"
    assert key.to_base64() == MINISIGN_PUB


def test_the_key_id_prints_like_minisign_0_11_without_zero_padding():
    key = PublicKey(bytes.fromhex("010000000000000a"), bytes(32))

    assert key.key_id_hex == "A00000000000001"


def test_a_public_key_file_round_trips():
    key = KEY.public_key()
    text = key.to_file_text()

    assert text == f"untrusted comment: minisign public key {key.key_id_hex}\n{key.to_base64()}\n"
    assert PublicKey.from_file_text(text) == key
    assert PublicKey.from_file_text(key.to_base64() + "\n") == key
    assert PublicKey.from_file_text("\r\n" + text.replace("\n", "\r\n")) == key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a minisign public key file"),
        ("RWQ-not-a-key", "not a minisign public key"),
        (MINISIGN_PUB[:-4], "not a minisign public key"),
        (base64.b64encode(b"XX" + bytes(40)).decode(), "unsupported public key algorithm 'XX'"),
        (KEY.to_file_text(None), "this is a minisign secret key"),
        (MINISIGN_PUB + "\n" + MINISIGN_PUB, "not a minisign public key file"),
    ],
    ids=["empty", "garbage", "truncated", "wrong-algorithm", "secret-key", "two-keys"],
)
def test_a_malformed_public_key_is_a_key_file_error(text, message):
    with pytest.raises(KeyFileError, match=message):
        PublicKey.from_file_text(text)


# ── secret key files ─────────────────────────────────────────────────────────────────────────


def test_an_unencrypted_key_file_round_trips_and_signs():
    text = KEY.to_file_text(None)

    loaded = SecretKey.from_file_text(text, None)

    assert loaded == KEY
    assert secret_key_needs_password(text) is False
    assert verify(FEED, sign(FEED, loaded, trusted_comment=COMMENT), [KEY.public_key()])


def test_an_unencrypted_key_file_has_minisign_w_layout_with_a_real_checksum():
    blob = base64.b64decode(lines_of(KEY.to_file_text(None))[1])

    assert len(blob) == 158
    assert blob[:6] == b"Ed\0\0B2"
    assert blob[6:54] == bytes(48)  # no salt, no scrypt limits
    assert blob[54:62] == KEY.key_id
    assert blob[126:] != bytes(32)


def test_a_password_given_for_an_unencrypted_key_is_ignored_like_minisign():
    assert SecretKey.from_file_text(KEY.to_file_text(None), "unused") == KEY


def test_an_encrypted_key_file_round_trips_with_its_password():
    text = KEY.to_file_text("correct horse", **FAST_SCRYPT)

    assert secret_key_needs_password(text) is True
    assert SecretKey.from_file_text(text, "correct horse") == KEY
    blob = base64.b64decode(lines_of(text)[1])
    assert blob[:6] == b"EdScB2"
    assert int.from_bytes(blob[38:46], "little") == FAST_SCRYPT["opslimit"]
    assert int.from_bytes(blob[46:54], "little") == FAST_SCRYPT["memlimit"]
    assert KEY.seed not in blob and KEY.key_id not in blob


def test_a_wrong_password_is_refused():
    text = KEY.to_file_text("correct horse", **FAST_SCRYPT)

    with pytest.raises(KeyFileError, match="wrong password for secret key"):
        SecretKey.from_file_text(text, "battery staple")


def test_an_encrypted_key_without_a_password_says_one_is_needed():
    text = KEY.to_file_text("correct horse", **FAST_SCRYPT)

    with pytest.raises(KeyFileError, match="encrypted: a password is needed"):
        SecretKey.from_file_text(text, None)


def _corrupt(text: str, byte: int) -> str:
    comment, body = lines_of(text)
    blob = bytearray(base64.b64decode(body))
    blob[byte] ^= 0x40
    return f"{comment}\n{base64.b64encode(bytes(blob)).decode()}\n"


@pytest.mark.parametrize(
    "byte", [54, 70, 100, 130], ids=["key-id", "seed", "public-half", "checksum"]
)
def test_a_corrupted_unencrypted_key_is_refused_by_its_checksum(byte):
    with pytest.raises(KeyFileError, match="checksum does not match: the key file is damaged"):
        SecretKey.from_file_text(_corrupt(KEY.to_file_text(None), byte), None)


def test_a_corrupted_encrypted_key_reads_as_a_wrong_password_or_damage():
    text = _corrupt(KEY.to_file_text("pw", **FAST_SCRYPT), 140)

    with pytest.raises(KeyFileError, match=r"wrong password for secret key \(or the key file"):
        SecretKey.from_file_text(text, "pw")


def _minisign_w_file(key: SecretKey) -> str:
    """What `minisign -G -W` writes: like ours, but with the checksum left all zeros."""
    comment, body = lines_of(key.to_file_text(None))
    blob = base64.b64decode(body)[:126] + bytes(32)
    return f"untrusted comment: minisign encrypted secret key\n{base64.b64encode(blob).decode()}\n"


def test_a_minisign_w_key_with_a_zero_checksum_loads():
    assert SecretKey.from_file_text(_minisign_w_file(KEY), None) == KEY


def test_a_damaged_minisign_w_key_is_caught_by_its_public_half():
    with pytest.raises(KeyFileError, match="public half does not match its seed"):
        SecretKey.from_file_text(_corrupt(_minisign_w_file(KEY), 70), None)


def _with_header(header: bytes) -> str:
    blob = header + base64.b64decode(lines_of(KEY.to_file_text(None))[1])[6:]
    return f"untrusted comment: x\n{base64.b64encode(blob).decode()}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a minisign secret key file"),
        ("untrusted comment: x\nRWQ=garbage\n", "not a minisign secret key file"),
        (KEY.public_key().to_file_text(), "this is a minisign public key, not a secret key"),
        (_with_header(b"XXScB2"), "unsupported secret key algorithm 'XX'"),
        (_with_header(b"EdArB2"), "unsupported key derivation 'Ar'"),
        (_with_header(b"Ed\0\0S2"), "unsupported checksum 'S2'"),
    ],
    ids=["empty", "garbage", "public-key", "algorithm", "kdf", "checksum-algorithm"],
)
def test_a_malformed_secret_key_file_is_a_key_file_error(text, message):
    with pytest.raises(KeyFileError, match=message):
        SecretKey.from_file_text(text, "pw")


def test_a_key_file_asking_for_absurd_scrypt_work_is_refused_before_deriving():
    blob = bytearray(base64.b64decode(lines_of(KEY.to_file_text("pw", **FAST_SCRYPT))[1]))
    blob[38:46] = (2**40).to_bytes(8, "little")
    text = f"untrusted comment: x\n{base64.b64encode(bytes(blob)).decode()}\n"

    with pytest.raises(KeyFileError, match="far beyond what minisign writes"):
        SecretKey.from_file_text(text, "pw")


@pytest.mark.parametrize(
    ("opslimit", "memlimit", "expected"),
    [
        (33_554_432, 1_073_741_824, (20, 8, 1)),  # minisign's default: N=2^20, 1 GiB
        (524_288, 16_777_216, (14, 8, 1)),  # libsodium's interactive limits
        (1_000_000, 1_073_741_824, (14, 8, 1)),  # CPU-bound: p=1, N from opslimit
        (0, 0, (1, 8, 512)),  # opslimit raised to its minimum of 32768
    ],
)
def test_scrypt_parameters_follow_libsodium_pickparams(opslimit, memlimit, expected):
    assert scrypt_parameters(opslimit, memlimit) == expected


def test_the_secret_seed_never_shows_in_repr():
    assert KEY.seed.hex() not in repr(KEY) and str(KEY.seed) not in repr(KEY)


# ── id1 feed keygen / sign: what a vendor sees ───────────────────────────────────────────────


@pytest.fixture
def no_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal(monkeypatch):
    monkeypatch.setattr("sys.stdin", _Terminal(""))


def test_keygen_writes_a_private_key_file_and_prints_the_public_key(tmp_path, capsys, no_terminal):
    assert main(["feed", "keygen", "--out", str(tmp_path / "vendor"), "--no-password"]) == 0

    printed = capsys.readouterr().out.strip()
    public = PublicKey.from_file_text((tmp_path / "vendor.pub").read_text())
    assert printed == public.to_base64()
    assert (tmp_path / "vendor.key").stat().st_mode & 0o777 == 0o600
    secret = SecretKey.from_file_text((tmp_path / "vendor.key").read_text(), None)
    assert secret.public_key() == public


def test_keygen_refuses_to_overwrite_a_key_unless_forced(tmp_path, capsys, no_terminal):
    prefix = str(tmp_path / "vendor")
    assert main(["feed", "keygen", "--out", prefix, "--no-password"]) == 0
    first = (tmp_path / "vendor.key").read_text()

    assert main(["feed", "keygen", "--out", prefix, "--no-password"]) == 2
    assert "already exist; pass --force" in capsys.readouterr().err
    assert (tmp_path / "vendor.key").read_text() == first

    assert main(["feed", "keygen", "--out", prefix, "--no-password", "--force"]) == 0
    assert (tmp_path / "vendor.key").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vendor.key", "vendor.pub"]


def test_keygen_without_password_or_terminal_names_the_three_ways(tmp_path, capsys, no_terminal):
    assert main(["feed", "keygen", "--out", str(tmp_path / "vendor")]) == 2

    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "--password-file" in error and "ID1_KEY_PASSWORD" in error and "--no-password" in error
    assert list(tmp_path.iterdir()) == []


def test_keygen_asks_twice_on_a_terminal_and_refuses_different_answers(
    tmp_path, capsys, terminal, monkeypatch
):
    answers = iter(["first", "second"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))

    assert main(["feed", "keygen", "--out", str(tmp_path / "vendor")]) == 2
    assert "passwords differ" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_keygen_refuses_an_empty_password_file(tmp_path, capsys, no_terminal):
    (tmp_path / "pw").write_text("\nsecond line\n")

    prefix, password_file = str(tmp_path / "vendor"), str(tmp_path / "pw")
    assert main(["feed", "keygen", "--out", prefix, "--password-file", password_file]) == 2
    assert "password is empty" in capsys.readouterr().err


def test_keygen_into_a_missing_folder_is_one_line(tmp_path, capsys, no_terminal):
    prefix = str(tmp_path / "nope" / "vendor")
    assert main(["feed", "keygen", "--out", prefix, "--no-password"]) == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.fixture
def feed_file(tmp_path):
    path = tmp_path / "feed.json"
    path.write_bytes(FEED)
    return path


def test_sign_writes_a_minisig_with_minisign_default_comment(tmp_path, feed_file, no_terminal):
    (tmp_path / "vendor.key").write_text(KEY.to_file_text(None))

    assert main(["feed", "sign", "--key", str(tmp_path / "vendor.key"), str(feed_file)]) == 0

    result = verify(FEED, (tmp_path / "feed.json.minisig").read_text(), [KEY.public_key()])
    assert result.prehashed
    assert re.fullmatch(r"timestamp:\d+\tfile:feed\.json\thashed", result.trusted_comment)
    assert abs(int(result.trusted_comment.split("\t")[0].split(":")[1]) - time.time()) < 60
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["feed.json", "feed.json.minisig", "vendor.key"]  # no temporary file left


def test_sign_legacy_with_a_given_trusted_comment(tmp_path, feed_file, no_terminal):
    (tmp_path / "vendor.key").write_text(KEY.to_file_text(None))

    key_file = str(tmp_path / "vendor.key")
    args = ["--key", key_file, "--legacy", "--trusted-comment", "serial 42", str(feed_file)]
    assert main(["feed", "sign", *args]) == 0

    result = verify(FEED, (tmp_path / "feed.json.minisig").read_text(), [KEY.public_key()])
    assert (result.prehashed, result.trusted_comment) == (False, "serial 42")


def test_sign_legacy_default_comment_has_no_hashed_marker(tmp_path, feed_file, no_terminal):
    (tmp_path / "vendor.key").write_text(KEY.to_file_text(None))

    key_file = str(tmp_path / "vendor.key")
    assert main(["feed", "sign", "--key", key_file, "--legacy", str(feed_file)]) == 0

    result = verify(FEED, (tmp_path / "feed.json.minisig").read_text(), [KEY.public_key()])
    assert re.fullmatch(r"timestamp:\d+\tfile:feed\.json", result.trusted_comment)


@pytest.fixture
def encrypted_key(tmp_path):
    path = tmp_path / "vendor.key"
    path.write_text(KEY.to_file_text("s3cret", **FAST_SCRYPT))
    return path


def test_sign_reads_the_password_from_a_file(tmp_path, encrypted_key, feed_file, no_terminal):
    (tmp_path / "pw").write_text("s3cret\n")

    password_file = str(tmp_path / "pw")
    args = ["feed", "sign", "--key", str(encrypted_key), "--password-file", password_file]
    assert main([*args, str(feed_file)]) == 0
    assert verify(FEED, (tmp_path / "feed.json.minisig").read_text(), [KEY.public_key()])


def test_sign_reads_the_password_from_the_environment(
    tmp_path, encrypted_key, feed_file, no_terminal, monkeypatch
):
    monkeypatch.setenv("ID1_KEY_PASSWORD", "s3cret")

    assert main(["feed", "sign", "--key", str(encrypted_key), str(feed_file)]) == 0
    assert verify(FEED, (tmp_path / "feed.json.minisig").read_text(), [KEY.public_key()])


def test_sign_asks_for_the_password_on_a_terminal(
    tmp_path, encrypted_key, feed_file, terminal, monkeypatch
):
    prompts = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": prompts.append(prompt) or "s3cret")

    assert main(["feed", "sign", "--key", str(encrypted_key), str(feed_file)]) == 0
    assert prompts == [f"Password for {encrypted_key}: "]


def test_sign_with_an_encrypted_key_and_no_way_to_get_a_password(
    encrypted_key, feed_file, capsys, no_terminal
):
    assert main(["feed", "sign", "--key", str(encrypted_key), str(feed_file)]) == 2

    error = capsys.readouterr().err
    assert "is encrypted" in error and "--password-file" in error and "ID1_KEY_PASSWORD" in error
    assert not feed_file.with_name("feed.json.minisig").exists()


def test_sign_with_a_wrong_password_names_the_key_file(
    encrypted_key, feed_file, capsys, no_terminal, monkeypatch
):
    monkeypatch.setenv("ID1_KEY_PASSWORD", "guess")

    assert main(["feed", "sign", "--key", str(encrypted_key), str(feed_file)]) == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    expected = "wrong password for secret key (or the key file is damaged)"
    assert last_line == f"id1: {encrypted_key}: {expected}"


def test_sign_with_a_missing_key_file_is_one_line(tmp_path, feed_file, capsys, no_terminal):
    assert main(["feed", "sign", "--key", str(tmp_path / "missing.key"), str(feed_file)]) == 2
    missing = tmp_path / "missing.key"
    error = capsys.readouterr().err
    assert error == f"id1: cannot read secret key file {missing}: No such file or directory\n"


def test_sign_refuses_a_multi_line_trusted_comment(tmp_path, feed_file, capsys, no_terminal):
    (tmp_path / "vendor.key").write_text(KEY.to_file_text(None))

    key_file = str(tmp_path / "vendor.key")
    args = ["--key", key_file, "--trusted-comment", "a\nb", str(feed_file)]
    assert main(["feed", "sign", *args]) == 2
    assert "must be one line" in capsys.readouterr().err


def test_sign_replaces_an_old_signature(tmp_path, feed_file, no_terminal):
    (tmp_path / "vendor.key").write_text(KEY.to_file_text(None))
    (tmp_path / "feed.json.minisig").write_text("stale")

    assert main(["feed", "sign", "--key", str(tmp_path / "vendor.key"), str(feed_file)]) == 0
    assert verify(FEED, (tmp_path / "feed.json.minisig").read_text(), [KEY.public_key()])
