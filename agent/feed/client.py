"""The feed client: fetch the signed feed over HTTP(S), accept it under the serial rules, keep it.

``FeedClient.check(now)`` is one poll (DESIGN.md §4):

1. a conditional GET of the feed URL with the ETag and Last-Modified of the last accepted feed.
   An unchanged feed costs one request answered 304 and no parsing: the catalog accepted earlier
   is kept in memory (after a restart it is read from ``feed_dir`` once). A Last-Modified is
   only kept when the answer's Date is at least a second later: within its second another upload
   can follow with the same Last-Modified (a weak validator, RFC 9110 §8.8.2.2), and
   If-Modified-Since would get a 304 for a feed never seen; without an ETag the next poll is
   then a full GET;
2. otherwise the body is streamed and cut off past ``max_bytes`` (FeedTooLarge), or abandoned
   when it arrives slower than the transfer floor (FeedUnavailable, ``agent.transfer.TransferPace``;
   not retried: a retry would hold the worker as long again), and ``<url>.minisig`` is fetched
   (capped at ``SIGNATURE_MAX_BYTES``, the same floor);
3. ``verify_feed`` checks signature, format and expiry, then the serial rules: a lower serial
   than the accepted one is a rollback (FeedReplayed); the same serial must carry the same bytes
   (FeedReplayed otherwise; identical bytes are "accepted, unchanged"). A lower serial than
   ``min_serial`` is refused too: the caller's own record of the highest serial it has used
   (the daemon's state store), so that losing ``feed_dir`` does not reopen the door to an older
   feed. The store keeps no digest, so that serial itself is let in again;
4. the accepted feed is stored durably in ``feed_dir`` and only then replaces the one in memory.

Whatever goes wrong, the last accepted feed stays in force, in memory and on disk.

Network: connection failures, timeouts, broken connections, 5xx, 408 and 429 are retried with
exponential backoff and full jitter, ``sleep(rng() * backoff_s * 2**attempt)``; ``retries`` is
the number of attempts in all. Any other answer (404, 403, …) fails at once. Redirects are
followed, at most ``MAX_REDIRECTS``.

On disk (``feed_dir``, ``/var/lib/id1/feed`` on a host)::

    accepted/0000000042-<sha256[:12]>-<random>/feed.json          the feed's exact bytes
                                              /feed.json.minisig  its signature, as served
                                              /feed.meta.json     etag, last_modified, sha256,
                                                                  serial, fetched_at, url
    current            -> accepted/0000000042-…   the accepted feed: the one commit point
    feed.json          -> current/feed.json        fixed links, so that operators and
    feed.json.minisig  -> current/feed.json.minisig   ``id1 feed verify`` find the accepted
    feed.meta.json     -> current/feed.meta.json      feed where DESIGN.md §6 puts it

Crash safety: a new feed is written into a fresh folder under ``accepted/``, every file and the
folder fsynced, and only then the ``current`` link is replaced (a new link renamed over it, then
``feed_dir`` fsynced). A crash before that rename leaves ``current`` on the previous folder,
which nothing touched; a crash after it finds the new folder complete. So ``current`` always
names a complete feed, signature and meta written together; folders that ``current`` does not
name are leftovers and are removed after the next successful switch. When a feed comes back with
the same bytes but new validators, only ``feed.meta.json`` is replaced in place (temp file,
fsync, rename): either version of it describes the same feed.

Loading never trusts the disk: the stored feed is verified against the trusted keys again and
its sha256 recomputed; a stored feed that fails (edited on disk, signed by a key no longer
trusted, or older than ``min_serial``: an old copy put back) is refused and reported by
``last_accepted`` and never used. Its ``feed.meta.json`` still holds the serial, so a refused
copy does not reopen the door to a rolled-back feed: the next fetched feed must not be older
than it, and replaces it.

Expiry: ``verify_feed`` refuses an expired feed at fetch time. A feed accepted earlier that has
since expired is still the reference for the serial rules, but ``last_accepted(now)`` (and a
``check`` answered 304) raise ``FeedExpired`` saying so: planning from a stale feed could hide
newer fixes, and the caller decides what to do about it.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from agent.tls import shared_ssl_context
from agent.transfer import TransferFloor, TransferPace
from agent.errors import (
    FeedExpired,
    FeedRejected,
    FeedReplayed,
    FeedTooLarge,
    FeedUnavailable,
    SignatureError,
    StoreError,
)
from agent.feed.catalog import Catalog, parse_feed
from agent.files import fsync_folder
from agent.feed.signature import PublicKey, verify
from agent.feed.verify import SIGNATURE_SUFFIX, read_feed_files, verify_feed

FEED_NAME = "feed.json"
SIGNATURE_NAME = FEED_NAME + SIGNATURE_SUFFIX
META_NAME = "feed.meta.json"
CURRENT_LINK = "current"
ACCEPTED_FOLDER = "accepted"
SIGNATURE_MAX_BYTES = 64 * 1024
MAX_REDIRECTS = 5

# Worth another attempt: the server or the path to it may recover. Anything else will not.
_RETRYABLE_STATUS = frozenset({408, 429})
_RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)


@dataclass(frozen=True, slots=True)
class FeedCheck:
    """The outcome of one poll: the catalog in force and how it was reached."""

    catalog: Catalog
    changed: bool
    """A feed other than the one in force was accepted (and stored)."""
    not_modified: bool
    """The server answered 304: nothing was downloaded, parsed or verified."""
    serial: int


@dataclass(frozen=True, slots=True)
class _Accepted:
    catalog: Catalog
    sha256: str
    etag: str | None
    last_modified: str | None
    folder: Path


@dataclass(frozen=True, slots=True)
class _Reference:
    """What the serial rules compare against: the accepted feed, or the meta of a refused copy."""

    serial: int
    sha256: str


@dataclass(frozen=True, slots=True)
class _Download:
    body: bytes
    etag: str | None
    last_modified: str | None


class _NotModified(Exception):
    pass


class _Missing(Exception):
    pass


class FeedClient:
    """Polls one feed URL and keeps the last accepted feed in ``feed_dir``.

    Thread-safe: polls run one at a time, and ``last_accepted`` never waits for one.
    """

    def __init__(
        self,
        url: str,
        feed_dir: Path,
        trusted_keys: Sequence[PublicKey],
        *,
        max_bytes: int,
        http: httpx.Client | None = None,
        retries: int = 3,
        backoff_s: float = 1.0,
        timeout_s: float = 30.0,
        floor: TransferFloor = TransferFloor(),
        min_serial: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ):
        """``floor``: the slowest transfer waited for; ``min_serial``: the highest serial the
        caller knows was accepted before (its own record, independent of ``feed_dir``)."""
        if retries < 1:
            raise ValueError("retries counts attempts: at least 1")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as error:
            raise FeedUnavailable(f"feed.url {url!r} is not a URL: {error}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise FeedUnavailable(f"feed.url {url!r} is not an http(s) URL")
        self.url = url
        self.signature_url = url + SIGNATURE_SUFFIX
        self.feed_dir = Path(feed_dir)
        self._trusted_keys = tuple(trusted_keys)
        self._max_bytes = max_bytes
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(max_redirects=MAX_REDIRECTS, verify=shared_ssl_context())
        self._retries = retries
        self._backoff_s = backoff_s
        self._timeout = httpx.Timeout(timeout_s)
        self._floor = floor
        self._min_serial = min_serial
        self._sleep = sleep
        self._rng = rng
        # One poll at a time; readers never wait for a poll (its retries can take minutes): they
        # read ``_accepted``, which a poll replaces in one assignment once the feed is stored.
        self._poll_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._loaded = False
        self._accepted: _Accepted | None = None
        self._stored_problem: Exception | None = None
        self._refused_reference: _Reference | None = None

    # ── public ───────────────────────────────────────────────────────────────────────────────

    def check(self, now: datetime) -> FeedCheck:
        """Poll the feed once; raises FeedUnavailable, FeedRejected (subclasses) or StoreError.

        On any error nothing changes: memory and ``feed_dir`` keep the last accepted feed.
        """
        with self._poll_lock:
            self._load_once()
            accepted = self._accepted
            try:
                download = self._download_feed(accepted)
            except _NotModified:
                assert accepted is not None
                self._refuse_if_expired(accepted, now)
                return FeedCheck(accepted.catalog, changed=False, not_modified=True, serial=accepted.catalog.serial)
            signature = self._download_signature()
            signature_text = None if signature is None else signature.decode("utf-8", errors="surrogateescape")
            catalog = verify_feed(
                download.body, signature_text, self._trusted_keys, now=now, max_bytes=self._max_bytes, source=self.url
            )
            sha256 = hashlib.sha256(download.body).hexdigest()
            self._enforce_serial_rules(catalog.serial, sha256)
            meta = {
                "serial": catalog.serial,
                "sha256": sha256,
                "etag": download.etag,
                "last_modified": download.last_modified,
                "fetched_at": now.isoformat(),
                "url": self.url,
            }
            if accepted is not None and accepted.sha256 == sha256:
                # The same feed again (a re-upload, another mirror): keep it, remember the new
                # validators so that the next poll is a 304 again.
                if (accepted.etag, accepted.last_modified) != (download.etag, download.last_modified):
                    self._guard_store(lambda: self._replace_meta(accepted.folder, meta))
                    self._accepted = _Accepted(
                        accepted.catalog, sha256, download.etag, download.last_modified, accepted.folder
                    )
                return FeedCheck(accepted.catalog, changed=False, not_modified=False, serial=catalog.serial)
            assert signature is not None  # verify_feed refuses an unsigned feed
            folder = self._guard_store(lambda: self._store(download.body, signature, meta))
            self._accepted = _Accepted(catalog, sha256, download.etag, download.last_modified, folder)
            self._stored_problem = self._refused_reference = None
            return FeedCheck(catalog, changed=True, not_modified=False, serial=catalog.serial)

    def last_accepted(self, now: datetime) -> Catalog | None:
        """The feed in force, or None if none was ever accepted.

        Raises the reason when the stored feed was refused on load (FeedRejected: altered on
        disk, or no longer signed by a trusted key; FeedUnavailable: unreadable), and
        FeedExpired when the kept feed has expired since it was accepted.
        """
        self._load_once()
        accepted, problem = self._accepted, self._stored_problem
        if accepted is None:
            if problem is not None:
                raise problem.with_traceback(None)
            return None
        self._refuse_if_expired(accepted, now)
        return accepted.catalog

    def resolve_url(self, relative: str) -> str:
        """An artifact URL from the feed, resolved against the configured feed URL."""
        return str(httpx.URL(self.url).join(relative))

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> FeedClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ── rules ────────────────────────────────────────────────────────────────────────────────

    def _enforce_serial_rules(self, serial: int, sha256: str) -> None:
        if self._min_serial is not None and serial < self._min_serial:
            raise FeedReplayed(f"{self.url}: {self._below_floor(serial)}; {self._in_force()}")
        reference = self._reference()
        if reference is None:
            return
        if serial < reference.serial:
            raise FeedReplayed(
                f"{self.url}: feed serial {serial} is lower than the accepted {reference.serial}: "
                f"refusing a replayed or rolled-back feed; {self._in_force()}"
            )
        if serial == reference.serial and sha256 != reference.sha256:
            raise FeedReplayed(
                f"{self.url}: feed serial {serial} is the accepted serial but its bytes differ "
                f"(sha256 {sha256[:12]}…, accepted {reference.sha256[:12]}…): a changed feed needs a "
                f"new serial, so this is refusing a replayed or altered feed; {self._in_force()}"
            )

    def _below_floor(self, serial: int) -> str:
        return (
            f"feed serial {serial} is lower than serial {self._min_serial}, which the agent's state records "
            f"as used before (even if {self.feed_dir} no longer holds it): refusing a replayed or rolled-back feed"
        )

    def _reference(self) -> _Reference | None:
        if self._accepted is not None:
            return _Reference(self._accepted.catalog.serial, self._accepted.sha256)
        return self._refused_reference

    def _refuse_if_expired(self, accepted: _Accepted, now: datetime) -> None:
        expires_at = accepted.catalog.feed.expires_at
        if expires_at <= now:
            raise FeedExpired(
                f"the last accepted feed (serial {accepted.catalog.serial}, {accepted.folder / FEED_NAME}) "
                f"expired at {expires_at.isoformat()} and no newer feed has been accepted since; "
                f"check that the vendor still publishes {self.url}"
            )

    def _in_force(self) -> str:
        if self._accepted is not None:
            return f"the last accepted feed (serial {self._accepted.catalog.serial}) stays in force"
        if self._stored_problem is not None:
            return "no feed is in force (the stored one was refused on load)"
        return "no feed has been accepted yet"

    # ── network ──────────────────────────────────────────────────────────────────────────────

    def _download_feed(self, accepted: _Accepted | None) -> _Download:
        headers = {}
        if accepted is not None and accepted.etag is not None:
            headers["If-None-Match"] = accepted.etag
        if accepted is not None and accepted.last_modified is not None:
            headers["If-Modified-Since"] = accepted.last_modified

        def too_large(read: int | None) -> FeedRejected:
            how = "refused unread" if read is None else f"download stopped after {read} bytes"
            return FeedTooLarge(
                f"{self.url}: the feed is larger than the {self._max_bytes}-byte cap (feed.max_bytes); "
                f"{how}; {self._in_force()}"
            )

        try:
            return self._get(self.url, "feed", headers, self._max_bytes, too_large, conditional=accepted is not None)
        except _Missing as missing:
            raise FeedUnavailable(str(missing)) from None

    def _download_signature(self) -> bytes | None:
        def too_large(read: int | None) -> FeedRejected:
            return SignatureError(
                f"{self.signature_url}: larger than the {SIGNATURE_MAX_BYTES}-byte cap for a signature; "
                f"this is not a minisign signature; {self._in_force()}"
            )

        try:
            return self._get(self.signature_url, "feed signature", {}, SIGNATURE_MAX_BYTES, too_large).body
        except _Missing:
            return None  # verify_feed refuses an unsigned feed, with its own message

    def _get(
        self,
        url: str,
        what: str,
        headers: dict[str, str],
        cap: int,
        too_large: Callable[[int | None], FeedRejected],
        *,
        conditional: bool = False,
    ) -> _Download:
        """One GET with retries; raises _NotModified, _Missing, FeedUnavailable or too_large."""
        failure = ""
        for attempt in range(self._retries):
            if attempt:
                self._sleep(self._rng() * self._backoff_s * 2 ** (attempt - 1))
            try:
                with self._http.stream(
                    "GET", url, headers=headers, follow_redirects=True, timeout=self._timeout
                ) as response:
                    status = response.status_code
                    if status == 200:
                        body = self._read_body(response, url, what, cap, too_large)
                        return _Download(body, response.headers.get("etag"), _strong_last_modified(response.headers))
                    if status == 304 and conditional:
                        _drain(response)  # read to its end, the connection serves the next poll
                        raise _NotModified
                    failure = f"HTTP {status} {response.reason_phrase}".rstrip()
                    if status >= 500 or status in _RETRYABLE_STATUS:
                        continue
                    if status in (404, 410):
                        raise _Missing(
                            f"cannot fetch the {what} {url}: {failure}: nothing is published there "
                            f"(check feed.url in the agent config); {self._in_force()}"
                        )
                    hint = "the server refuses access" if status in (401, 403) else "an answer a feed server does not give"
                    raise FeedUnavailable(f"cannot fetch the {what} {url}: {failure} ({hint}); {self._in_force()}")
            except _RETRYABLE_ERRORS as error:
                failure = _describe(error, self._timeout)
            except httpx.TooManyRedirects:
                raise FeedUnavailable(
                    f"cannot fetch the {what} {url}: more than {MAX_REDIRECTS} redirects; {self._in_force()}"
                ) from None
            except httpx.HTTPError as error:
                raise FeedUnavailable(f"cannot fetch the {what} {url}: {_describe(error, self._timeout)}; {self._in_force()}") from None
        attempts = f"{self._retries} attempt{'s' if self._retries != 1 else ''}"
        raise FeedUnavailable(f"cannot fetch the {what} {url}: {failure} (after {attempts}); {self._in_force()}")

    def _read_body(
        self, response: httpx.Response, url: str, what: str, cap: int, too_large: Callable[[int | None], FeedRejected]
    ) -> bytes:
        """The body, never holding more than ``cap`` bytes plus the chunk that crossed it, nor
        waiting on a server slower than the transfer floor."""
        declared = response.headers.get("content-length", "")
        announced = int(declared) if declared.isdigit() and "content-encoding" not in response.headers else None
        if announced is not None and announced > cap:
            raise too_large(None)
        pace = TransferPace(self._floor, size=cap, expected=announced)
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > cap:
                raise too_large(len(body))
            if (slow := pace.too_slow(len(chunk))) is not None:
                raise FeedUnavailable(
                    f"cannot fetch the {what} {url}: too slow: {slow} ([download] in the agent config); "
                    f"abandoned after {len(body)} bytes; {self._in_force()}"
                )
        return bytes(body)

    # ── disk ─────────────────────────────────────────────────────────────────────────────────

    def _load_once(self) -> None:
        with self._load_lock:
            if not self._loaded:
                self._load_stored()
                self._loaded = True

    def _load_stored(self) -> None:
        try:
            folder = self._current_folder()
        except OSError as error:
            self._stored_problem = StoreError(f"cannot read {self.feed_dir / CURRENT_LINK}: {error.strerror or error}")
            return
        if folder is None:
            return
        meta = _read_meta(folder / META_NAME)
        try:
            data, signature_text = read_feed_files(folder / FEED_NAME, self._max_bytes)
            catalog = self._verify_stored(folder / FEED_NAME, data, signature_text)
            if self._min_serial is not None and catalog.serial < self._min_serial:
                raise FeedReplayed(f"stored feed {folder / FEED_NAME} is not used: {self._below_floor(catalog.serial)}")
        except (FeedRejected, FeedUnavailable) as problem:
            self._stored_problem = problem
            if isinstance(meta.get("serial"), int) and isinstance(meta.get("sha256"), str):
                self._refused_reference = _Reference(meta["serial"], meta["sha256"])
            return
        sha256 = hashlib.sha256(data).hexdigest()
        # The validators are only worth sending if they describe these very bytes.
        trusted_meta = meta if meta.get("sha256") == sha256 else {}
        self._accepted = _Accepted(
            catalog, sha256, _text_or_none(trusted_meta.get("etag")), _text_or_none(trusted_meta.get("last_modified")), folder
        )

    def _verify_stored(self, path: Path, data: bytes, signature_text: str | None) -> Catalog:
        """Signature and format of the stored feed; its expiry is ``last_accepted``'s business."""
        source = f"stored feed {path}"
        if len(data) > self._max_bytes:
            raise FeedTooLarge(f"{source} is larger than the {self._max_bytes}-byte cap (feed.max_bytes); not used")
        if signature_text is None:
            raise SignatureError(f"{source}: its signature {path.name}{SIGNATURE_SUFFIX} is missing; not used")
        try:
            verify(data, signature_text, self._trusted_keys, subject=path.name)
        except SignatureError as error:
            raise SignatureError(
                f"{source} is refused and not used: {error} "
                "(the next feed fetched that is not older replaces it)"
            ) from None
        return parse_feed(data, source)

    def _current_folder(self) -> Path | None:
        link = self.feed_dir / CURRENT_LINK
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            return None
        return self.feed_dir / target

    def _guard_store(self, write: Callable[[], Any]) -> Any:
        try:
            return write()
        except OSError as error:
            where = error.filename or self.feed_dir
            raise StoreError(
                f"cannot store the accepted feed in {self.feed_dir}: {where}: {error.strerror or error}; "
                f"{self._in_force()}"
            ) from None

    def _store(self, data: bytes, signature: bytes, meta: dict[str, Any]) -> Path:
        accepted_root = self.feed_dir / ACCEPTED_FOLDER
        if not accepted_root.is_dir():
            accepted_root.mkdir(parents=True, exist_ok=True)
            fsync_folder(self.feed_dir.parent)
            fsync_folder(self.feed_dir)
        self._ensure_fixed_links()
        folder = Path(tempfile.mkdtemp(prefix=f"{meta['serial']:010d}-{meta['sha256'][:12]}-", dir=accepted_root))
        os.chmod(folder, 0o755)
        _write_new_file(folder / FEED_NAME, data)
        _write_new_file(folder / SIGNATURE_NAME, signature)
        _write_new_file(folder / META_NAME, _meta_bytes(meta))
        fsync_folder(folder)
        fsync_folder(accepted_root)
        self._switch_current_link(folder)
        self._remove_leftovers(keep=folder)
        return folder

    def _switch_current_link(self, folder: Path) -> None:
        """The commit point: ``current`` names the new folder, atomically and durably."""
        _replace_symlink(self.feed_dir / CURRENT_LINK, f"{ACCEPTED_FOLDER}/{folder.name}")
        fsync_folder(self.feed_dir)

    def _ensure_fixed_links(self) -> None:
        changed = False
        for name in (FEED_NAME, SIGNATURE_NAME, META_NAME):
            link, target = self.feed_dir / name, f"{CURRENT_LINK}/{name}"
            try:
                if os.readlink(link) == target:
                    continue
            except OSError:
                pass  # missing, or a plain file: replace it with the link
            _replace_symlink(link, target)
            changed = True
        if changed:
            fsync_folder(self.feed_dir)

    def _replace_meta(self, folder: Path, meta: dict[str, Any]) -> None:
        handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{META_NAME}.")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(_meta_bytes(meta))
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, folder / META_NAME)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        fsync_folder(folder)

    def _remove_leftovers(self, keep: Path) -> None:
        # Best effort: a leftover costs disk space, never correctness (only ``current`` is read).
        for entry in (self.feed_dir / ACCEPTED_FOLDER).iterdir():
            if entry.name != keep.name:
                shutil.rmtree(entry, ignore_errors=True)
        for entry in self.feed_dir.glob(".*.link-*"):
            entry.unlink(missing_ok=True)


