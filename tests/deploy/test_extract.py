"""extract_archive with real tarballs, hostile ones built here with tarfile.

Every refusal must leave nothing at the destination, no temporary folder beside it, and nothing
anywhere else; its message names the archive and the member.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.deploy.extract import extract_archive
from agent.errors import ArtifactError, DiskFull, UnsafeArchive

REPO_ROOT = Path(__file__).resolve().parents[2]
MTIME = 1_790_000_000
MiB = 1024**2
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda data: data,
    "gz": lambda data: gzip.compress(data, compresslevel=9, mtime=0),
    "bz2": bz2.compress,
    "xz": lzma.compress,
}


def entry(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, link, MTIME
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.uname, info.uid = "vendor-build", 4242  # owners are never trusted
    return info, data


def write_archive(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], compression: str = "gz") -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(COMPRESSORS[compression](buffer.getvalue()))
    return path


def write_zeros_bomb(path: Path, members: list[tuple[str, int]], compression: str = "gz") -> Path:
    """A tarball of zero-filled members, built without ever holding or compressing their bytes.

    gzip, bzip2 and xz all allow a file to be several compressed streams one after another, so a
    compressed MiB of zeros is made once and repeated: a GiB of zeros costs about a MiB of disk.
    """
    compress = COMPRESSORS[compression]
    zero_mib = compress(bytes(MiB))

    def zeros(count: int) -> list[bytes]:
        whole, rest = divmod(count, MiB)
        return [zero_mib] * whole + ([compress(bytes(rest))] if rest else [])

    parts = []
    for name, size in members:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = size, MTIME
        parts.append(compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        parts.extend(zeros(-size % 512 + size))
    parts.extend(zeros(2 * 512))  # end of archive
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.writelines(parts)
    return path


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    folder = tmp_path / "releases"
    folder.mkdir()
    return folder


def left_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# -- what a vendor ships -------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_an_artifact_unpacks_with_its_files_links_and_modes(tmp_path, releases, compression):
    archive = write_archive(tmp_path / f"auth.tar.{compression}".rstrip("."), [
        entry("./", kind=tarfile.DIRTYPE, mode=0o755),
        entry("bin/", kind=tarfile.DIRTYPE, mode=0o755),
        entry("bin/auth-server", b"#!/bin/sh\necho auth\n", mode=0o4755),  # setuid from a careless build
        entry("bin/auth-server-again", kind=tarfile.LNKTYPE, link="bin/auth-server"),
        entry("etc/auth.toml", b"port = 8081\n", mode=0o666),
        entry("auth.toml", kind=tarfile.SYMTYPE, link="etc/auth.toml"),
        entry("bin/etc", kind=tarfile.SYMTYPE, link="../etc"),
        entry("share/", kind=tarfile.DIRTYPE, mode=0o555),
        entry("share/README", b"read me\n", mode=0o444),
        entry("systemd/id1-core-auth.service", b"[Service]\nExecStart=@CURRENT@/bin/auth-server\n"),
    ], compression)
    dest = releases / "1.0.0"

    extract_archive(archive, dest, max_bytes=MiB)

    assert (dest / "bin/auth-server").read_bytes() == b"#!/bin/sh\necho auth\n"
    assert stat.S_IMODE((dest / "bin/auth-server").stat().st_mode) == 0o755  # no setuid
    assert (dest / "bin/auth-server-again").stat().st_ino == (dest / "bin/auth-server").stat().st_ino
    assert stat.S_IMODE((dest / "etc/auth.toml").stat().st_mode) == 0o664  # nobody else may write
    assert os.readlink(dest / "auth.toml") == "etc/auth.toml" and (dest / "auth.toml").read_text() == "port = 8081\n"
    assert (dest / "bin/etc/auth.toml").read_text() == "port = 8081\n"
    assert stat.S_IMODE((dest / "share").stat().st_mode) == 0o755  # r-x for all, and the owner may clean up
    assert stat.S_IMODE((dest / "share/README").stat().st_mode) == 0o444
    assert (dest / "systemd/id1-core-auth.service").stat().st_mtime == MTIME
    assert (dest / "bin/auth-server").stat().st_uid == os.geteuid()  # owners are not taken from the archive
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert left_in(releases) == ["1.0.0"]


def test_a_later_member_of_the_same_name_wins(tmp_path, releases):
    archive = write_archive(tmp_path / "a.tar.gz", [entry("conf", b"old"), entry("conf", b"new")])
    extract_archive(archive, releases / "1.0.0", max_bytes=MiB)
    assert (releases / "1.0.0/conf").read_bytes() == b"new"


# -- hostile archives ----------------------------------------------------------------------------

HOSTILE = {
    "absolute path": ([entry("/etc/cron.d/id1-pwned", b"* * * * * root sh\n")], "/etc/cron.d/id1-pwned", "absolute path"),
    "dot-dot": ([entry("../outside", b"x")], "../outside", "'..' in its path"),
    "dot-dot inside": ([entry("bin/../../outside", b"x")], "bin/../../outside", "'..' in its path"),
    "symlink to /etc": ([entry("etc", kind=tarfile.SYMTYPE, link="/etc")], "etc", "symlink to '/etc' outside the folder"),
    "symlink up and out": (
        [entry("lib/", kind=tarfile.DIRTYPE), entry("lib/up", kind=tarfile.SYMTYPE, link="../../outside")],
        "lib/up", "symlink to '../../outside' leads out of the folder",
    ),
    "symlink chain": (
        # Each link stays inside on its own; 'exit' -> 'here/..' resolves to the folder's parent.
        [entry("here", kind=tarfile.SYMTYPE, link="."), entry("exit", kind=tarfile.SYMTYPE, link="here/..")],
        "exit", "leads out of the folder through other links of the archive",
    ),
    "symlink chain, links made in the other order": (
        [entry("a", kind=tarfile.SYMTYPE, link="b"), entry("b", kind=tarfile.SYMTYPE, link="c/.."),
         entry("c", kind=tarfile.SYMTYPE, link=".")],
        "a", "leads out of the folder through other links of the archive",
    ),
    "file through a symlink": (
        [entry("conf", kind=tarfile.SYMTYPE, link="real-conf"), entry("conf/evil", b"x")],
        "conf/evil", "lies under the symlink 'conf'",
    ),
    "file replacing a symlink": (
        [entry("run", kind=tarfile.SYMTYPE, link="bin/run"), entry("run", b"x")],
        "run", "replaces a symlink of the archive",
    ),
    "hard link to /etc/passwd": ([entry("passwd", kind=tarfile.LNKTYPE, link="/etc/passwd")], "passwd", "hard link to '/etc/passwd' outside the folder"),
    "hard link up and out": ([entry("x", kind=tarfile.LNKTYPE, link="../outside")], "x", "hard link to '../outside' outside the folder"),
    "hard link to a symlink": (
        [entry("l", kind=tarfile.SYMTYPE, link="f"), entry("h", kind=tarfile.LNKTYPE, link="l")],
        "h", "hard link to 'l', which is not a file extracted before it",
    ),
    "NUL in a pax name": ([entry("bin/é\0.sh", b"x")], "bin/é\0.sh", "a NUL character in its name"),
    "character device": ([entry("dev/mem", kind=tarfile.CHRTYPE)], "dev/mem", "device files are not allowed"),
    "block device": ([entry("dev/sda", kind=tarfile.BLKTYPE)], "dev/sda", "device files are not allowed"),
    "FIFO": ([entry("run/pipe", kind=tarfile.FIFOTYPE)], "run/pipe", "FIFOs are not allowed"),
}


@pytest.mark.parametrize("case", HOSTILE.keys())
def test_hostile_archives_are_refused_and_leave_nothing(tmp_path, releases, case):
    entries, member, why = HOSTILE[case]
    archive = write_archive(tmp_path / "archives" / "evil.tar.gz", [entry("ok.txt", b"fine"), *entries])
    before = left_in(tmp_path)

    with pytest.raises(UnsafeArchive) as refused:
        extract_archive(archive, releases / "1.0.0", max_bytes=MiB)

    assert str(refused.value).startswith(f"{archive}: member {member!r}: ")
    assert why in str(refused.value) and str(refused.value).endswith("; nothing was extracted")
    assert left_in(releases) == []  # no destination, no temporary folder
    assert left_in(tmp_path) == before  # nothing landed beside the release folder either


def test_setuid_and_setgid_bits_are_dropped(tmp_path, releases):
    archive = write_archive(tmp_path / "a.tar", [entry("su", b"x", mode=0o6755), entry("tmp/", kind=tarfile.DIRTYPE, mode=0o1777)], "")
    extract_archive(archive, releases / "1.0.0", max_bytes=MiB)
    assert stat.S_IMODE((releases / "1.0.0/su").stat().st_mode) == 0o755
    assert stat.S_IMODE((releases / "1.0.0/tmp").stat().st_mode) == 0o775


# -- bombs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_a_gibibyte_of_zeros_is_refused_at_its_header(tmp_path, releases, compression):
    archive = write_zeros_bomb(tmp_path / f"bomb.tar.{compression}", [("zeros", 1024 * MiB)], compression)
    assert archive.stat().st_size < 2 * MiB  # what the feed would declare

    with pytest.raises(UnsafeArchive) as refused:
        extract_archive(archive, releases / "1.0.0", max_bytes=100 * MiB)
    assert str(refused.value) == (
        f"{archive}: member 'zeros': its 1073741824 bytes take the archive past the 104857600-byte limit on "
        "extracted size (a decompression bomb?); nothing was extracted"
    )
    assert left_in(releases) == []


def test_extraction_stops_at_the_member_that_passes_the_limit(tmp_path, releases):
    archive = write_zeros_bomb(tmp_path / "bomb.tar.gz", [(f"part-{n:02}", 16 * MiB) for n in range(64)])

    with pytest.raises(UnsafeArchive, match="member 'part-06': its 16777216 bytes take the archive past the 104857600-byte limit"):
        extract_archive(archive, releases / "1.0.0", max_bytes=100 * MiB)
    assert left_in(releases) == []


def test_a_bz2_bomb_is_never_inflated_in_memory(tmp_path, releases):
    # tarfile's own stream mode ("r|bz2") inflates each 10 KiB read whole: this 128 MiB of zeros,
    # one bz2 stream of a few hundred bytes, would be in memory (twice) before the first header
    # is seen. Measured in a child process as VmHWM, the peak RSS of its own memory map
    # (ru_maxrss would carry over the parent's from before exec).
    compressor = bz2.BZ2Compressor(9)
    info = tarfile.TarInfo("zeros")
    info.size = 128 * MiB
    parts = [compressor.compress(info.tobuf(format=tarfile.GNU_FORMAT))]
    parts += [compressor.compress(bytes(MiB)) for _ in range(128)]
    archive = tmp_path / "bomb.tar.bz2"
    archive.write_bytes(b"".join(parts) + compressor.compress(bytes(1024)) + compressor.flush())
    assert archive.stat().st_size < 4096

    script = (
        "import re, sys\n"
        "from agent.deploy.extract import extract_archive\n"
        "from agent.errors import UnsafeArchive\n"
        "try:\n"
        "    extract_archive(sys.argv[1], sys.argv[2], max_bytes=1024**2)\n"
        "except UnsafeArchive as refused:\n"
        "    print(refused)\n"
        "status = open('/proc/self/status').read()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', status)[1]) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(archive), str(releases / "1.0.0")],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=True,
    )
    refusal, peak_mib = done.stdout.splitlines()
    assert "member 'zeros': its 134217728 bytes take the archive past the 1048576-byte limit" in refusal
    assert int(peak_mib) < 64, f"peak RSS {peak_mib} MiB while refusing a 128 MiB bomb"
    assert left_in(releases) == []


def test_too_many_entries_are_refused(tmp_path, releases):
    archive = write_archive(tmp_path / "a.tar.gz", [entry(f"f{n}") for n in range(11)])
    with pytest.raises(UnsafeArchive, match="member 'f10': the archive has more than 10 entries"):
        extract_archive(archive, releases / "1.0.0", max_bytes=MiB, max_entries=10)
    assert left_in(releases) == []


# -- failures that are not the archive's intent ----------------------------------------------------


def test_a_truncated_archive_is_named_and_leaves_nothing(tmp_path, releases):
    whole = write_archive(tmp_path / "a.tar.gz", [entry("data", os.urandom(200_000))])
    whole.write_bytes(whole.read_bytes()[:100_000])

    with pytest.raises(ArtifactError, match=f"^{whole} is not a readable tar archive: .*; nothing was extracted$"):
        extract_archive(whole, releases / "1.0.0", max_bytes=MiB)
    assert left_in(releases) == []


def test_not_a_tarball_at_all(tmp_path, releases):
    archive = tmp_path / "index.html"
    archive.write_text("<html>the mirror's error page</html>")
    with pytest.raises(ArtifactError, match="is not a readable tar archive"):
        extract_archive(archive, releases / "1.0.0", max_bytes=MiB)
    assert left_in(releases) == []


def test_an_existing_destination_is_left_alone(tmp_path, releases):
    archive = write_archive(tmp_path / "a.tar.gz", [entry("data", b"new")])
    (releases / "1.0.0").mkdir()
    (releases / "1.0.0/data").write_bytes(b"running")
    with pytest.raises(ArtifactError, match="1.0.0: it already exists"):
        extract_archive(archive, releases / "1.0.0", max_bytes=MiB)
    assert (releases / "1.0.0/data").read_bytes() == b"running"


def test_a_disk_that_fills_up_while_extracting(tmp_path, small_filesystem):
    archive = write_archive(tmp_path / "a.tar.gz", [entry("small", b"x"), entry("large", os.urandom(3 * MiB))])
    releases = small_filesystem / "releases"

    with pytest.raises(DiskFull, match=f"^no space left in {releases} while extracting {archive}; nothing was extracted$"):
        extract_archive(archive, releases / "1.0.0", max_bytes=10 * MiB)
    assert left_in(releases) == []
