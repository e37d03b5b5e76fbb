"""Safe extraction of an artifact tarball into a release folder (DESIGN.md §6, "stage").

    extract_archive(cache.fetch(url, sha256, size), releases / "core" / "auth" / "1.0.0", max_bytes=...)

The archive (.tar, .tar.gz, .tar.bz2 or .tar.xz, recognised by its first bytes) is read once, as
a stream, into a temporary folder beside ``dest`` that becomes ``dest`` by ``os.replace`` only
after every member passed. A refused or failed extraction leaves nothing at ``dest`` and no
temporary folder behind.

Refused with UnsafeArchive, which names the archive and the member:
  - absolute names and names with a ``..`` component, and members under a symlink of the archive
  - symlinks to absolute targets or targets that lead out of the folder, checked by name as they
    are read and again once every link exists (links are created last), so that a chain of
    links, each harmless on its own, cannot lead out either
  - hard links to anything but a regular file extracted before them
  - device files, FIFOs and member types tar does not define
  - more than ``max_bytes`` of file content, refused at the header that would pass the limit,
    before any of its bytes are decompressed; and more than ``max_entries`` members

Decompression is done here with bounded reads (``gzip``/``bz2``/``lzma`` file objects), not by
``tarfile``'s own stream mode: that one inflates each 10 KiB of input whole, and 10 KiB of bz2
can hold gigabytes of zeros, which it would hold in memory before any check could run.

Kept: permission bits, without setuid, setgid, sticky or write for others (a release folder that
anyone on the host may modify would run their code as the service); modification times. Not
kept: owners, so everything belongs to the agent. Python's ``tarfile`` extraction filters are not
used: they differ between 3.11 patch levels, and these checks are stricter (no absolute links).
"""

from __future__ import annotations

import bz2
import contextlib
import ctypes
import errno
import functools
import gzip
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from agent.deploy import fsync_folder
from agent.errors import ArtifactError, DiskFull, UnsafeArchive

DEFAULT_MAX_ENTRIES = 200_000
MODE_MASK = 0o775
"""Permission bits kept from the archive: no setuid, setgid, sticky or write for others."""
_COPY_SIZE = 1024**2
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_COMPRESSED_OPENERS = (
    (b"\x1f\x8b", gzip.open),
    (b"BZh", bz2.open),
    (b"\xfd7zXZ\x00", lzma.open),
)
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