# ── helpers ──────────────────────────────────────────────────────────────────────────────────


def _strong_last_modified(headers: httpx.Headers) -> str | None:
    """Last-Modified when it can validate a later request: at least a second older than the
    answer's Date (RFC 9110 §8.8.2.2). Otherwise the file may change again within that second
    and keep the same Last-Modified, so If-Modified-Since would be answered 304 for it."""
    value = headers.get("last-modified")
    if value is None:
        return None
    try:
        age = email.utils.parsedate_to_datetime(headers.get("date", "")) - email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):  # missing or malformed dates, or one with a zone and one without
        return None
    return value if age.total_seconds() >= 1 else None


def _describe(error: httpx.HTTPError, timeout: httpx.Timeout) -> str:
    detail = str(error) or type(error).__name__
    if isinstance(error, httpx.ConnectTimeout):
        return f"connecting timed out after {timeout.connect}s"
    if isinstance(error, httpx.ReadTimeout):
        return f"the server sent nothing for {timeout.read}s"
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__}, {timeout.read}s)"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect ({detail})"
    if isinstance(error, httpx.RemoteProtocolError):
        return f"the server broke off the connection ({detail})"
    return f"{type(error).__name__}: {detail}"


def _read_meta(path: Path) -> dict[str, Any]:
    """The stored meta, or {} when it is missing or unreadable: it only saves a download."""
    try:
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _meta_bytes(meta: dict[str, Any]) -> bytes:
    return (json.dumps(meta, indent=2) + "\n").encode("utf-8")


def _write_new_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _replace_symlink(link: Path, target: str) -> None:
    temp = link.with_name(f".{link.name}.link-{os.urandom(6).hex()}")
    os.symlink(target, temp)
    try:
        os.replace(temp, link)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _drain(response: httpx.Response, limit: int = 64 * 1024) -> None:
    """Read what is left of a response that has no body to use (a 304 has none) so its connection
    can be reused; past ``limit`` it is left unread and the connection dropped. Error answers are
    not drained: their retry starts on a fresh connection, not on one the server may be closing."""
    read = 0
    for chunk in response.iter_raw():
        read += len(chunk)
        if read > limit:
            return
