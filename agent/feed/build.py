"""``id1 feed build``: a vendor's release description + artifacts folder → a signed feed folder.

The source description (TOML or JSON) is the feed of DESIGN.md §4 without what a machine should
compute: each capability names its artifact *file* (``artifact = "core-auth-1.0.0.tar.gz"``, by
default ``<suite>-<name>-<version>.tar.gz``) and the builder fills in the URL, sha256 and size;
``serial`` is the previous feed's plus one; ``issued_at`` is now and ``expires_at`` now plus
``valid_for`` (default 14 days). The result is validated exactly as an agent would validate it
before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from agent.config import parse_duration
from agent.errors import FeedInvalid, Issue, UsageError
from agent.files import write_atomically
from agent.feed.catalog import parse_feed

DEFAULT_VALID_FOR = "14d"
ARTIFACTS_FOLDER = "artifacts"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BuiltFeed:
    data: bytes
    serial: int
    artifacts: dict[str, Path]
    """Artifact file name → where it was found, to be placed in ``<out>/artifacts/``."""


def load_source(path: Path) -> dict:
    """Read a release description (``.toml`` or ``.json``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read release description {path}: {error.strerror or error}") from None
    try:
        source = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise FeedInvalid(str(path), [Issue("", f"not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {error}")]) from None
    if not isinstance(source, dict):
        raise FeedInvalid(str(path), [Issue("", "the release description must be a table/object")])
    return source


def previous_serial(feed_path: Path) -> int | None:
    """The serial of the feed already in the output folder, if any (even an expired one)."""
    try:
        return int(json.loads(feed_path.read_bytes())["serial"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"cannot read the serial of the existing {feed_path} ({error}); move it away or pass --serial") from None


def build_feed(
    source: dict,
    artifacts_dir: Path,
    *,
    now: datetime,
    last_serial: int | None,
    serial: int | None = None,
    source_name: str = "release description",
) -> BuiltFeed:
    if serial is None:
        serial = (last_serial or 0) + 1
    elif last_serial is not None and serial <= last_serial:
        raise UsageError(f"serial {serial} is not higher than the published feed's {last_serial}; agents would refuse it as a replay")
    try:
        valid_for = parse_duration(str(source.get("valid_for", DEFAULT_VALID_FOR)))
    except ValueError as error:
        raise FeedInvalid(source_name, [Issue("valid_for", str(error))]) from None

    feed = {key: value for key, value in source.items() if key != "valid_for"}
    feed.update(format=1, serial=serial, issued_at=_iso(now), expires_at=_iso(now + valid_for))
    for release in feed.get("platforms", []):
        if isinstance(release, dict):
            release.setdefault("released_at", _iso(now))
    issues: list[Issue] = []
    artifacts: dict[str, Path] = {}
    for index, capability in enumerate(feed.get("capabilities", [])):
        if not isinstance(capability, dict):
            continue
        name = capability.get("artifact") or f"{capability.get('suite')}-{capability.get('name')}-{capability.get('version')}.tar.gz"
        if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
            issues.append(Issue(f"capabilities[{index}].artifact", f"{name!r} is not a file name in the artifacts folder"))
            continue
        path = artifacts_dir / name
        try:
            sha256, size = _digest(path)
        except OSError as error:
            issues.append(Issue(f"capabilities[{index}].artifact", f"{path}: {error.strerror or error}"))
            continue
        capability["artifact"] = {"url": f"{ARTIFACTS_FOLDER}/{name}", "sha256": sha256, "size": size}
        artifacts[name] = path
    if issues:
        raise FeedInvalid(source_name, issues)

    data = (json.dumps(feed, indent=2, default=_json_default) + "\n").encode("utf-8")
    parse_feed(data, source_name)  # the agent's own validation: the builder never publishes what agents refuse
    return BuiltFeed(data=data, serial=serial, artifacts=artifacts)


def write_feed_folder(out: Path, built: BuiltFeed, signature_text: str) -> None:
    """Place artifacts, then the feed and its signature, each file replaced atomically."""
    artifacts_out = out / ARTIFACTS_FOLDER
    artifacts_out.mkdir(parents=True, exist_ok=True)
    for name, path in built.artifacts.items():
        destination = artifacts_out / name
        if destination.exists() and destination.resolve() == path.resolve():
            continue
        _atomic_copy(path, destination)
    write_atomically(out / "feed.json", built.data)
    write_atomically(out / "feed.json.minisig", signature_text.encode("utf-8"))


def _digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_default(value):
    if isinstance(value, datetime):  # TOML datetimes
        return _iso(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    raise TypeError(f"{type(value).__name__} cannot be written to a feed")


def _atomic_copy(source: Path, destination: Path) -> None:
    handle, temp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    os.close(handle)
    try:
        shutil.copyfile(source, temp)
        os.chmod(temp, 0o644)
        os.replace(temp, destination)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise

