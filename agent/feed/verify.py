"""From feed bytes to a trusted Catalog: size cap, signature, format, expiry — in that order.

Nothing is parsed before the signature holds, so a hostile mirror can make the agent hash at
most ``max_bytes`` and no more. Serial rules (a lower serial is a replay) need the last accepted
feed and belong to the feed client that keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from agent.errors import FeedExpired, FeedTooLarge, FeedUnavailable, SignatureError
from agent.feed.catalog import Catalog, parse_feed
from agent.feed.signature import PublicKey, VerifiedSignature, verify

SIGNATURE_SUFFIX = ".minisig"


def trusted_keys_from_config(lines: Sequence[str]) -> list[PublicKey]:
    return [PublicKey.from_base64(line) for line in lines]


def verify_feed(
    data: bytes,
    signature_text: str | None,
    trusted_keys: Sequence[PublicKey],
    *,
    now: datetime,
    max_bytes: int,
    source: str = "feed.json",
) -> Catalog:
    return verify_feed_signed(data, signature_text, trusted_keys, now=now, max_bytes=max_bytes, source=source)[0]


def verify_feed_signed(
    data: bytes,
    signature_text: str | None,
    trusted_keys: Sequence[PublicKey],
    *,
    now: datetime,
    max_bytes: int,
    source: str = "feed.json",
) -> tuple[Catalog, VerifiedSignature]:
    """``verify_feed``, also returning who signed it and the trusted comment."""
    if len(data) > max_bytes:
        raise FeedTooLarge(f"{source} is larger than the {max_bytes}-byte cap (feed.max_bytes); refused unread")
    if not trusted_keys:
        raise SignatureError(f"{source}: no trusted keys are configured (feed.trusted_keys), so no feed can be accepted")
    if signature_text is None:
        raise SignatureError(f"{source}: no signature ({source}{SIGNATURE_SUFFIX}) beside it; an unsigned feed is never used")
    try:
        signed = verify(data, signature_text, trusted_keys)
    except SignatureError as error:
        raise SignatureError(f"{source}: {error}") from None
    catalog = parse_feed(data, source)
    if catalog.feed.expires_at <= now:
        raise FeedExpired(
            f"{source} (serial {catalog.serial}) expired at {catalog.feed.expires_at.isoformat()}; "
            "a feed that is not refreshed could hide newer fixes, so the vendor must publish a new one"
        )
    return catalog, signed


def read_feed_files(path: Path, max_bytes: int) -> tuple[bytes, str | None]:
    """The feed's bytes (at most ``max_bytes + 1`` are read) and its signature text, if present."""
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise FeedUnavailable(f"cannot read feed {path}: {error.strerror or error}") from None
    signature_path = path.with_name(path.name + SIGNATURE_SUFFIX)
    try:
        signature = signature_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        signature = None
    except (OSError, UnicodeDecodeError) as error:
        raise SignatureError(f"cannot read signature {signature_path}: {getattr(error, 'strerror', None) or error}") from None
    return data, signature
