"""Manifest snapshots, each stored once under ``manifests/<sha256>.json`` and referenced by hash.

A manifest of a few hundred capabilities is ~100 KB; kept inside ``state.json`` it would be
rewritten on every deployment step and the file would grow with every revision. Here each
distinct manifest is written once (atomically, fsynced) in canonical JSON — sorted keys, no
spaces, UTF-8 — so its name is the sha256 of its bytes: the same manifest always lands in the
same file, and a read can verify the file against its name. Files no state record refers to are
removed by ``collect``. An approval's changes and release notes are kept the same way (any JSON
object can be).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

from agent.errors import StoreCorrupt, StoreError
from agent.store.durable import fsync_folder, make_folder, remove_stale_temp_files, store_error, write_atomically

FOLDER_NAME = "manifests"
_NAME = re.compile(r"^[0-9a-f]{64}\.json$")


def canonical_json(manifest: dict[str, Any]) -> bytes:
    try:
        return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise StoreError(f"cannot store a manifest that is not plain JSON: {error}") from None


def manifest_sha256(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(manifest)).hexdigest()


class ManifestFiles:
    """The ``manifests/`` folder, with the most recently used manifests kept parsed in memory."""

    def __init__(self, folder: Path, cache_size: int = 8):
        self.folder = folder
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._hashed: OrderedDict[int, tuple[dict[str, Any], str]] = OrderedDict()
        self._cache_size = cache_size
        self._unsynced = False

    def prepare(self) -> None:
        make_folder(self.folder)
        remove_stale_temp_files(self.folder)

    def path(self, sha256: str) -> Path:
        return self.folder / f"{sha256}.json"

    def put(self, manifest: dict[str, Any]) -> str:
        """Store ``manifest`` (if it is not there yet) and return its sha256."""
        known = self._hashed.get(id(manifest))
        if known is not None and known[0] is manifest and self.path(known[1]).exists():
            # The deployer stores the same manifest with its deployment and then with its
            # revision: don't encode ~100 KB twice (manifests are never changed in place).
            return known[1]
        data = canonical_json(manifest)
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path(sha256)
        if not path.exists():
            write_atomically(path, data, sync_folder=False)
            self._unsynced = True
        self._remember(sha256, manifest)
        self.remember_hash(manifest, sha256)
        return sha256

    def sync(self) -> None:
        """Make the new files' names durable: called before any state write that refers to them.

        Doing it here rather than per file means a batch of N new manifests costs one folder
        fsync; a crash before it only loses files that nothing on disk refers to yet.
        """
        if self._unsynced:
            fsync_folder(self.folder)
            self._unsynced = False

    def get(self, sha256: str, *, owner: str) -> dict[str, Any]:
        """The manifest with this hash; ``owner`` (``revision 3``) names who needs it in errors."""
        cached = self._cache.get(sha256)
        if cached is not None:
            self._cache.move_to_end(sha256)
            return cached
        manifest = self._read(sha256, owner)
        self._remember(sha256, manifest)
        return manifest

    def find(self, sha256: str) -> dict[str, Any] | None:
        """The manifest if its file is still kept, else ``None`` (for archived records)."""
        if sha256 not in self._cache and not self.path(sha256).exists():
            return None
        try:
            return self.get(sha256, owner="an archived record")
        except StoreCorrupt:
            return None

    def collect(self, referenced: set[str]) -> list[Path]:
        """Remove every manifest file whose hash is not in ``referenced``; return what was removed."""
        removed = []
        try:
            names = [entry.name for entry in self.folder.iterdir()]
        except FileNotFoundError:
            return removed
        except OSError as error:
            raise store_error("list", self.folder, error, intact=True) from error
        for name in names:
            if _NAME.match(name) and name[:-5] not in referenced:
                path = self.folder / name
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as error:
                    raise store_error("remove", path, error, intact=True) from error
                removed.append(path)
        gone = {path.name[:-5] for path in removed}
        for sha256 in gone:
            self._cache.pop(sha256, None)
        for key in [key for key, (_, sha256) in self._hashed.items() if sha256 in gone]:
            del self._hashed[key]
        return removed

    def _read(self, sha256: str, owner: str) -> dict[str, Any]:
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreCorrupt(
                f"the manifest of {owner} is missing: {path}; restore it from a backup of {self.folder.parent}"
            ) from None
        except OSError as error:
            raise store_error("read", path, error, intact=True) from error
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreCorrupt(f"the manifest of {owner} is damaged: {path} does not match its sha256; restore it from a backup")
        try:
            manifest = json.loads(data)
        except ValueError:
            raise StoreCorrupt(f"the manifest of {owner} is damaged: {path} is not JSON; restore it from a backup") from None
        if not isinstance(manifest, dict):
            raise StoreCorrupt(f"the manifest of {owner} is damaged: {path} is not a JSON object")
        return manifest

    def remember_hash(self, manifest: dict[str, Any], sha256: str) -> None:
        """``manifest`` (say, a model's copy of a stored one) is stored under ``sha256``."""
        self._hashed[id(manifest)] = (manifest, sha256)  # holding the object keeps its id unique
        self._hashed.move_to_end(id(manifest))
        while len(self._hashed) > self._cache_size:
            self._hashed.popitem(last=False)

    def _remember(self, sha256: str, manifest: dict[str, Any]) -> None:
        self._cache[sha256] = manifest
        self._cache.move_to_end(sha256)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
