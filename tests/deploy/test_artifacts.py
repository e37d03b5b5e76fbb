"""ArtifactCache against a real loopback server: verified downloads, resumes, retries and refusals.

Every failure test checks the one line a person reads (what, where, what was expected) and what
is left on disk: no partial download after a mismatch, earlier cache entries untouched.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from agent.deploy import artifacts
from agent.deploy.artifacts import ArtifactCache
from agent.errors import ArtifactError, ArtifactMismatch, ArtifactUnavailable, DiskFull
from agent.transfer import TransferFloor
from tests.deploy.loopback import DropAfter, IgnoreRange, Oversize, Redirect, SeenRequest, Status, Trickle

DATA = os.urandom(300_000)
OTHER = os.urandom(50_000)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Sleeps(list):
    """Stands in for ``time.sleep`` and remembers every delay asked for."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def new_cache(tmp_path: Path, sleeps: Sleeps) -> Callable[..., ArtifactCache]:
    caches = []

    def make(folder: Path | None = None, **options) -> ArtifactCache:
        options.setdefault("min_free_bytes", 0)
        cache = ArtifactCache(folder or tmp_path / "cache", sleep=sleeps, **options)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        cache.close()


def listing(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir()) if folder.exists() else []


def partial_path(cache: ArtifactCache, digest: str) -> Path:
    return cache.cache_dir / f"{digest}.partial"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the good path -------------------------------------------------------------------------------


def test_fetch_verifies_and_keeps_the_artifact_under_its_digest(server, new_cache):
    server.publish("core-auth-1.0.0.tar.gz", DATA)
    cache = new_cache()

    path = cache.fetch(server.url("core-auth-1.0.0.tar.gz"), sha256(DATA), len(DATA))

    assert path == cache.cache_dir / sha256(DATA) == cache.path_for(sha256(DATA).upper())
    assert path.read_bytes() == DATA
    assert listing(cache.cache_dir) == [sha256(DATA)]  # no partial left behind
    assert cache.has(sha256(DATA)) and not cache.has(sha256(OTHER))
    assert server.requests[0].headers.get("Accept-Encoding") == "identity"
    assert "Range" not in server.requests[0].headers


def test_a_cached_artifact_is_returned_without_asking_the_server(server, new_cache):
    server.publish("a.tar.gz", DATA)
    cache = new_cache()
    cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA))

    assert cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA)).read_bytes() == DATA
    assert len(server.requests) == 1


def test_a_cache_entry_of_the_wrong_size_is_fetched_again(server, new_cache):
    server.publish("a.tar.gz", DATA)
    cache = new_cache()
    cache.cache_dir.mkdir()
    cache.path_for(sha256(DATA)).write_bytes(DATA[:100])  # e.g. copied in by hand, cut short

    assert cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA)).read_bytes() == DATA
    assert len(server.requests) == 1


def test_redirects_to_a_mirror_are_followed(server, new_cache):
    server.publish("mirror/a.tar.gz", DATA)
    server.misbehave("a.tar.gz", Redirect("mirror/a.tar.gz"))
    assert new_cache().fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA)).read_bytes() == DATA
    assert [request.path for request in server.requests] == ["/a.tar.gz", "/mirror/a.tar.gz"]


def test_an_empty_artifact(server, new_cache):
    server.publish("empty", b"")
    cache = new_cache()
    assert cache.fetch(server.url("empty"), sha256(b""), 0).read_bytes() == b""
    assert listing(cache.cache_dir) == [sha256(b"")]


def test_file_urls_go_through_the_same_checks(tmp_path, new_cache):
    source = tmp_path / "feed" / "artifacts" / "core auth.tar.gz"
    source.parent.mkdir(parents=True)
    source.write_bytes(DATA)
    cache = new_cache()
    url = source.as_uri()  # file:///…/core%20auth.tar.gz

    assert cache.fetch(url, sha256(DATA), len(DATA)).read_bytes() == DATA

    with pytest.raises(ArtifactMismatch, match=f"sent more than the {len(DATA) - 1} bytes the feed declares"):
        cache.fetch(url, sha256(DATA[:-1]), len(DATA) - 1)
    with pytest.raises(ArtifactMismatch, match="sha256 mismatch"):
        cache.fetch(url, sha256(OTHER), len(DATA))
    with pytest.raises(ArtifactUnavailable, match="cannot read file://.*missing.tar.gz: No such file"):
        cache.fetch(source.with_name("missing.tar.gz").as_uri(), sha256(OTHER), len(OTHER))
    assert listing(cache.cache_dir) == [sha256(DATA)]


