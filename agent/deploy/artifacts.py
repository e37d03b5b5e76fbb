"""Verified artifacts, cached by sha256 (DESIGN.md §6, "download").

    cache = ArtifactCache(state_dir / "cache")
    path = cache.fetch(url, sha256, size)      # cache_dir/<sha256>: size and digest as the feed says

A file named by its digest is only ever put in place by ``os.replace`` after its size and sha256
matched and its bytes were fsynced, so a cache hit needs no second look at the bytes. A download
in progress lives in ``<sha256>.partial``: it is hashed and written in the same pass, never grows
beyond the size the signed feed declares (a hostile mirror cannot fill the disk), and is resumed
with an HTTP ``Range`` request after a dropped connection or a restarted agent. A body arriving
slower than the transfer floor (``agent.transfer.TransferPace``: a rate over a window, and a deadline
from the signed size) is abandoned at once, not retried, so that a mirror on a dying link cannot
hold the agent's worker for days; its partial is kept for the next fetch to resume.

Failures, each one line (``agent.errors``):
    ArtifactUnavailable   the network or the server failed, after retries, or was too slow;
                          the partial is kept
    ArtifactMismatch      more bytes than declared, fewer, or another digest; the partial is removed
    DiskFull              too little free space before starting, or ENOSPC while writing
    ArtifactError         anything else: a bad digest argument, an unwritable cache folder
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import queue
import random
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from agent.tls import shared_ssl_context
from agent.transfer import TransferFloor, TransferPace
from agent.deploy import fsync_folder
from agent.errors import ArtifactError, ArtifactMismatch, ArtifactUnavailable, DiskFull

PARTIAL_SUFFIX = ".partial"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MAX_RETRY_AFTER_S = 60.0
"""A server asking us to come back later than this is not waited for inside one fetch."""
READ_SIZE = 1024**2

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class _Transient(Exception):
    """A failure worth another attempt: network trouble, 408, 429, 5xx, a refused resume."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ArtifactCache:
    """Artifacts in ``cache_dir``, each named by its sha256, fetched once and verified as written."""

    def __init__(
        self,
        cache_dir: Path,
        http: httpx.Client | None = None,
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
        min_free_bytes: int = 64 * 1024**2,
        floor: TransferFloor = TransferFloor(),
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.cache_dir = Path(cache_dir)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=DEFAULT_TIMEOUT, verify=shared_ssl_context())
        self.retries = retries
        self.backoff_s = backoff_s
        self.min_free_bytes = min_free_bytes
        self.floor = floor
        self._sleep = sleep
        self._jitter = random.Random()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ArtifactCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the cache -------------------------------------------------------------------------------

    def path_for(self, sha256: str) -> Path:
        return self.cache_dir / _checked_digest(sha256)

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def remove_except(self, keep: Iterable[str]) -> list[str]:
        """Delete cached artifacts and partial downloads of digests not in ``keep``; return their names.

        Files that are not named like cache entries are left alone, and so is a partial download
        that another fetch is writing right now.
        """
        kept = {_checked_digest(digest) for digest in keep}
        try:
            entries = sorted(os.scandir(self.cache_dir), key=lambda entry: entry.name)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise ArtifactError(f"cannot list the artifact cache {self.cache_dir}: {error.strerror}") from error
        removed = []
        for entry in entries:
            partial = entry.name.endswith(PARTIAL_SUFFIX)
            digest = entry.name[: -len(PARTIAL_SUFFIX)] if partial else entry.name
            if not _SHA256_HEX.fullmatch(digest) or digest in kept:
                continue
            if partial and _is_being_written(entry.path):
                continue
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as error:
                raise ArtifactError(f"cannot remove {entry.path} from the artifact cache: {error.strerror}") from error
            removed.append(entry.name)
        return removed

    # -- fetching --------------------------------------------------------------------------------

    def fetch(self, url: str, sha256: str, size: int) -> Path:
        """The verified file for ``sha256``, downloaded from ``url`` unless it is already cached."""
        digest = _checked_digest(sha256)
        if size < 0:
            raise ArtifactError(f"{url}: a negative artifact size ({size}) cannot be fetched")
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https", "file"):
            raise ArtifactError(f"{url}: unsupported URL scheme {scheme!r} (http, https or file only)")
        final = self.cache_dir / digest
        # A cached file is hashed again before use: it may be months old (a rollback), and a
        # disk or a hand can change bytes without changing the size.
        if _cached_size(final) == size and _file_sha256(final) == digest:
            return final
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            final.unlink(missing_ok=True)  # a wrong-sized or changed entry was never ours to trust
        except OSError as error:
            raise ArtifactError(f"cannot prepare the artifact cache {self.cache_dir}: {error.strerror}") from error

        partial = _PartialDownload(self.cache_dir / f"{digest}{PARTIAL_SUFFIX}", url, size)
        try:
            if partial.length > size:
                partial.restart()
            if partial.length < size:
                self._check_free_space(url, size - partial.length)
                if scheme == "file":
                    _copy_local_file(url, size, partial)
                else:
                    self._download_with_retries(url, size, partial)
            actual = partial.hexdigest()
            if actual != digest:
                partial.discard()
                raise ArtifactMismatch(
                    f"{url}: sha256 mismatch: the feed declares {digest}, the download has {actual}; "
                    "the download was removed"
                )
            partial.commit(final)
        finally:
            partial.close(keep_if_empty=False)
        return final

    def _check_free_space(self, url: str, remaining: int) -> None:
        try:
            info = os.statvfs(self.cache_dir)
        except OSError as error:
            raise ArtifactError(f"cannot check free space in {self.cache_dir}: {error.strerror}") from error
        free = info.f_bavail * info.f_frsize
        needed = remaining + self.min_free_bytes
        if free < needed:
            raise DiskFull(
                f"not enough free space in {self.cache_dir} to download {url}: {_mib(free)} free, "
                f"{_mib(needed)} needed ({_mib(remaining)} to download + {_mib(self.min_free_bytes)} kept free)"
            )

    def _download_with_retries(self, url: str, size: int, partial: _PartialDownload) -> None:
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                self._download_once(url, size, partial)
                return
            except _Transient as failure:
                if failure.retry_after is not None and failure.retry_after > MAX_RETRY_AFTER_S:
                    raise ArtifactUnavailable(
                        f"cannot download {url}: {failure.reason}; the server asks to retry after "
                        f"{failure.retry_after:g} s, gave up after {attempt} attempt{_plural(attempt)}"
                    ) from failure
                if attempt == attempts:
                    raise ArtifactUnavailable(
                        f"cannot download {url}: {failure.reason}; gave up after {attempt} attempt{_plural(attempt)}"
                    ) from failure
                self._sleep(self._backoff(attempt, failure.retry_after))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # "Equal jitter": half the exponential delay for sure, the other half at random, so that
        # hosts that lost the same mirror at the same moment do not come back in step.
        ceiling = self.backoff_s * 2 ** (attempt - 1)
        delay = ceiling / 2 + self._jitter.uniform(0, ceiling / 2)
        return max(delay, retry_after or 0.0)

    def _download_once(self, url: str, size: int, partial: _PartialDownload) -> None:
        offset = partial.length
        headers = {"Accept-Encoding": "identity"}  # the digest is over the file's own bytes
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with self._http.stream("GET", url, headers=headers, follow_redirects=True) as response:
                announced = _accept_response(url, size, offset, response, partial)
                left = size - partial.length
                pace = TransferPace(self.floor, size=left, expected=left)
                write, too_slow = partial.write, pace.too_slow
                for chunk in response.iter_raw():
                    left -= len(chunk)
                    if left < 0:
                        partial.discard()
                        raise ArtifactMismatch(_too_large(url, size))
                    write(chunk)
                    if (slow := too_slow(len(chunk))) is not None:
                        raise ArtifactUnavailable(
                            f"cannot download {url}: too slow: {slow} ([download] in the agent config); abandoned "
                            f"after {partial.length} of {size} bytes, kept for the next attempt to resume"
                        )
        except httpx.TimeoutException as error:
            raise _Transient(f"timed out after {partial.length} of {size} bytes ({type(error).__name__})") from error
        except httpx.ConnectError as error:
            raise _Transient(f"cannot connect ({error})") from error
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as error:
            raise _Transient(f"the connection broke after {partial.length} of {size} bytes ({error})") from error
        except httpx.TooManyRedirects as error:
            raise ArtifactUnavailable(f"cannot download {url}: {error}") from error
        except httpx.TransportError as error:
            raise _Transient(f"{type(error).__name__}: {error}") from error
        if partial.length < size:
            if announced is not None:
                # The server said how much it would send and sent exactly that: it has less.
                partial.discard()
                raise ArtifactMismatch(
                    f"{url} sent {partial.length} of the {size} bytes the feed declares; the download was removed"
                )
            raise _Transient(f"the body ended after {partial.length} of {size} bytes")


