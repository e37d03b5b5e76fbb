"""Release folders and unit files on disk (DESIGN.md §6).

    <state_dir>/releases/<suite>/<capability>/<version>/   one unpacked artifact per version
    <state_dir>/releases/<suite>/<capability>/current       symlink → the running version

The ``current`` link is switched atomically (a new link beside it, then ``os.replace``), so a
crash leaves either the old or the new version current, never none. Units an artifact carries in
its ``systemd/`` folder are installed into the unit folder with ``@CURRENT@`` (the ``current``
link) and ``@STATE_DIR@`` replaced; a file is rewritten only when its content changes, and the
caller reloads systemd only then.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from agent.files import fsync_folder, write_atomically

CURRENT = "current"
UNIT_SUFFIXES = (".service", ".timer", ".socket", ".path", ".target")


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


def unit_files(release_dir: Path) -> list[Path]:
    folder = release_dir / "systemd"
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix in UNIT_SUFFIXES)


def install_units(release_dir: Path, unit_dir: Path, *, current: Path, state_dir: Path, sync_folder: bool = True) -> list[str]:
    """Install the release's units with their placeholders filled; the names of files changed.

    ``sync_folder=False`` leaves fsyncing ``unit_dir`` to a caller installing several releases.
    """
    unit_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for source in unit_files(release_dir):
        text = source.read_text(encoding="utf-8")
        text = text.replace("@CURRENT@", str(current)).replace("@STATE_DIR@", str(state_dir))
        destination = unit_dir / source.name
        try:
            if destination.read_text(encoding="utf-8") == text:
                continue
        except FileNotFoundError:
            pass
        write_atomically(destination, text.encode("utf-8"), sync_folder=False)
        changed.append(source.name)
    if changed and sync_folder:
        fsync_folder(unit_dir)
    return changed


def remove_units(unit_dir: Path, names: list[str]) -> list[str]:
    removed = []
    for name in names:
        path = unit_dir / name
        if path.exists():
            path.unlink()
            removed.append(name)
    if removed:
        fsync_folder(unit_dir)
    return removed
