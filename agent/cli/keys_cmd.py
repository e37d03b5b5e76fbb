"""``id1 feed keygen`` and ``id1 feed sign``: the vendor's signing key and signatures.

Everything written here is in minisign's format, so the stock tool and these commands mix
freely: ``minisign -S -s PREFIX.key`` signs with a key from ``id1 feed keygen``, and
``minisign -V -p PREFIX.pub`` checks what ``id1 feed sign`` wrote.

A password comes from, in this order: ``--password-file`` (its first line), the environment
variable ``ID1_KEY_PASSWORD``, or a prompt when stdin is a terminal. A script without any of
them gets a one-line error naming the options instead of a hanging prompt.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import Id1Error, KeyFileError, UsageError
from agent.files import write_atomically

if TYPE_CHECKING:  # cryptography is imported by the verbs that sign or verify, not to build the command line
    from agent.feed.signature import SecretKey

PASSWORD_ENV = "ID1_KEY_PASSWORD"
SIGNATURE_SUFFIX = ".minisig"


def register_keygen(feed_verbs: argparse._SubParsersAction) -> None:
    parser = feed_verbs.add_parser(
        "keygen",
        help="make a signing key pair (minisign format)",
        description=(
            "Write PREFIX.key (the secret key, mode 0600, scrypt-encrypted with a password "
            "unless --no-password) and PREFIX.pub, and print the public key line (RW...) to put "
            "in the agents' trusted_keys."
        ),
    )
    parser.add_argument(
        "--out", required=True, metavar="PREFIX", help="write PREFIX.key and PREFIX.pub"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help=f"read the password from the first line of FILE (else ${PASSWORD_ENV}, else ask)",
    )
    source.add_argument(
        "--no-password",
        action="store_true",
        help="store the secret key unencrypted (like minisign -W)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing key files")
    parser.set_defaults(run=run_keygen)


def register_sign(feed_verbs: argparse._SubParsersAction) -> None:
    parser = feed_verbs.add_parser(
        "sign",
        help="sign a file, writing FILE.minisig",
        description="Sign FILE with a minisign secret key; stock `minisign -V` accepts the result.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="the file to sign, e.g. feed.json")
    parser.add_argument("--key", required=True, type=Path, metavar="SECRET_KEY_FILE")
    parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help=f"read the key's password from the first line of FILE (else ${PASSWORD_ENV}, or ask)",
    )
    parser.add_argument(
        "--trusted-comment",
        metavar="TEXT",
        help="the signed comment (default: timestamp:<now>\\tfile:<name>\\thashed, as minisign)",
    )
    parser.add_argument(
        "--legacy",
        action="store_true",
        help="sign the file itself ('Ed', like minisign -l) instead of its BLAKE2b-512 hash ('ED')",
    )
    parser.set_defaults(run=run_sign)


def run_keygen(args: argparse.Namespace) -> int:
    from agent.feed.signature import SecretKey

    key_path = Path(f"{args.out}.key")
    pub_path = Path(f"{args.out}.pub")
    if not key_path.parent.is_dir():
        raise UsageError(f"cannot write {key_path}: {key_path.parent} is not a directory")
    existing = [str(path) for path in (key_path, pub_path) if path.exists()]
    if existing and not args.force:
        raise UsageError(
            f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
            "pass --force to replace them (files signed with the old key then need a new signature)"
        )
    password = None if args.no_password else _new_key_password(args.password_file)
    key = SecretKey.generate()
    if password is not None:
        _tell("deriving the encryption key from the password (a few seconds)...")
    _write_atomically(key_path, key.to_file_text(password), mode=0o600)
    public = key.public_key()
    _write_atomically(pub_path, public.to_file_text(), mode=0o644)
    print(public.to_base64())
    encrypted = "encrypted" if password is not None else "NOT encrypted"
    _tell(
        f"wrote {key_path} (secret, {encrypted}: keep it safe) and {pub_path}; "
        f"key ID {public.key_id_hex}"
    )
    return 0


def run_sign(args: argparse.Namespace) -> int:
    from agent.feed.signature import sign

    key = load_secret_key(args.key, args.password_file)
    try:
        data = args.file.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {args.file}: {error.strerror or error}") from None
    prehashed = not args.legacy
    trusted_comment = args.trusted_comment or _default_trusted_comment(args.file, prehashed)
    try:
        text = sign(data, key, trusted_comment=trusted_comment, prehashed=prehashed)
    except ValueError as error:
        raise UsageError(str(error)) from None
    signature_path = args.file.with_name(args.file.name + SIGNATURE_SUFFIX)
    _write_atomically(signature_path, text, mode=0o644)
    form = "prehashed ED" if prehashed else "legacy Ed"
    _tell(f"wrote {signature_path} ({form} signature by key {key.public_key().key_id_hex})")
    return 0


def load_secret_key(path: Path, password_file: Path | None) -> SecretKey:
    """Read a secret key file, asking for a password only if the key is encrypted.

    Also used by ``id1 feed build``, so every command that signs gets its password the same way.
    """
    from agent.feed.signature import SecretKey, secret_key_needs_password

    key_text = _read_key_file(path)
    try:
        if secret_key_needs_password(key_text):
            password = _existing_key_password(path, password_file)
            _tell("deriving the key from the password (a few seconds)...")
        else:
            password = None
        return SecretKey.from_file_text(key_text, password)
    except KeyFileError as error:
        raise KeyFileError(f"{path}: {error}") from None


def _default_trusted_comment(path: Path, prehashed: bool) -> str:
    # The same text `minisign -S` writes, so signatures look alike whichever tool made them.
    return f"timestamp:{int(time.time())}\tfile:{path.name}" + ("\thashed" if prehashed else "")


def _new_key_password(password_file: Path | None) -> str:
    if password_file is not None:
        password = _read_password_file(password_file)
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    elif _stdin_is_terminal():
        password = getpass.getpass("Password for the new secret key: ")
        if password != getpass.getpass("Password (again): "):
            raise UsageError("the two passwords differ; nothing was written")
    else:
        raise UsageError(
            "no password for the new secret key and no terminal to ask on: pass --password-file "
            f"FILE, set {PASSWORD_ENV}, or pass --no-password for an unencrypted key"
        )
    if not password:
        raise UsageError(
            "the password is empty; choose one, or pass --no-password for an unencrypted key"
        )
    return password


def _existing_key_password(key_path: Path, password_file: Path | None) -> str:
    if password_file is not None:
        return _read_password_file(password_file)
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if _stdin_is_terminal():
        return getpass.getpass(f"Password for {key_path}: ")
    raise UsageError(
        f"{key_path} is encrypted and there is no terminal to ask for its password: "
        f"pass --password-file FILE or set {PASSWORD_ENV}"
    )


def _read_password_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read password file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise UsageError(f"password file {path} is not UTF-8 text") from None
    return text.partition("\n")[0].removesuffix("\r")


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        reason = error.strerror or error
        raise KeyFileError(f"cannot read secret key file {path}: {reason}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a minisign secret key file (not text)") from None


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdin
        return False


def _write_atomically(path: Path, text: str, *, mode: int) -> None:
    """Replace ``path`` in one step: a reader sees the old file or the new one, never half."""
    try:
        write_atomically(path, text.encode("utf-8"), mode=mode)
    except OSError as error:
        raise Id1Error(f"cannot write {path}: {error.strerror or error}") from None


def _tell(message: str) -> None:
    print(f"id1: {message}", file=sys.stderr)