# -- resuming ------------------------------------------------------------------------------------


def test_a_connection_dropped_mid_body_is_resumed_with_a_range_request(server, new_cache, sleeps):
    server.publish("a.tar.gz", DATA)
    server.misbehave("a.tar.gz", DropAfter(100_000))
    cache = new_cache()

    assert cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA)).read_bytes() == DATA

    first, second = server.requests
    assert "Range" not in first.headers
    assert second.headers["Range"] == "bytes=100000-"
    assert len(sleeps) == 1
    assert listing(cache.cache_dir) == [sha256(DATA)]


def test_a_later_fetch_resumes_what_an_earlier_one_left(server, new_cache):
    server.publish("a.tar.gz", DATA)
    server.misbehave("a.tar.gz", DropAfter(120_000))
    cache = new_cache(retries=0)

    with pytest.raises(ArtifactUnavailable) as failure:
        cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA))
    assert str(failure.value).startswith(f"cannot download {server.url('a.tar.gz')}: the connection broke after 120000 of 300000 bytes")
    assert str(failure.value).endswith("gave up after 1 attempt")
    assert "\n" not in str(failure.value)
    assert partial_path(cache, sha256(DATA)).read_bytes() == DATA[:120_000]  # progress is kept

    # A new fetch (a restarted agent) hashes the 120,000 bytes it has and asks for the rest.
    assert new_cache(retries=0).fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA)).read_bytes() == DATA
    assert server.requests[-1].headers["Range"] == "bytes=120000-"
    assert listing(cache.cache_dir) == [sha256(DATA)]


def test_a_server_that_ignores_ranges_is_read_from_the_start(server, new_cache):
    server.publish("a.tar.gz", DATA)
    server.misbehave("a.tar.gz", DropAfter(50_000), IgnoreRange())
    cache = new_cache()

    assert cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA)).read_bytes() == DATA
    assert server.requests[-1].headers["Range"] == "bytes=50000-"  # asked, answered 200 with all of it


def test_a_refused_resume_starts_over(server, new_cache):
    server.publish("a.tar.gz", DATA)
    server.misbehave("a.tar.gz", DropAfter(50_000), Status(416))
    cache = new_cache()

    assert cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA)).read_bytes() == DATA
    assert [request.headers.get("Range") for request in server.requests] == [None, "bytes=50000-", None]


def test_a_corrupt_partial_download_is_caught_by_the_digest_and_removed(server, new_cache):
    server.publish("a.tar.gz", DATA)
    cache = new_cache()
    cache.cache_dir.mkdir()
    partial_path(cache, sha256(DATA)).write_bytes(b"x" * 1000)  # say, a disk error before a crash

    with pytest.raises(ArtifactMismatch, match="sha256 mismatch"):
        cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA))
    assert server.requests[0].headers["Range"] == "bytes=1000-"
    assert listing(cache.cache_dir) == []

    assert cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA)).read_bytes() == DATA


def test_a_complete_partial_download_needs_no_request(server, new_cache):
    cache = new_cache()
    cache.cache_dir.mkdir()
    partial_path(cache, sha256(DATA)).write_bytes(DATA)  # killed between the last write and the rename

    assert cache.fetch(server.url("gone.tar.gz"), sha256(DATA), len(DATA)).read_bytes() == DATA
    assert server.requests == []


# -- retries -------------------------------------------------------------------------------------


def test_server_errors_are_retried_with_growing_jittered_delays(server, new_cache, sleeps):
    server.publish("a.tar.gz", DATA)
    server.misbehave("a.tar.gz", Status(500), Status(503))
    cache = new_cache(backoff_s=0.5)

    assert cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA)).read_bytes() == DATA
    assert len(server.requests) == 3
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_a_server_that_keeps_failing_gives_one_clear_line(server, new_cache, sleeps):
    server.publish("a.tar.gz", DATA)
    server.misbehave("a.tar.gz", *[Status(500)] * 4)
    cache = new_cache(retries=3)

    with pytest.raises(ArtifactUnavailable) as failure:
        cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA))
    assert str(failure.value) == (
        f"cannot download {server.url('a.tar.gz')}: HTTP 500 Internal Server Error; gave up after 4 attempts"
    )
    assert len(sleeps) == 3
    assert listing(cache.cache_dir) == []  # an empty partial is not progress worth keeping


