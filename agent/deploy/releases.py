"""Release folders on disk (DESIGN.md §6).

    <state_dir>/releases/<suite>/<capability>/<version>/                one unpacked artifact per version
    <state_dir>/releases/<suite>/<capability>/.<version>.release.json   what it was unpacked from
    <state_dir>/releases/<suite>/<capability>/current                    symlink → the running version

The ``current`` link is switched atomically (a new link beside it, then ``os.replace``), so a
crash leaves either the old or the new version current, never none. The record beside a folder
names the artifact (sha256) it was unpacked from and the digest of every file the archive put
there, so a folder is re-used (a rollback months later, a retried deployment) only if it still
holds exactly those bytes: a file the service added (``__pycache__``) does not matter, one that
was changed or removed does. The unit files a release carries are agent.deploy.units' business.
Failures are ReleaseErrors naming the path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ReleaseError
from agent.files import fsync_folder, write_atomically

CURRENT = "current"
RECORD_SUFFIX = ".release.json"


@dataclass(frozen=True)
class ReleaseRecord:
    artifact_sha256: str
    files: dict[str, str]
    """Path in the folder → ``sha256:<hex>`` of a regular file, ``link:<target>`` of a symlink."""


@dataclass(frozen=True)
class ReleaseLayout:
    state_dir: Path

    @property
    def root(self) -> Path:
        return self.state_dir / "releases"

    def capability_dir(self, ref: str) -> Path:
        suite, _, name = ref.partition("/")
        return self.root / suite / name

    def release_dir(self, ref: str, version: str) -> Path:
        return self.capability_dir(ref) / version

    def current_link(self, ref: str) -> Path:
        return self.capability_dir(ref) / CURRENT

    def current_version(self, ref: str) -> str | None:
        """The version ``current`` points at, or None when the capability is not deployed."""
        link = self.current_link(ref)
        try:
            return os.readlink(link)
        except (FileNotFoundError, OSError):
            return None

    def switch_current(self, ref: str, version: str) -> None:
        """Point ``current`` at ``version`` atomically; the release folder must exist."""
        target = self.release_dir(ref, version)
        if not target.is_dir():
            raise ReleaseError(f"cannot switch {ref} to {version}: its release folder {target} does not exist")
        link = self.current_link(ref)
        temporary = link.with_name(f".{CURRENT}.{os.getpid()}")
        try:
            temporary.unlink(missing_ok=True)
            os.symlink(version, temporary)  # relative: the tree can be moved or backed up whole
            os.replace(temporary, link)
            fsync_folder(link.parent)
        except OSError as error:
            raise ReleaseError(f"cannot switch {link} to {version}: {error.strerror or error}") from None

    def remove_current(self, ref: str) -> None:
        try:
            self.current_link(ref).unlink(missing_ok=True)
            if self.capability_dir(ref).is_dir():
                fsync_folder(self.capability_dir(ref))
        except OSError as error:
            raise ReleaseError(f"cannot remove {self.current_link(ref)}: {error.strerror or error}") from None

    # ── what a folder was unpacked from ──────────────────────────────────────────────────────

    def record_path(self, ref: str, version: str) -> Path:
        return self.capability_dir(ref) / f".{version}{RECORD_SUFFIX}"

    def read_record(self, ref: str, version: str) -> ReleaseRecord | None:
        """None when there is none (a folder unpacked by an older agent) or it cannot be read."""
        try:
            data = json.loads(self.record_path(ref, version).read_bytes())
            return ReleaseRecord(str(data["artifact_sha256"]), {str(k): str(v) for k, v in data["files"].items()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def write_record(self, ref: str, version: str, artifact_sha256: str) -> ReleaseRecord:
        """Record the folder as it is now as the unpacking of ``artifact_sha256``."""
        record = ReleaseRecord(artifact_sha256, folder_digests(self.release_dir(ref, version)))
        data = json.dumps({"artifact_sha256": record.artifact_sha256, "files": record.files}, sort_keys=True).encode()
        try:
            write_atomically(self.record_path(ref, version), data)
        except OSError as error:
            raise ReleaseError(f"cannot write {self.record_path(ref, version)}: {error.strerror or error}") from None
        return record

    def holds(self, ref: str, version: str, artifact_sha256: str) -> str | None:
        """None when the folder of ``ref version`` holds the unpacked ``artifact_sha256``
        unchanged; else why not, in words."""
        folder = self.release_dir(ref, version)
        if not folder.is_dir():
            return f"{folder} does not exist"
        record = self.read_record(ref, version)
        if record is None:
            return f"{folder} has no record of the artifact it was unpacked from"
        if record.artifact_sha256 != artifact_sha256:
            return f"{folder} was unpacked from another artifact (sha256 {record.artifact_sha256[:12]}…, wanted {artifact_sha256[:12]}…)"
        now = folder_digests(folder, only=record.files)
        changed = sorted(path for path, digest in record.files.items() if now.get(path) != digest)
        if changed:
            return f"{folder} changed since it was unpacked ({len(changed)} file(s), e.g. {changed[0]})"
        return None

    def kept_versions(self, ref: str) -> list[str]:
        folder = self.capability_dir(ref)
        if not folder.is_dir():
            return []
        return sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith("."))

    def remove_release(self, ref: str, version: str) -> None:
        """Delete a release folder that is not current (retention, or one to unpack again)."""
        if self.current_version(ref) == version:
            raise ValueError(f"{ref} {version} is current and cannot be removed")
        self.record_path(ref, version).unlink(missing_ok=True)
        folder = self.release_dir(ref, version)
        if folder.is_dir():
            # Renamed out of the way first: a folder half deleted by a crash is never mistaken
            # for a release (kept_versions skips dot names; the next removal finishes it).
            doomed = folder.with_name(f".removing.{version}.{os.getpid()}")
            try:
                os.replace(folder, doomed)
            except OSError as error:
                raise ReleaseError(f"cannot remove {folder}: {error.strerror or error}") from None
            shutil.rmtree(doomed, ignore_errors=True)
        for leftover in self.capability_dir(ref).glob(".removing.*"):
            shutil.rmtree(leftover, ignore_errors=True)


def folder_digests(folder: Path, *, only: dict[str, str] | None = None) -> dict[str, str]:
    """Every regular file (``sha256:…``) and symlink (``link:…``) under ``folder`` by relative
    path; with ``only``, just those paths (what is not there is left out)."""
    found: dict[str, str] = {}
    paths = sorted(only) if only is not None else _walk(folder)
    for relative in paths:
        path = folder / relative
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue
        if stat.S_ISLNK(mode):
            found[relative] = "link:" + os.readlink(path)
        elif stat.S_ISREG(mode):
            digest = hashlib.sha256()
            with open(path, "rb") as file:
                for chunk in iter(lambda: file.read(1 << 20), b""):
                    digest.update(chunk)
            found[relative] = "sha256:" + digest.hexdigest()
    return found


def _walk(folder: Path) -> list[str]:
    paths = []
    for root, folders, files in os.walk(folder):
        folders.sort()
        base = Path(root).relative_to(folder)
        for name in sorted(files):
            paths.append(str(base / name) if str(base) != "." else name)
        for name in folders:
            if os.path.islink(os.path.join(root, name)):
                paths.append(str(base / name) if str(base) != "." else name)
    return paths

