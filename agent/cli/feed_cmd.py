"""``id1 feed keygen | sign | verify | build``: the vendor's and operator's feed tools."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli import keys_cmd
from agent.cli.plan_cmd import parse_instant
from agent.cli.render import shown
from agent.errors import KeyFileError, UsageError

if TYPE_CHECKING:  # cryptography is imported by the verbs that sign or verify, not to build the command line
    from agent.feed.signature import PublicKey


def register(verbs: argparse._SubParsersAction) -> None:
    feed = verbs.add_parser(
        "feed",
        help="make keys, sign, verify and build release feeds",
        description="Tools for the signed release feed (DESIGN.md §4).",
    )
    feed_verbs = feed.add_subparsers(dest="feed_verb", metavar="FEED_VERB", parser_class=type(feed))
    feed_verbs.required = True
    keys_cmd.register_keygen(feed_verbs)
    keys_cmd.register_sign(feed_verbs)
    _register_verify(feed_verbs)
    _register_build(feed_verbs)


def _register_verify(feed_verbs: argparse._SubParsersAction) -> None:
    parser = feed_verbs.add_parser(
        "verify",
        help="check a feed's signature, format and expiry as an agent would",
        description="Verify FEED (its .minisig beside it) against trusted keys: from --key, or the "
        "config's feed.trusted_keys. Exit 0 when an agent would accept it, 3 when it would refuse it.",
    )
    parser.add_argument("feed", type=Path, metavar="FEED", help="feed.json")
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key", action="append", metavar="PUBKEY", help="a minisign public key: RW… or a .pub file (repeatable)")
    keys.add_argument("--config", type=Path, metavar="AGENT_TOML", help="take trusted keys and the size cap from this agent config")
    parser.add_argument("--now", type=parse_instant, metavar="ISO8601", help="check expiry as of this time")
    parser.set_defaults(run=run_verify)


def _register_build(feed_verbs: argparse._SubParsersAction) -> None:
    parser = feed_verbs.add_parser(
        "build",
        help="build and sign feed.json from a release description and an artifacts folder",
        description="Compute each artifact's sha256 and size, bump the serial, set issued/expiry "
        "times, validate as an agent would, write OUT/feed.json with OUT/artifacts/ and sign it.",
    )
    parser.add_argument("--source", required=True, type=Path, metavar="RELEASES", help="release description (.toml or .json)")
    parser.add_argument("--artifacts", required=True, type=Path, metavar="DIR", help="folder holding the artifact files")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="feed folder to write (served as-is)")
    parser.add_argument("--key", required=True, type=Path, metavar="SECRET_KEY", help="minisign secret key file")
    parser.add_argument("--password-file", type=Path, metavar="FILE", help="first line is the key's password")
    parser.add_argument("--serial", type=int, help="serial to publish (default: the published one + 1)")
    parser.add_argument("--now", type=parse_instant, metavar="ISO8601", help="issue time (default: now)")
    parser.set_defaults(run=run_build)


def run_verify(args: argparse.Namespace) -> int:
    from agent.config import DEFAULT_FEED_MAX_BYTES, load_config
    from agent.feed.signature import PublicKey
    from agent.feed.verify import read_feed_files, verify_feed_signed

    if args.config is not None:
        config = load_config(args.config)
        keys = [PublicKey.from_base64(line) for line in config.feed.trusted_keys]
        max_bytes = config.feed.max_bytes
    else:
        keys = [_public_key(text) for text in args.key]
        max_bytes = DEFAULT_FEED_MAX_BYTES
    now = args.now or datetime.now(timezone.utc)
    data, signature = read_feed_files(args.feed, max_bytes)
    catalog, signed = verify_feed_signed(data, signature, keys, now=now, max_bytes=max_bytes, source=str(args.feed))
    print(
        f"{args.feed}: good signature by key {signed.key_id_hex}; serial {catalog.serial}, "
        f"expires {catalog.feed.expires_at.isoformat()}; {_count(len(catalog.platforms), 'platform release')}, "
        f"{_count(sum(map(len, catalog.capabilities.values())), 'capability release')}, "
        f"{_count(len(catalog.feed.advisories), 'advisory', 'advisories')}"
    )
    print(f"trusted comment: {shown(signed.trusted_comment, keep=chr(9))}")  # minisign's comments hold tabs
    return 0


def run_build(args: argparse.Namespace) -> int:
    from agent.feed.build import (
        build_feed,
        load_source,
        previous_serial,
        write_feed_folder,
    )
    from agent.feed.signature import sign

    if not args.artifacts.is_dir():
        raise UsageError(f"--artifacts {args.artifacts}: not a folder")
    key = keys_cmd.load_secret_key(args.key, args.password_file)
    now = args.now or datetime.now(timezone.utc)
    built = build_feed(
        load_source(args.source),
        args.artifacts,
        now=now,
        last_serial=previous_serial(args.out / "feed.json"),
        serial=args.serial,
        source_name=str(args.source),
    )
    signature = sign(built.data, key, trusted_comment=f"timestamp:{int(now.timestamp())}\tfile:feed.json\tserial:{built.serial}\thashed")
    args.out.mkdir(parents=True, exist_ok=True)
    write_feed_folder(args.out, built, signature)
    print(f"wrote {args.out / 'feed.json'} (serial {built.serial}, {len(built.artifacts)} artifacts) and its signature")
    return 0


def _public_key(text: str) -> PublicKey:
    from agent.feed.signature import PublicKey

    if text.startswith("RW"):
        return PublicKey.from_base64(text)
    try:
        return PublicKey.from_file_text(Path(text).read_text(encoding="utf-8"))
    except OSError as error:
        raise KeyFileError(f"cannot read public key {text}: {error.strerror or error}") from None


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"