@pytest.mark.parametrize("status, reason", [(404, "Not Found"), (403, "Forbidden"), (410, "Gone")])
def test_client_errors_fail_at_once(server, new_cache, sleeps, status, reason):
    server.publish("a.tar.gz", DATA)
    server.misbehave("a.tar.gz", Status(status))
    cache = new_cache()

    with pytest.raises(ArtifactUnavailable, match=f"^cannot download .*/a.tar.gz: HTTP {status} {reason}$"):
        cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA))
    assert len(server.requests) == 1 and sleeps == []


def test_too_many_requests_waits_as_long_as_the_server_asks(server, new_cache, sleeps):
    server.publish("a.tar.gz", DATA)
    server.misbehave("a.tar.gz", Status(429, retry_after=7), Status(408))
    cache = new_cache(backoff_s=0.5)

    assert cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA)).read_bytes() == DATA
    assert sleeps[0] == 7 and 0.5 <= sleeps[1] <= 1.0


def test_a_server_asking_to_come_back_in_an_hour_is_not_waited_for(server, new_cache, sleeps):
    server.publish("a.tar.gz", DATA)
    server.misbehave("a.tar.gz", Status(503, retry_after=3600))
    cache = new_cache()

    with pytest.raises(ArtifactUnavailable, match="HTTP 503 Service Unavailable; the server asks to retry after 3600 s"):
        cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA))
    assert sleeps == [] and len(server.requests) == 1


def test_connection_refused(new_cache, sleeps):
    url = f"http://127.0.0.1:{closed_port()}/a.tar.gz"
    cache = new_cache(retries=2)

    with pytest.raises(ArtifactUnavailable) as failure:
        cache.fetch(url, sha256(DATA), len(DATA))
    message = str(failure.value)
    assert message.startswith(f"cannot download {url}: cannot connect (")
    assert "Connection refused" in message and message.endswith("gave up after 3 attempts")
    assert len(sleeps) == 2
    assert listing(cache.cache_dir) == []


def test_an_artifact_trickled_below_the_rate_floor_is_abandoned_and_resumed_later(server, new_cache, sleeps):
    """Every read ends inside its timeout, so only a rate floor stops a mirror that sends a little
    now and then from holding the agent's single worker for days."""
    server.publish("a.tar.gz", DATA)
    server.misbehave("a.tar.gz", Trickle(every_s=0.5, chunk=100))  # 200 B/s against a floor of 1 KiB/s
    cache = new_cache(floor=TransferFloor(min_rate=1024, window_s=1.0))
    digest, url = sha256(DATA), server.url("a.tar.gz")

    with pytest.raises(ArtifactUnavailable) as failure:
        cache.fetch(url, digest, len(DATA))

    message = str(failure.value)
    assert "\n" not in message and message.startswith(f"cannot download {url}: too slow: ")
    assert re.search(r"\b\d+ B/s over the last \d+\.\d s, below the floor of 1\.0 KiB/s", message), message
    assert len(server.requests) == 1 and sleeps == [], "a slow mirror is abandoned, not retried"
    kept = partial_path(cache, digest).stat().st_size
    assert 0 < kept < len(DATA) and listing(cache.cache_dir) == [f"{digest}.partial"], "nothing in place under the digest"
    assert f"{kept} of {len(DATA)} bytes" in message

    # The mirror recovers (or the next poll finds another): the download resumes where it stopped.
    assert cache.fetch(url, digest, len(DATA)).read_bytes() == DATA
    assert server.requests[-1].headers["Range"] == f"bytes={kept}-"
    assert listing(cache.cache_dir) == [digest]


def test_a_slow_artifact_above_the_rate_floor_is_fetched(server, new_cache, sleeps):
    server.publish("b.tar.gz", OTHER)
    # About 80 KiB/s over several windows; it would have to stall for eight seconds to fall under.
    server.misbehave("b.tar.gz", Trickle(every_s=0.1, chunk=8192))
    cache = new_cache(floor=TransferFloor(min_rate=1024, window_s=0.5))

    assert cache.fetch(server.url("b.tar.gz"), sha256(OTHER), len(OTHER)).read_bytes() == OTHER
    assert len(server.requests) == 1 and sleeps == []


