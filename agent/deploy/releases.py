"""Release folders on disk (DESIGN.md §6).

    <state_dir>/releases/<suite>/<capability>/<version>/   one unpacked artifact per version
    <state_dir>/releases/<suite>/<capability>/current       symlink → the running version

The ``current`` link is switched atomically (a new link beside it, then ``os.replace``), so a
crash leaves either the old or the new version current, never none. The unit files a release
carries are agent.deploy.units' business.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from agent.files import fsync_folder

CURRENT = "current"


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
            raise FileNotFoundError(f"release folder {target} does not exist")
        link = self.current_link(ref)
        temporary = link.with_name(f".{CURRENT}.{os.getpid()}")
        temporary.unlink(missing_ok=True)
        os.symlink(version, temporary)  # relative: the tree can be moved or backed up whole
        os.replace(temporary, link)
        fsync_folder(link.parent)

    def remove_current(self, ref: str) -> None:
        self.current_link(ref).unlink(missing_ok=True)
        fsync_folder(self.capability_dir(ref))

    def kept_versions(self, ref: str) -> list[str]:
        folder = self.capability_dir(ref)
        if not folder.is_dir():
            return []
        return sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith("."))

    def remove_release(self, ref: str, version: str) -> None:
        """Delete a release folder that is not current (retention); the current one is refused."""
        if self.current_version(ref) == version:
            raise ValueError(f"{ref} {version} is current and cannot be removed")
        shutil.rmtree(self.release_dir(ref, version), ignore_errors=True)