def _accept_response(
    url: str, size: int, offset: int, response: httpx.Response, partial: _PartialDownload
) -> int | None:
    """Check the status and headers before any body byte is read; return the announced length."""
    status = response.status_code
    if status == 206 and offset:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None or int(match[1]) != offset:
            partial.restart()
            raise _Transient(f"the server answered a resume at byte {offset} with another range")
        if match[3] != "*" and int(match[3]) > size:
            partial.discard()
            raise ArtifactMismatch(_too_large(url, size, announced=int(match[3])))
    elif status == 200:
        if offset:  # the server ignores ranges: the whole file again, from byte 0
            partial.restart()
    elif status == 416:
        partial.restart()
        raise _Transient(f"the server cannot resume at byte {offset} (HTTP 416), starting over")
    elif status in (408, 429) or status >= 500:
        raise _Transient(f"HTTP {status} {response.reason_phrase}", retry_after=_retry_after(response))
    else:
        raise ArtifactUnavailable(f"cannot download {url}: HTTP {status} {response.reason_phrase}")

    length = response.headers.get("Content-Length")
    if length is None or not length.isdigit():
        return None
    announced = int(length)
    if partial.length + announced > size:
        partial.discard()
        raise ArtifactMismatch(_too_large(url, size, announced=partial.length + announced))
    return announced


