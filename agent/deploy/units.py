"""The unit files a capability owns, on disk: checked in its release, installed, removed.

A release carries its units in the artifact's ``systemd/`` folder and lists them in the feed
(``units``). What may be installed is exactly what is listed (agent.feed.units: names start
with ``id1-<suite>-<capability>``); a file in ``systemd/`` the release does not list, a listed
unit without its file, or an ``[Install]`` section that would alias or enable a unit of
somebody else's is refused before anything on the host changes.

Installed files start with a line naming their capability::

    # Installed by id1-agent for capability core/auth; replaced at every deployment …

which is how the agent knows a file in the unit folder is its own: it never overwrites or removes
a file that does not carry the line for that capability, except one the running revision lists
for it (installed by an agent from before the line existed). ``@CURRENT@`` (the capability's
``current`` link) and ``@STATE_DIR@`` are filled in; a file is rewritten only when its content
changes, and the caller reloads systemd only then.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from agent.errors import UnitError
from agent.feed.units import template_unit_problem, unit_file_name, unit_name_problem
from agent.files import fsync_folder, write_atomically

MARKER = "# Installed by id1-agent for capability {ref}; replaced at every deployment (local changes: systemctl edit)."
_MARKER = re.compile(r"# Installed by id1-agent for capability (\S+);")
# Folders systemctl enable fills with links to a unit; links left there after the file is gone
# (a crash between removing the file and disabling it) are dangling and are removed with it.
_LINK_FOLDERS = (".wants", ".requires", ".upholds")


def release_unit_files(release_dir: Path, ref: str, version: str, units: Sequence[str], *, strict: bool = True,
                       templates: bool = False) -> dict[str, str]:
    """The unit files release ``ref version`` installs: file name → its text, checked.

    ``strict=False`` (putting a previous release back) tolerates files in ``systemd/`` that the
    release does not list, which an agent from before the rule may have deployed: they are
    simply not installed. Names and ``[Install]`` sections are always checked. ``templates``:
    a blue-green release, which lists templates (agent.deploy.bluegreen writes their colours).
    """
    what = f"{ref} {version}"
    for unit in units:
        problem = template_unit_problem(ref, unit) if templates else unit_name_problem(ref, unit)
        if problem:
            raise UnitError(f"{what}: {problem}")
    needed = {unit_file_name(unit) for unit in units}
    folder = release_dir / "systemd"
    try:
        present = {entry.name: entry for entry in os.scandir(folder)}
    except FileNotFoundError:
        present = {}
    except OSError as error:
        raise UnitError(f"{what}: cannot read {folder}: {error.strerror or error}") from None
    if strict:
        for name in sorted(set(present) - needed):
            raise UnitError(f"{what} carries systemd/{name}, which its release does not list in units: refused "
                            f"(a release installs exactly the units it lists)")
    texts = {}
    for name in sorted(needed):
        entry = present.get(name)
        if entry is None or not entry.is_file(follow_symlinks=False):
            raise UnitError(f"{what} lists {name} in units but its artifact has no file systemd/{name}")
        texts[name] = _read_unit(Path(entry.path), what)
        for key, value in _install_references(texts[name]):
            # A template (…@.service) or a specifier (%i) stands for any instance of it.
            if unit_name_problem(ref, value.replace("@.", "@x.").replace("%i", "x").replace("%I", "x")):
                raise UnitError(f"{what}: systemd/{name} has {key}={value}, a unit that is not {ref}'s own: refused")
    return texts


def owner_of(path: Path) -> str | None:
    """The capability the agent installed ``path`` for, from its first line; None for any other file."""
    try:
        with open(path, "rb") as file:
            first = file.readline(512)
    except OSError:
        return None
    match = _MARKER.match(first.decode("utf-8", "replace"))
    return match[1] if match else None


class UnitFolder:
    """The unit folder (``services.unit_dir``) as the capabilities' units are kept in it."""

    def __init__(self, unit_dir: Path, state_dir: Path):
        self.unit_dir = unit_dir
        self.state_dir = state_dir

    def check_free(self, ref: str, names: Iterable[str], *, owned: Iterable[str] = ()) -> None:
        """UnitError when a file ``ref`` would install is there and belongs to something else."""
        legacy = set(owned)
        for name in sorted(set(names)):
            path = self.unit_dir / name
            if os.path.lexists(path) and not self._owns(ref, path, legacy):
                raise UnitError(f"{path} exists and was not installed by id1-agent for {ref}: refused to replace it "
                                f"(move it away if {ref} should own it)")

    def install(self, ref: str, texts: dict[str, str], *, current: Path, owned: Iterable[str] = (),
                port: int | None = None) -> list[str]:
        """Write the files whose content changes; the names written. The caller fsyncs the folder.
        ``current`` fills in ``@CURRENT@``; ``port`` fills in ``@PORT@`` (a blue-green colour's)."""
        self.check_free(ref, texts, owned=owned)
        try:
            self.unit_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UnitError(f"cannot create the unit folder {self.unit_dir}: {error.strerror or error}") from None
        changed = []
        for name, text in sorted(texts.items()):
            text = text.replace("@CURRENT@", str(current)).replace("@STATE_DIR@", str(self.state_dir))
            if port is not None:
                text = text.replace("@PORT@", str(port))
            content = (MARKER.format(ref=ref) + "\n" + text).encode("utf-8")
            destination = self.unit_dir / name
            try:
                if destination.read_bytes() == content:
                    continue
            except OSError:
                pass
            try:
                write_atomically(destination, content, sync_folder=False)
            except OSError as error:
                raise UnitError(f"cannot write {destination}: {error.strerror or error}") from None
            changed.append(name)
        return changed

    def remove(self, ref: str, names: Iterable[str], *, owned: Iterable[str] = ()) -> list[str]:
        """Delete the files of ``ref`` among ``names`` (never another's) and links left to them."""
        legacy = set(owned)
        removed = []
        for name in sorted(set(names)):
            path = self.unit_dir / name
            if not os.path.lexists(path) or not self._owns(ref, path, legacy):
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as error:
                raise UnitError(f"cannot remove {path}: {error.strerror or error}") from None
            removed.append(name)
        if removed:
            self._remove_dangling_links(set(removed))
            self.sync()
        return removed

    def sync(self) -> None:
        try:
            fsync_folder(self.unit_dir)
        except OSError as error:
            raise UnitError(f"cannot sync the unit folder {self.unit_dir}: {error.strerror or error}") from None

    def _owns(self, ref: str, path: Path, legacy: set[str]) -> bool:
        if path.is_symlink() or not path.is_file():
            return False  # a link or a folder is the admin's (systemctl link, mask)
        owner = owner_of(path)
        return owner == ref or (owner is None and path.name in legacy)

    def _remove_dangling_links(self, names: set[str]) -> None:
        try:
            folders = [entry for entry in os.scandir(self.unit_dir)
                       if entry.name.endswith(_LINK_FOLDERS) and entry.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for folder in folders:
            try:
                links = list(os.scandir(folder.path))
            except OSError:
                continue
            for link in links:
                if not link.is_symlink():
                    continue
                target = os.readlink(link.path)
                if os.path.basename(target) in names and not os.path.exists(link.path):
                    Path(link.path).unlink(missing_ok=True)


def _read_unit(path: Path, what: str) -> str:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise UnitError(f"{what}: {path.name} is not a regular file")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UnitError(f"{what}: systemd/{path.name} is not UTF-8 text") from None
    except OSError as error:
        raise UnitError(f"{what}: cannot read systemd/{path.name}: {error.strerror or error}") from None


def _install_references(text: str) -> list[tuple[str, str]]:
    """The ``Alias=`` and ``Also=`` names in a unit file's ``[Install]`` section."""
    found = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, separator, value = line.partition("=")
        if section == "Install" and separator and key.strip() in ("Alias", "Also"):
            found.extend((key.strip(), name) for name in value.split())
    return found