def test_a_server_that_never_answers_times_out(new_cache, sleeps):
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/a.tar.gz"
        with httpx.Client(timeout=0.2) as http:
            cache = new_cache(http=http, retries=1)
            with pytest.raises(ArtifactUnavailable, match=r"timed out after 0 of 300000 bytes \(ReadTimeout\); gave up after 2 attempts"):
                cache.fetch(url, sha256(DATA), len(DATA))
    assert len(sleeps) == 1


# -- refusals ------------------------------------------------------------------------------------


def test_a_server_announcing_more_than_the_feed_declares_is_refused_unread(server, new_cache):
    server.publish("a.tar.gz", DATA)
    server.misbehave("a.tar.gz", Oversize(extra=10_000_000))
    cache = new_cache()
    cache.cache_dir.mkdir()
    cache.path_for(sha256(OTHER)).write_bytes(OTHER)  # an earlier artifact

    with pytest.raises(ArtifactMismatch) as failure:
        cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA))
    assert str(failure.value) == (
        f"{server.url('a.tar.gz')} sent more than the 300000 bytes the feed declares (it announced 10300000); refused"
    )
    assert listing(cache.cache_dir) == [sha256(OTHER)]
    assert cache.path_for(sha256(OTHER)).read_bytes() == OTHER


def test_a_server_streaming_more_than_the_feed_declares_is_cut_off(server, new_cache):
    server.publish("a.tar.gz", DATA)
    server.misbehave("a.tar.gz", Oversize(extra=10_000_000, announce=False))  # no Content-Length
    cache = new_cache()

    with pytest.raises(ArtifactMismatch, match="^http://.*/a.tar.gz sent more than the 300000 bytes the feed declares; refused$"):
        cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA))
    assert listing(cache.cache_dir) == []


def test_a_file_larger_than_declared_is_refused(server, new_cache):
    server.publish("a.tar.gz", DATA + b"trailing")
    cache = new_cache()
    with pytest.raises(ArtifactMismatch, match="sent more than the 300000 bytes the feed declares"):
        cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA))
    assert listing(cache.cache_dir) == []


def test_a_file_shorter_than_declared_is_refused(server, new_cache, sleeps):
    server.publish("a.tar.gz", DATA[:-10])
    cache = new_cache()
    with pytest.raises(ArtifactMismatch, match=r"a.tar.gz sent 299990 of the 300000 bytes the feed declares; the download was removed$"):
        cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA))
    assert listing(cache.cache_dir) == [] and sleeps == []


def test_a_digest_mismatch_names_both_digests_and_removes_the_download(server, new_cache):
    server.publish("a.tar.gz", DATA)
    cache = new_cache()
    cache.cache_dir.mkdir()
    cache.path_for(sha256(OTHER)).write_bytes(OTHER)
    wanted = sha256(b"what the feed signed")

    with pytest.raises(ArtifactMismatch) as failure:
        cache.fetch(server.url("a.tar.gz"), wanted, len(DATA))
    assert str(failure.value) == (
        f"{server.url('a.tar.gz')}: sha256 mismatch: the feed declares {wanted}, the download has {sha256(DATA)}; "
        "the download was removed"
    )
    assert listing(cache.cache_dir) == [sha256(OTHER)]


@pytest.mark.parametrize("digest", ["../../etc/passwd", "abc", "g" * 64, ""])
def test_only_sha256_digests_name_cache_entries(new_cache, digest):
    cache = new_cache()
    with pytest.raises(ArtifactError, match="not a sha256 digest"):
        cache.fetch("http://127.0.0.1:1/a", digest, 1)
    with pytest.raises(ArtifactError, match="not a sha256 digest"):
        cache.has(digest)


def test_unsupported_url_schemes_are_named(new_cache):
    cache = new_cache()
    with pytest.raises(ArtifactError, match="^ftp://mirror/a.tar.gz: unsupported URL scheme 'ftp' \\(http, https or file only\\)$"):
        cache.fetch("ftp://mirror/a.tar.gz", sha256(DATA), len(DATA))
    assert not cache.cache_dir.exists()