def extract_archive(archive: Path, dest: Path, *, max_bytes: int, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
    """Unpack ``archive`` into the new folder ``dest``, all of it or nothing."""
    archive, dest = Path(archive), Path(dest)
    if os.path.lexists(dest):
        raise ArtifactError(f"cannot extract {archive} into {dest}: it already exists")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
    except OSError as error:
        raise _write_error(error, dest.parent, archive) from error
    try:
        _Extraction(archive, staging, max_bytes, max_entries).run()
        os.chmod(staging, 0o755)
        _flush_filesystem(staging)
        os.replace(staging, dest)
    except OSError as error:
        _remove_tree(staging)
        raise _write_error(error, dest, archive) from error
    except BaseException:
        _remove_tree(staging)
        raise
    try:
        fsync_folder(dest.parent)  # the rename itself, on disk
    except OSError as error:
        raise ArtifactError(f"extracted {archive} into {dest}, but cannot sync {dest.parent}: {error.strerror}") from error


class _Extraction:
    def __init__(self, archive: Path, root: Path, max_bytes: int, max_entries: int):
        self.archive = archive
        self.root = root
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.total_bytes = 0
        self.files: set[str] = set()
        self.symlinks: dict[str, str] = {}
        self.folders: dict[str, tarfile.TarInfo] = {}
        self.buffer = bytearray(_COPY_SIZE)

    def run(self) -> None:
        with _open_decompressed(self.archive) as stream:
            try:
                tar = tarfile.open(fileobj=stream, mode="r|", bufsize=_COPY_SIZE)
            except _READ_ERRORS as error:
                raise self.unreadable(error) from error
            with tar:
                for count, member in enumerate(self.members(tar), start=1):
                    if count > self.max_entries:
                        raise self.refuse(member, f"the archive has more than {self.max_entries} entries")
                    self.extract(tar, member)
        self.create_symlinks()
        self.restore_folder_modes()

    def members(self, tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        """The archive's members in order; reading the next one skips the last one's bytes."""
        members = iter(tar)
        while True:
            try:
                yield next(members)
            except StopIteration:
                return
            except _READ_ERRORS as error:
                raise self.unreadable(error) from error

    def unreadable(self, error: BaseException) -> ArtifactError:
        return ArtifactError(f"{self.archive} is not a readable tar archive: {error}; nothing was extracted")

    def refuse(self, member: tarfile.TarInfo, why: str) -> UnsafeArchive:
        return UnsafeArchive(f"{self.archive}: member {member.name!r}: {why}; nothing was extracted")

    def extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = self.checked_name(member)
        if not name:
            return  # "./": the folder itself
        if member.isreg():
            self.write_file(tar, member, name)
        elif member.isdir():
            self.make_folder(member, name)
        elif member.issym():
            self.accept_symlink(member, name)
        elif member.islnk():
            self.make_hardlink(member, name)
        elif member.ischr() or member.isblk():
            raise self.refuse(member, "device files are not allowed")
        elif member.isfifo():
            raise self.refuse(member, "FIFOs are not allowed")
        else:
            raise self.refuse(member, f"unsupported member type {member.type!r}")

    def checked_name(self, member: tarfile.TarInfo) -> str:
        if "\0" in member.name or "\0" in member.linkname:  # possible in pax headers; no path holds one
            raise self.refuse(member, "a NUL character in its name or link target")
        if member.name.startswith("/"):
            raise self.refuse(member, "absolute path")
        parts = [part for part in member.name.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise self.refuse(member, "'..' in its path")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in self.symlinks:
                raise self.refuse(member, f"lies under the symlink {'/'.join(parts[:depth])!r}")
        name = "/".join(parts)
        if name in self.symlinks:
            raise self.refuse(member, "replaces a symlink of the archive")
        return name

    def write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> None:
        if self.total_bytes + member.size > self.max_bytes:
            raise self.refuse(
                member,
                f"its {member.size} bytes take the archive past the {self.max_bytes}-byte limit on extracted "
                "size (a decompression bomb?)",
            )
        path = self.prepare(member, name)
        source = tar.extractfile(member)
        assert source is not None  # a regular member always has a reader
        view = memoryview(self.buffer)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while count := self.read_member(source):
                self.total_bytes += count
                if self.total_bytes > self.max_bytes:  # never trusted blindly, though tarfile stops at the size
                    raise self.refuse(member, f"more than {self.max_bytes} bytes when extracted")
                written = 0
                while written < count:
                    written += os.write(fd, view[written:count])
            os.fchmod(fd, member.mode & MODE_MASK)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)
        self.files.add(name)

    def read_member(self, source: BinaryIO) -> int:
        try:
            return source.readinto(self.buffer)
        except _READ_ERRORS as error:
            raise self.unreadable(error) from error

    def make_folder(self, member: tarfile.TarInfo, name: str) -> None:
        path = self.root / name
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise self.refuse(member, "a folder with the name of another member")
        path.mkdir(parents=True, exist_ok=True)
        self.folders[name] = member

    def accept_symlink(self, member: tarfile.TarInfo, name: str) -> None:
        target = member.linkname
        if not target or target.startswith("/"):
            raise self.refuse(member, f"symlink to {target!r} outside the folder")
        landing = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if landing == ".." or landing.startswith("../"):
            raise self.refuse(member, f"symlink to {target!r} leads out of the folder")
        self.prepare(member, name)
        self.symlinks[name] = target  # created once every file is in place, see create_symlinks

    def make_hardlink(self, member: tarfile.TarInfo, name: str) -> None:
        target = member.linkname
        parts = [part for part in target.split("/") if part not in ("", ".")]
        if target.startswith("/") or ".." in parts:
            raise self.refuse(member, f"hard link to {target!r} outside the folder")
        source = "/".join(parts)
        if source not in self.files:
            raise self.refuse(member, f"hard link to {target!r}, which is not a file extracted before it")
        path = self.prepare(member, name)
        os.link(self.root / source, path, follow_symlinks=False)
        self.files.add(name)

    def prepare(self, member: tarfile.TarInfo, name: str) -> Path:
        """The member's path, its folders made; a file there before it (an earlier duplicate) goes."""
        path = self.root / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise self.refuse(member, "its folder is a file of the archive") from None
        if path.is_dir() and not path.is_symlink():
            raise self.refuse(member, "a file with the name of a folder of the archive")
        if name in self.files:
            path.unlink()  # tar semantics: the later member wins
            self.files.discard(name)
        return path

    def create_symlinks(self) -> None:
        for name, target in self.symlinks.items():
            path = self.root / name
            if os.path.lexists(path):
                raise UnsafeArchive(
                    f"{self.archive}: member {name!r}: a symlink with the name of another member; nothing was extracted"
                )
            os.symlink(target, path)
        real_root = os.path.realpath(self.root)
        for name, target in self.symlinks.items():
            landing = os.path.realpath(self.root / name)
            if landing != real_root and not landing.startswith(real_root + os.sep):
                raise UnsafeArchive(
                    f"{self.archive}: member {name!r}: symlink to {target!r} leads out of the folder "
                    "through other links of the archive; nothing was extracted"
                )

    def restore_folder_modes(self) -> None:
        # Deepest first, and only now: a folder without write permission must not stop its own
        # members from being written.
        for name in sorted(self.folders, key=lambda folder: folder.count("/"), reverse=True):
            member = self.folders[name]
            path = self.root / name
            os.utime(path, (member.mtime, member.mtime))
            os.chmod(path, (member.mode & MODE_MASK) | stat.S_IRWXU)


@contextlib.contextmanager
def _open_decompressed(archive: Path) -> Iterator[BinaryIO]:
    try:
        raw = open(archive, "rb")
    except OSError as error:
        raise ArtifactError(f"cannot read {archive}: {error.strerror}") from error
    with raw:
        try:
            magic = raw.read(6)
            raw.seek(0)
        except OSError as error:
            raise ArtifactError(f"cannot read {archive}: {error.strerror}") from error
        opener = next((opener for prefix, opener in _COMPRESSED_OPENERS if magic.startswith(prefix)), None)
        if opener is None:
            yield raw
        else:
            with opener(raw, "rb") as stream:
                yield stream


def _flush_filesystem(path: Path) -> None:
    """Put every extracted byte on disk before the folder appears under its real name.

    Without this, a power cut soon after a deployment could leave the committed release with
    empty files (delayed allocation). One ``syncfs`` of the release filesystem costs far less than
    an fsync per file; where libc has none, ``sync`` does the same for every filesystem.
    """
    syncfs = getattr(_libc(), "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
    finally:
        os.close(fd)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _write_error(error: OSError, where: Path, archive: Path) -> ArtifactError:
    if error.errno in _NO_SPACE:
        return DiskFull(f"no space left in {where.parent} while extracting {archive}; nothing was extracted")
    return ArtifactError(f"cannot extract {archive} into {where}: {error.strerror or error}")


def _remove_tree(path: Path) -> None:
    def make_writable_and_retry(function, failed_path, _exc_info):
        os.chmod(os.path.dirname(failed_path), stat.S_IRWXU)
        function(failed_path)

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=make_writable_and_retry)