def _copy_local_file(url: str, size: int, partial: _PartialDownload) -> None:
    """A ``file://`` URL: the same size cap, resume and digest as a download, without the network."""
    path = unquote(urlsplit(url).path)
    try:
        with open(path, "rb", buffering=0) as source:
            source.seek(partial.length)
            while partial.length < size and (data := source.read(min(READ_SIZE, size - partial.length))):
                partial.write(data)
            extra = source.read(1)
    except OSError as error:
        raise ArtifactUnavailable(f"cannot read {url}: {error.strerror or error}") from error
    if extra:
        partial.discard()
        raise ArtifactMismatch(_too_large(url, size))
    if partial.length < size:
        partial.discard()
        raise ArtifactMismatch(f"{url} holds {partial.length} of the {size} bytes the feed declares")


class _PartialDownload:
    """``<sha256>.partial``: bytes hashed as they are written, so verifying costs no second read.

    An exclusive ``flock`` keeps a second fetch of the same artifact (and garbage collection)
    from writing into or removing a file that is being written.
    """

    def __init__(self, path: Path, url: str, size: int):
        self.path = path
        self.url = url
        self.size = size
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as error:
            if error.errno in _NO_SPACE:
                raise DiskFull(f"no space left in {path.parent} to start downloading {url}") from error
            raise ArtifactError(f"cannot write {path}: {error.strerror}") from error
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise ArtifactError(f"{url} is already being downloaded into {path} by another fetch") from None
        except OSError:
            pass  # a filesystem without flock (ENOLCK): nothing guards against a second fetch, nothing else changes
        self.length = 0
        self._hasher = _BackgroundSha256(self._hash_existing_bytes())

    def _hash_existing_bytes(self) -> hashlib._Hash:
        digest = hashlib.sha256()
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        try:
            while count := os.readv(self._fd, [buffer]):
                digest.update(view[:count])
                self.length += count
        except OSError as error:
            self.close()
            raise ArtifactError(f"cannot read the partial download {self.path}: {error.strerror}") from error
        return digest

    def write(self, data: bytes) -> None:
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # short writes: a signal, or the disk filling up
                written += os.write(self._fd, memoryview(data)[written:])
        except OSError as error:
            self._fail(error, "writing")
        self._hasher.update(data)
        self.length += len(data)

    def restart(self) -> None:
        try:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
        except OSError as error:
            self._fail(error, "truncating")
        self._hasher.stop()
        self._hasher = _BackgroundSha256(hashlib.sha256())
        self.length = 0

    def hexdigest(self) -> str:
        """The digest of every byte written; no more may be written after asking."""
        return self._hasher.finish().hexdigest()

    def commit(self, final: Path) -> None:
        """Durably put the verified bytes in place under their digest."""
        try:
            os.fsync(self._fd)
            os.replace(self.path, final)
            fsync_folder(final.parent)
        except OSError as error:
            self._fail(error, "saving")

    def discard(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as error:
            raise ArtifactError(f"cannot remove the partial download {self.path}: {error.strerror}") from error

    def close(self, *, keep_if_empty: bool = True) -> None:
        """Close the file; with ``keep_if_empty=False`` an empty one (nothing to resume) goes too."""
        if self._fd is None:
            return
        if hasattr(self, "_hasher"):
            self._hasher.stop()
        os.close(self._fd)
        self._fd = None
        if not keep_if_empty and self.length == 0:
            self.path.unlink(missing_ok=True)

    def _fail(self, error: OSError, doing: str) -> None:
        self.discard()
        if error.errno in _NO_SPACE:
            raise DiskFull(
                f"no space left in {self.path.parent} while downloading {self.url} "
                f"({self.length} of {self.size} bytes written); the partial download was removed"
            ) from error
        raise ArtifactError(f"{doing} {self.path} failed: {error.strerror or error}") from error


class _BackgroundSha256:
    """sha256 on another core, fed the written chunks about a MiB at a time.

    hashlib releases the GIL while it hashes, so the digest is computed while the next bytes are
    received and written, instead of after them. Measured on a two-core host (256 MiB, loopback):
    0.64 s → 0.55 s idle, 0.94 s → 0.84 s with both cores busy elsewhere, no change with one busy.
    The queue is short, so a slow CPU holds the download back rather than piling it up in memory.
    Chunks must be ``bytes`` (never a buffer that is reused).
    """

    BATCH_BYTES = 1024**2
    QUEUE_DEPTH = 8

    def __init__(self, digest: hashlib._Hash):
        self._digest = digest
        self._batch: list[bytes] = []
        self._batched = 0
        self._error: BaseException | None = None
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=self.QUEUE_DEPTH)
        self._thread: threading.Thread | None = threading.Thread(target=self._run, name="artifact-sha256", daemon=True)
        self._thread.start()

    def update(self, data: bytes) -> None:
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= self.BATCH_BYTES:
            self._queue.put(self._batch)
            self._batch, self._batched = [], 0

    def finish(self) -> hashlib._Hash:
        """The digest of everything handed over; the thread is gone afterwards."""
        self.stop()
        if self._error is not None:
            raise self._error
        return self._digest

    def stop(self) -> None:
        if self._thread is not None:
            if self._batch:
                self._queue.put(self._batch)
                self._batch, self._batched = [], 0
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking batches, so that the writer is never left blocked
            try:
                for data in batch:
                    self._digest.update(data)
            except BaseException as error:  # noqa: BLE001 - re-raised in the writer's thread by finish()
                self._error = error


def _checked_digest(sha256: str) -> str:
    digest = sha256.lower()
    if not _SHA256_HEX.fullmatch(digest):
        raise ArtifactError(f"not a sha256 digest (64 hex digits): {sha256!r}")
    return digest


def _file_sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _cached_size(path: Path) -> int | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _is_being_written(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # no flock on this filesystem: it cannot tell, and neither can we
    finally:
        os.close(fd)
    return False


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


def _too_large(url: str, size: int, *, announced: int | None = None) -> str:
    what = f"{url} sent more than the {size} bytes the feed declares"
    if announced is not None:
        what += f" (it announced {announced})"
    return f"{what}; refused"


def _mib(count: int) -> str:
    return f"{count / 1024**2:.1f} MiB"


def _plural(count: int) -> str:
    return "" if count == 1 else "s"