def test_a_download_already_in_progress_is_not_written_twice(server, new_cache):
    server.publish("a.tar.gz", DATA)
    cache = new_cache()
    cache.cache_dir.mkdir()
    with open(partial_path(cache, sha256(DATA)), "wb") as other_fetch:
        fcntl.flock(other_fetch, fcntl.LOCK_EX)
        with pytest.raises(ArtifactError, match="is already being downloaded into .*partial by another fetch"):
            cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA))
        assert cache.remove_except(set()) == []  # nor collected from under it
    assert server.requests == []


# -- disk space ----------------------------------------------------------------------------------


def test_too_little_free_space_is_refused_before_downloading(server, new_cache, small_filesystem):
    server.publish("a.tar.gz", DATA)
    cache = new_cache(small_filesystem / "cache", min_free_bytes=64 * 1024**2)
    cache.cache_dir.mkdir()
    cache.path_for(sha256(OTHER)).write_bytes(OTHER)

    with pytest.raises(DiskFull) as failure:
        cache.fetch(server.url("a.tar.gz"), sha256(DATA), len(DATA))
    message = str(failure.value)
    assert message.startswith(f"not enough free space in {cache.cache_dir} to download {server.url('a.tar.gz')}: ")
    assert message.endswith(" MiB free, 64.3 MiB needed (0.3 MiB to download + 64.0 MiB kept free)")
    assert server.requests == []
    assert listing(cache.cache_dir) == [sha256(OTHER)]


def test_a_disk_that_fills_up_while_downloading(server, new_cache, small_filesystem):
    big = os.urandom(1024**2)
    server.publish("big.tar.gz", big)
    cache = new_cache(small_filesystem / "cache")
    cache.cache_dir.mkdir()
    cache.path_for(sha256(OTHER)).write_bytes(OTHER)
    filler = small_filesystem / "someone-else"

    def another_process_fills_the_disk(_: SeenRequest) -> None:
        info = os.statvfs(small_filesystem)
        filler.write_bytes(b"\0" * (info.f_bavail * info.f_frsize - 300 * 1024))

    server.on_request = another_process_fills_the_disk
    with pytest.raises(DiskFull) as failure:
        cache.fetch(server.url("big.tar.gz"), sha256(big), len(big))

    assert str(failure.value).startswith(f"no space left in {cache.cache_dir} while downloading {server.url('big.tar.gz')} (")
    assert str(failure.value).endswith(f" of {len(big)} bytes written); the partial download was removed")
    assert listing(cache.cache_dir) == [sha256(OTHER)]
    assert cache.path_for(sha256(OTHER)).read_bytes() == OTHER
    assert filler.exists()


# -- garbage collection --------------------------------------------------------------------------


def test_remove_except_keeps_what_revisions_use_and_nothing_else_of_ours(new_cache):
    cache = new_cache()
    cache.cache_dir.mkdir()
    kept, dropped, resumable, stale = (sha256(bytes([n])) for n in range(4))
    for name in (kept, dropped, f"{resumable}.partial", f"{stale}.partial", "README", "lost+found"):
        (cache.cache_dir / name).write_bytes(b"x")

    assert cache.remove_except({kept.upper(), resumable}) == sorted([dropped, f"{stale}.partial"])
    assert listing(cache.cache_dir) == sorted([kept, f"{resumable}.partial", "README", "lost+found"])
    assert new_cache(Path("/nonexistent/cache")).remove_except(set()) == []


def test_a_failing_background_digest_never_blocks_the_download():
    # The writer hands chunks to a hashing thread through a short queue; if hashing died and the
    # queue stopped draining, the download would hang. It must go on and report at the end.
    class BrokenDigest:
        def update(self, data: bytes) -> None:
            raise MemoryError("no room to hash")

    hasher = artifacts._BackgroundSha256(BrokenDigest())

    def download() -> None:
        for _ in range(4 * hasher.QUEUE_DEPTH):
            hasher.update(bytes(hasher.BATCH_BYTES))

    writer = threading.Thread(target=download, daemon=True)
    writer.start()
    writer.join(timeout=10)
    assert not writer.is_alive(), "the download blocked on a dead hashing thread"
    with pytest.raises(MemoryError, match="no room to hash"):
        hasher.finish()
