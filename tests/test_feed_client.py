"""The feed client against a real loopback HTTP server and a real temp folder.

What a host relies on: an unchanged feed costs one 304 and no parsing; a feed is accepted only
when signed, fresh, not older than the one in force and not altered under the same serial; a
hostile or broken server never gets more than the size cap read, never changes what is in force,
and is retried with backoff; the accepted feed survives restarts and crashes and is re-verified
when read back from disk.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

import agent.feed.client as client_module
from agent.errors import (
    FeedExpired,
    FeedInvalid,
    FeedRejected,
    FeedReplayed,
    FeedTooLarge,
    FeedUnavailable,
    SignatureError,
    StoreError,
)
from agent.feed.client import FeedCheck, FeedClient
from agent.feed.signature import SecretKey, sign
from agent.feed.verify import read_feed_files, verify_feed
from agent.transfer import TransferFloor
from tests.builders import NOW, FeedBuilder, simple_feed
from tests.feedserver import FeedServer

KEY = SecretKey.generate()
OTHER_KEY = SecretKey.generate()
TRUSTED = [KEY.public_key()]
MAX_BYTES = 1024 * 1024
HTTPCORE_READ = 64 * 1024  # the largest chunk httpx hands over at once


def signed(data: bytes, key: SecretKey = KEY) -> bytes:
    return sign(data, key, trusted_comment="file:feed.json\thashed").encode()


def feed_bytes(serial: int, *, expires_at=None, notes: str | None = None) -> bytes:
    builder = simple_feed() if expires_at is None else _with_expiry(expires_at)
    builder.data["serial"] = serial
    if notes is not None:
        builder.data["platforms"][0]["notes"] = notes
    return builder.bytes()


def _with_expiry(expires_at) -> FeedBuilder:
    builder = simple_feed()
    fresh = FeedBuilder(expires_at=expires_at)
    builder.data["expires_at"] = fresh.data["expires_at"]
    return builder


def publish(server: FeedServer, data: bytes, signature: bytes | None = None, *, mtime: int | None = None) -> bytes:
    server.publish("feed.json", data, mtime=mtime)
    server.publish("feed.json.minisig", signature if signature is not None else signed(data), mtime=mtime)
    return data


def disk(folder: Path) -> dict[str, object]:
    """Every file's bytes and every link's target under ``folder``, links not followed."""
    found: dict[str, object] = {}
    for directory, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(directory, name)
            relative = str(path.relative_to(folder))
            if path.is_symlink():
                found[relative] = ("link", os.readlink(path))
            elif path.is_file():
                found[relative] = path.read_bytes()
    return found


@pytest.fixture
def server(tmp_path):
    with FeedServer(tmp_path / "www") as running:
        yield running


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def feed_dir(tmp_path):
    return tmp_path / "state" / "feed"


@pytest.fixture
def make_client(server, feed_dir, sleeps):
    """Clients sharing one httpx.Client (building its TLS context costs 50 ms); ``own_http=True``
    lets the FeedClient build its own, as the daemon does."""
    made: list[FeedClient] = []
    shared = httpx.Client(max_redirects=5)

    def make(folder: Path | None = None, *, own_http: bool = False, **options) -> FeedClient:
        settings = {"max_bytes": MAX_BYTES, "sleep": sleeps.append, "rng": lambda: 0.25, "backoff_s": 2.0, "timeout_s": 5.0}
        if not own_http:
            settings["http"] = shared
        settings.update(options)
        url = settings.pop("url", server.url_for("feed.json"))
        keys = settings.pop("trusted_keys", TRUSTED)
        client = FeedClient(url, folder or feed_dir, keys, **settings)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
    shared.close()


@pytest.fixture
def accepted_serial_1(server, make_client):
    """A host that accepted serial 1; returns its client."""
    publish(server, feed_bytes(1))
    client = make_client()
    assert client.check(NOW).changed
    return client


# ── the normal path ───────────────────────────────────────────────────────────────────────────


def test_the_first_check_accepts_the_feed_and_stores_it_with_its_signature_and_meta(server, make_client, feed_dir):
    data = publish(server, feed_bytes(7))
    client = make_client(own_http=True)

    result = client.check(NOW)

    assert isinstance(result, FeedCheck)
    assert (result.serial, result.changed, result.not_modified) == (7, True, False)
    assert result.catalog.serial == 7
    assert [seen.path for seen in server.requests] == ["/feed.json", "/feed.json.minisig"]
    assert (feed_dir / "feed.json").read_bytes() == data
    assert (feed_dir / "feed.json.minisig").read_bytes() == (server.root / "feed.json.minisig").read_bytes()
    meta = json.loads((feed_dir / "feed.meta.json").read_bytes())
    served = server.seen("/feed.json")[0]
    assert meta["serial"] == 7
    assert meta["etag"].startswith('"') and meta["last_modified"].endswith("GMT")
    assert meta["fetched_at"] == NOW.isoformat()
    assert served.headers.get("if-none-match") is None
    assert os.readlink(feed_dir / "current").startswith("accepted/")
    # What `id1 feed verify /var/lib/id1/feed/feed.json` reads is the accepted pair.
    stored, signature = read_feed_files(feed_dir / "feed.json", MAX_BYTES)
    assert verify_feed(stored, signature, TRUSTED, now=NOW, max_bytes=MAX_BYTES).serial == 7
    assert client.last_accepted(NOW) is result.catalog


def test_an_unchanged_feed_costs_one_request_answered_304_and_no_parsing(server, accepted_serial_1, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("an unchanged feed must not be parsed or verified")

    for name in ("verify_feed", "parse_feed", "verify"):
        monkeypatch.setattr(client_module, name, must_not_run)
    before = server.hits()
    kept = accepted_serial_1.last_accepted(NOW)

    result = accepted_serial_1.check(NOW)

    assert (result.serial, result.changed, result.not_modified) == (1, False, True)
    assert result.catalog is kept
    assert server.hits() == before + 1
    request = server.requests[-1]
    assert request.path == "/feed.json"
    assert request.headers["if-none-match"] and request.headers["if-modified-since"]


def test_unchanged_polls_reuse_one_connection(server, accepted_serial_1):
    """A 304 is read to its end, so polling does not open (in production: TLS-handshake) a new
    connection every time."""
    first = len(server.requests)
    for _ in range(5):
        assert accepted_serial_1.check(NOW).not_modified
    peers = {request.peer for request in server.requests[first:]}
    assert len(server.requests) - first == 5 and len(peers) == 1, peers


def test_last_modified_alone_also_makes_an_unchanged_feed_a_304(tmp_path, make_client, feed_dir):
    with FeedServer(tmp_path / "plain", etags=False) as plain:
        publish(plain, feed_bytes(1))
        client = make_client(url=plain.url_for("feed.json"))
        client.check(NOW)

        result = client.check(NOW)

        assert result.not_modified
        assert plain.seen("/feed.json")[-1].headers.get("if-none-match") is None


def test_a_feed_republished_within_the_second_of_the_last_poll_is_fetched_not_answered_304(tmp_path, make_client):
    """Last-Modified has a one-second grain: answered in the very second the feed was published,
    it cannot tell that upload from a second one in the same second (a weak validator, RFC 9110
    §8.8.2.2). If-Modified-Since would then get a 304 for a feed the host never saw."""
    second = 1_795_000_100
    with FeedServer(tmp_path / "plain", etags=False) as plain:
        publish(plain, feed_bytes(1), mtime=second)
        plain.date = second  # Date == Last-Modified: the poll was answered within that second
        client = make_client(url=plain.url_for("feed.json"))
        assert client.check(NOW).serial == 1
        publish(plain, feed_bytes(2), mtime=second)  # republished within the same second

        result = client.check(NOW)

        assert (result.serial, result.changed, result.not_modified) == (2, True, False)
        assert "if-modified-since" not in plain.seen("/feed.json")[-1].headers

        # Once an answer comes a second or more after Last-Modified, the validator is strong
        # and polls are conditional again.
        plain.date = second + 1
        assert not client.check(NOW).not_modified
        assert client.check(NOW).not_modified
        assert plain.seen("/feed.json")[-1].headers["if-modified-since"]


def test_a_newer_serial_is_accepted_and_replaces_the_stored_feed(server, accepted_serial_1, feed_dir):
    data = publish(server, feed_bytes(2))

    result = accepted_serial_1.check(NOW)

    assert (result.serial, result.changed, result.not_modified) == (2, True, False)
    assert (feed_dir / "feed.json").read_bytes() == data
    assert accepted_serial_1.last_accepted(NOW).serial == 2
    assert len(os.listdir(feed_dir / "accepted")) == 1, "the replaced feed's folder is cleaned up"


def test_the_same_feed_uploaded_again_is_unchanged_and_its_new_etag_is_remembered(server, accepted_serial_1, feed_dir):
    old_meta = json.loads((feed_dir / "feed.meta.json").read_bytes())
    publish(server, (server.root / "feed.json").read_bytes())  # same bytes, new mtime: new ETag

    result = accepted_serial_1.check(NOW)

    assert (result.serial, result.changed, result.not_modified) == (1, False, False)
    new_meta = json.loads((feed_dir / "feed.meta.json").read_bytes())
    assert new_meta["etag"] != old_meta["etag"] and new_meta["sha256"] == old_meta["sha256"]
    assert accepted_serial_1.check(NOW).not_modified


def test_artifact_urls_resolve_against_the_feed_url(make_client):
    client = make_client(url="https://releases.example.com/id1/stable/feed.json")

    assert client.resolve_url("artifacts/core-auth-1.0.0.tar.gz") == "https://releases.example.com/id1/stable/artifacts/core-auth-1.0.0.tar.gz"
    assert client.resolve_url("../shared/x.tar.gz") == "https://releases.example.com/id1/shared/x.tar.gz"
    assert client.resolve_url("/abs/x.tar.gz") == "https://releases.example.com/abs/x.tar.gz"
    assert client.resolve_url("https://cdn.example.net/x.tar.gz") == "https://cdn.example.net/x.tar.gz"


def test_redirects_are_followed_and_a_redirect_loop_is_refused(server, make_client, sleeps):
    server.redirect("/feed.json", "/mirror/feed.json")
    server.redirect("/feed.json.minisig", "/mirror/feed.json.minisig")
    data = feed_bytes(3)
    server.publish("mirror/feed.json", data)
    server.publish("mirror/feed.json.minisig", signed(data))

    assert make_client().check(NOW).serial == 3

    server.redirect("/loop.json", "/loop.json")
    with pytest.raises(FeedUnavailable, match="more than 5 redirects") as caught:
        make_client(url=server.url_for("loop.json"), own_http=True).check(NOW)
    assert "the last accepted feed (serial 3) stays in force" in str(caught.value)
    assert server.hits("/loop.json") == 6 and sleeps == []


# ── the serial rules ──────────────────────────────────────────────────────────────────────────


def test_a_lower_serial_is_refused_as_a_replay_and_nothing_changes(server, make_client, feed_dir):
    old = publish(server, feed_bytes(41))
    client = make_client()
    client.check(NOW)
    publish(server, feed_bytes(42))
    client.check(NOW)
    on_disk = disk(feed_dir)
    publish(server, old, signed(old))  # a genuine, validly signed old feed: a replay

    with pytest.raises(FeedReplayed) as caught:
        client.check(NOW)

    message = str(caught.value)
    assert "feed serial 41 is lower than the accepted 42: refusing a replayed or rolled-back feed" in message
    assert "the last accepted feed (serial 42) stays in force" in message
    assert caught.value.exit_code == 3
    assert disk(feed_dir) == on_disk
    assert client.last_accepted(NOW).serial == 42
    with pytest.raises(FeedReplayed):
        make_client().check(NOW)  # a restarted agent remembers serial 42 from disk


def test_a_lost_feed_folder_does_not_reopen_the_door_to_an_older_serial(server, make_client, feed_dir):
    """The caller passes the highest serial its own store has seen (the daemon: the feed state
    and the revisions' feed serials), so losing ``feed_dir`` does not lose the rollback floor."""
    publish(server, feed_bytes(5))
    assert make_client().check(NOW).serial == 5
    shutil.rmtree(feed_dir)
    publish(server, feed_bytes(4))  # validly signed and unexpired, but older
    client = make_client(min_serial=5)

    with pytest.raises(FeedReplayed, match=r"serial 4 is lower than serial 5, which the agent's state records") as caught:
        client.check(NOW)

    assert "\n" not in str(caught.value)
    assert client.last_accepted(NOW) is None and not (feed_dir / "current").exists()


def test_the_store_floor_lets_the_same_serial_and_newer_ones_in(server, make_client, feed_dir):
    publish(server, feed_bytes(5))
    assert make_client(min_serial=5).check(NOW).serial == 5  # the store knows no digest to compare
    publish(server, feed_bytes(6))
    assert make_client(feed_dir.parent / "other", min_serial=5).check(NOW).serial == 6


def test_a_stored_feed_below_the_store_floor_is_not_used(server, accepted_serial_1, make_client):
    """An old copy of the feed folder put back (a restored backup) is not the feed in force."""
    restarted = make_client(min_serial=3)

    with pytest.raises(FeedReplayed, match="serial 1 is lower than serial 3"):
        restarted.last_accepted(NOW)

    publish(server, feed_bytes(2))
    with pytest.raises(FeedReplayed, match="serial 2 is lower than serial 3"):
        restarted.check(NOW)
    publish(server, feed_bytes(3))
    assert restarted.check(NOW).changed
    assert restarted.last_accepted(NOW).serial == 3


def test_the_same_serial_with_other_bytes_is_refused(server, accepted_serial_1, feed_dir):
    on_disk = disk(feed_dir)
    publish(server, feed_bytes(1, notes="quietly changed"))

    with pytest.raises(FeedReplayed, match="feed serial 1 is the accepted serial but its bytes differ"):
        accepted_serial_1.check(NOW)

    assert disk(feed_dir) == on_disk
    assert accepted_serial_1.last_accepted(NOW).platforms  # the accepted catalog, intact


# ── rejections leave the accepted feed in force ───────────────────────────────────────────────


def _bad_signature(server):
    publish(server, feed_bytes(2), signed(b"some other bytes"))


def _untrusted_key(server):
    data = feed_bytes(2)
    publish(server, data, signed(data, OTHER_KEY))


def _unsigned(server):
    publish(server, feed_bytes(2))
    server.remove("feed.json.minisig")


def _expired(server):
    publish(server, feed_bytes(2, expires_at=NOW - timedelta(hours=1)))


def _not_a_feed(server):
    publish(server, b'{"format": 1, "serial": 2}')


@pytest.mark.parametrize(
    "make_bad, error, words",
    [
        (_bad_signature, SignatureError, "signature does not match"),
        (_untrusted_key, SignatureError, "not a trusted key"),
        (_unsigned, SignatureError, "unsigned feed is never used"),
        (_expired, FeedExpired, "expired at"),
        (_not_a_feed, FeedInvalid, "invalid feed"),
    ],
    ids=["bad-signature", "untrusted-key", "unsigned", "expired", "not-a-feed"],
)
def test_a_rejected_feed_leaves_the_last_accepted_one_in_force(server, accepted_serial_1, feed_dir, make_bad, error, words):
    on_disk = disk(feed_dir)
    make_bad(server)

    with pytest.raises(error, match=words) as caught:
        accepted_serial_1.check(NOW)

    assert isinstance(caught.value, FeedRejected) and caught.value.exit_code == 3
    assert server.url_for("feed.json") in str(caught.value)
    assert disk(feed_dir) == on_disk
    assert accepted_serial_1.last_accepted(NOW).serial == 1
    assert serial_after_restart(accepted_serial_1) == 1


def serial_after_restart(client: FeedClient) -> int:
    restarted = FeedClient(client.url, client.feed_dir, TRUSTED, max_bytes=MAX_BYTES)
    try:
        return restarted.last_accepted(NOW).serial
    finally:
        restarted.close()


class CountingTransport(httpx.BaseTransport):
    """The real network transport, counting the body bytes that reach the client."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.body_bytes = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        return httpx.Response(response.status_code, headers=response.headers, stream=_Counted(response.stream, self), extensions=response.extensions)

    def close(self) -> None:
        self.inner.close()


class _Counted(httpx.SyncByteStream):
    def __init__(self, stream, counter: CountingTransport):
        self.stream, self.counter = stream, counter

    def __iter__(self):
        for chunk in self.stream:
            self.counter.body_bytes += len(chunk)
            yield chunk

    def close(self) -> None:
        self.stream.close()


def test_an_endless_body_is_cut_off_at_the_size_cap(server, accepted_serial_1, make_client, feed_dir):
    on_disk = disk(feed_dir)
    transport = CountingTransport()
    cap = 200_000
    client = make_client(max_bytes=cap, http=httpx.Client(transport=transport, max_redirects=5))
    server.send_endless("/feed.json")

    with pytest.raises(FeedTooLarge, match="larger than the 200000-byte cap") as caught:
        client.check(NOW)

    assert caught.value.exit_code == 3
    assert cap < transport.body_bytes <= cap + HTTPCORE_READ
    assert server.hits("/feed.json.minisig") == 1, "only the first, good check fetched a signature"
    assert disk(feed_dir) == on_disk
    assert client.last_accepted(NOW).serial == 1


def test_a_body_declared_larger_than_the_cap_is_refused_unread(server, make_client):
    transport = CountingTransport()
    client = make_client(max_bytes=10_000, http=httpx.Client(transport=transport))
    server.send_endless("/feed.json", declare_length=10**9)

    with pytest.raises(FeedTooLarge, match="refused unread"):
        client.check(NOW)

    assert transport.body_bytes == 0
    assert client.last_accepted(NOW) is None


# ── network failures ──────────────────────────────────────────────────────────────────────────


def test_server_errors_are_retried_with_exponential_backoff_and_full_jitter(server, make_client, sleeps):
    publish(server, feed_bytes(5))
    server.fail("/feed.json", 500, times=2)

    result = make_client(retries=3, backoff_s=2.0, rng=lambda: 0.25).check(NOW)

    assert result.serial == 5 and result.changed
    assert sleeps == [0.25 * 2.0 * 1, 0.25 * 2.0 * 2]
    assert server.hits("/feed.json") == 3


def test_the_accepted_feed_can_be_read_while_a_poll_is_retrying(server, accepted_serial_1, make_client):
    answers = []

    def sleep_while_someone_reads(seconds: float) -> None:
        reader = threading.Thread(target=lambda: answers.append(client.last_accepted(NOW).serial))
        reader.start()
        reader.join(timeout=10)
        assert not reader.is_alive(), "last_accepted waited for the poll"

    client = make_client(sleep=sleep_while_someone_reads)
    server.fail("/feed.json", 503, times=1)

    assert client.check(NOW).not_modified
    assert answers == [1]


@pytest.mark.parametrize("break_it", [FeedServer.drop_connection, FeedServer.truncate_body], ids=["dropped", "truncated"])
def test_a_connection_broken_off_is_retried(server, make_client, sleeps, break_it):
    publish(server, feed_bytes(5))
    break_it(server, "/feed.json")

    assert make_client().check(NOW).serial == 5
    assert sleeps == [0.25 * 2.0]


def test_a_failing_server_gives_one_clear_line_and_the_accepted_feed_stays(server, accepted_serial_1, sleeps):
    server.fail("/feed.json", 503, times=3)

    with pytest.raises(FeedUnavailable) as caught:
        accepted_serial_1.check(NOW)

    message = str(caught.value)
    assert "\n" not in message
    assert server.url_for("feed.json") in message
    assert "HTTP 503 Service Unavailable (after 3 attempts)" in message
    assert message.endswith("the last accepted feed (serial 1) stays in force")
    assert caught.value.exit_code == 2
    assert sleeps == [0.5, 1.0]
    assert accepted_serial_1.last_accepted(NOW).serial == 1


def test_an_unreachable_server_fails_after_every_attempt_with_a_clear_line(make_client, sleeps):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/feed.json"  # nothing listens there any more

    with pytest.raises(FeedUnavailable) as caught:
        make_client(url=url, retries=4).check(NOW)

    message = str(caught.value)
    assert message.startswith(f"cannot fetch the feed {url}: cannot connect")
    assert "(after 4 attempts); no feed has been accepted yet" in message
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_server_that_answers_nothing_times_out(server, make_client, sleeps):
    publish(server, feed_bytes(1))
    server.stall("/feed.json", times=2)

    with pytest.raises(FeedUnavailable, match=r"the server sent nothing for 0.2s \(after 2 attempts\)"):
        make_client(timeout_s=0.2, retries=2).check(NOW)

    assert sleeps == [0.5]


@pytest.mark.parametrize(
    "status, words",
    [(404, "HTTP 404 Not Found: nothing is published there"), (403, "HTTP 403 Forbidden (the server refuses access)")],
)
def test_not_found_and_forbidden_fail_at_once(server, accepted_serial_1, sleeps, status, words):
    server.fail("/feed.json", status, times=5)
    before = server.hits("/feed.json")

    with pytest.raises(FeedUnavailable, match=re.escape(words)):
        accepted_serial_1.check(NOW)

    assert server.hits("/feed.json") == before + 1
    assert sleeps == []
    assert accepted_serial_1.last_accepted(NOW).serial == 1


# ── slow mirrors ─────────────────────────────────────────────────────────────────────────────


def test_a_feed_trickled_below_the_rate_floor_is_abandoned_with_one_clear_line(server, make_client, feed_dir, sleeps):
    """A byte now and then keeps every read inside its timeout: only a rate floor frees the
    agent's single worker (and what waits behind it) from a mirror on a dying link."""
    publish(server, feed_bytes(1))
    client = make_client(floor=TransferFloor(min_rate=1024, window_s=1.0))
    client.check(NOW)
    kept = disk(feed_dir)
    publish(server, feed_bytes(2))
    server.trickle("/feed.json", every_s=0.5)  # 2 bytes a second against a floor of 1 KiB/s
    before = server.hits("/feed.json")

    with pytest.raises(FeedUnavailable) as caught:
        client.check(NOW)

    message = str(caught.value)
    assert "\n" not in message
    assert server.url_for("feed.json") in message
    assert re.search(r"\b\d+ B/s over the last \d+\.\d s, below the floor of 1\.0 KiB/s", message), message
    assert "(serial 1) stays in force" in message
    assert server.hits("/feed.json") == before + 1 and sleeps == [], "a slow mirror is not retried"
    assert disk(feed_dir) == kept and client.last_accepted(NOW).serial == 1


def test_a_slow_feed_above_the_rate_floor_is_accepted(server, make_client):
    data = publish(server, feed_bytes(2, notes="x" * 20_000))
    # About 20 KiB/s over several windows; to fall under the floor the server would have to stall
    # for eight seconds.
    server.trickle("/feed.json", every_s=0.1, chunk=2048)
    client = make_client(floor=TransferFloor(min_rate=256, window_s=0.5))

    assert client.check(NOW).serial == 2
    assert len(data) > 10 * 2048, "the transfer spans more than one window"


# ── on disk: restarts, tampering, expiry, crashes ─────────────────────────────────────────────


def test_a_restarted_client_loads_the_accepted_feed_once_and_polls_conditionally(server, accepted_serial_1, make_client, monkeypatch):
    served_etag = json.loads((accepted_serial_1.feed_dir / "feed.meta.json").read_bytes())["etag"]
    parsed = []
    real_parse = client_module.parse_feed
    monkeypatch.setattr(client_module, "parse_feed", lambda *a, **k: parsed.append(1) or real_parse(*a, **k))

    restarted = make_client()
    first = restarted.last_accepted(NOW)
    again = restarted.last_accepted(NOW)
    result = restarted.check(NOW)

    assert first.serial == 1 and again is first
    assert result.not_modified and result.catalog is first
    assert server.requests[-1].headers["if-none-match"] == served_etag
    assert parsed == [1]


def test_a_feed_altered_on_disk_is_refused_on_load_and_replaced_by_the_next_good_one(server, accepted_serial_1, make_client, feed_dir):
    stored = feed_dir / "feed.json"
    stored.write_bytes(stored.read_bytes().replace(b'"2.5.0"', b'"2.4.0"'))  # through the link

    restarted = make_client()
    with pytest.raises(SignatureError, match="stored feed .*feed.json is refused and not used: signature does not match"):
        restarted.last_accepted(NOW)

    result = restarted.check(NOW)

    assert server.requests[-2].headers.get("if-none-match") is None, "a refused copy's validators are not used"
    assert result.changed and result.serial == 1
    assert restarted.last_accepted(NOW).serial == 1
    assert make_client().last_accepted(NOW).serial == 1


def test_a_refused_copy_still_blocks_a_rollback_below_its_serial(server, make_client, feed_dir):
    old = publish(server, feed_bytes(1))
    make_client().check(NOW)
    publish(server, feed_bytes(2))
    make_client().check(NOW)
    (feed_dir / "feed.json.minisig").write_bytes(signed(b"garbage"))
    publish(server, old)

    with pytest.raises(FeedReplayed, match="feed serial 1 is lower than the accepted 2") as caught:
        make_client().check(NOW)
    assert "no feed is in force (the stored one was refused on load)" in str(caught.value)


def test_a_stored_feed_signed_by_a_key_no_longer_trusted_is_not_used(accepted_serial_1, make_client):
    with pytest.raises(SignatureError, match="not a trusted key"):
        make_client(trusted_keys=[OTHER_KEY.public_key()]).last_accepted(NOW)


def test_a_kept_feed_that_expired_is_reported_not_silently_used(server, make_client):
    publish(server, feed_bytes(1, expires_at=NOW + timedelta(hours=1)))
    client = make_client()
    client.check(NOW)
    later = NOW + timedelta(hours=2)

    with pytest.raises(FeedExpired, match=r"the last accepted feed \(serial 1, .*\) expired at"):
        client.last_accepted(later)
    with pytest.raises(FeedExpired):
        client.check(later)  # the server has nothing newer: 304
    with pytest.raises(FeedExpired):
        make_client().last_accepted(later)
    assert client.last_accepted(NOW).serial == 1

    publish(server, feed_bytes(2))
    assert client.check(later).serial == 2
    assert client.last_accepted(later).serial == 2


def test_a_disk_error_while_storing_changes_nothing(server, accepted_serial_1, feed_dir, monkeypatch):
    on_disk = disk(feed_dir)
    publish(server, feed_bytes(2))

    def failing_replace(source, destination):
        raise OSError(errno.EIO, "Input/output error", str(destination))

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", failing_replace)
        with pytest.raises(StoreError, match="cannot store the accepted feed .*Input/output error.*serial 1\\) stays in force"):
            accepted_serial_1.check(NOW)

    assert accepted_serial_1.last_accepted(NOW).serial == 1
    assert {path: content for path, content in disk(feed_dir).items() if not path.startswith("accepted/")} == {
        path: content for path, content in on_disk.items() if not path.startswith("accepted/")
    }
    assert accepted_serial_1.check(NOW).serial == 2  # the disk recovered: the next poll stores it


class Crash(BaseException):
    """The process dies here: nothing after this point runs, no handler cleans up."""


def _crash_on_step(patch: pytest.MonkeyPatch, crash_at: int | None) -> list[str]:
    """Count (and at step ``crash_at``, crash on) every file-system step the client takes."""
    steps: list[str] = []

    def wrap(owner, name):
        real = getattr(owner, name)

        def step(*args, **kwargs):
            if crash_at is not None and len(steps) == crash_at:
                raise Crash(f"{name} #{crash_at}")
            steps.append(name)
            return real(*args, **kwargs)

        patch.setattr(owner, name, step)

    for name in ("replace", "fsync", "symlink", "mkdir", "chmod", "rmdir", "unlink"):
        wrap(os, name)
    patch.setattr(client_module, "open", open, raising=False)
    wrap(client_module, "open")
    return steps


def test_a_crash_at_any_step_of_storing_leaves_a_complete_accepted_feed(server, make_client, tmp_path):
    base = tmp_path / "base"
    publish(server, feed_bytes(1))
    make_client(base).check(NOW)
    new = publish(server, feed_bytes(2))

    dry = shutil.copytree(base, tmp_path / "dry", symlinks=True)
    with pytest.MonkeyPatch.context() as patch:
        steps = _crash_on_step(patch, None)
        assert make_client(dry).check(NOW).serial == 2
    assert len(steps) >= 8, steps

    outcomes = []
    for crash_at in range(len(steps)):
        work = shutil.copytree(base, tmp_path / f"crash-{crash_at}", symlinks=True)
        with pytest.MonkeyPatch.context() as patch:
            _crash_on_step(patch, crash_at)
            with pytest.raises(Crash):
                make_client(work).check(NOW)

        restarted = make_client(work)
        serial = restarted.last_accepted(NOW).serial
        outcomes.append(serial)
        stored, signature = read_feed_files(work / "feed.json", MAX_BYTES)
        assert verify_feed(stored, signature, TRUSTED, now=NOW, max_bytes=MAX_BYTES).serial == serial
        assert json.loads((work / "feed.meta.json").read_bytes())["serial"] == serial

        result = restarted.check(NOW)  # the next poll finishes the job and sweeps leftovers
        assert result.serial == 2 and (work / "feed.json").read_bytes() == new
        if result.changed:
            assert len(os.listdir(work / "accepted")) == 1
            assert not [name for name in os.listdir(work) if ".link-" in name]

    assert outcomes[0] == 1 and outcomes[-1] == 2
    assert outcomes == sorted(outcomes), "once the switch is made, the new feed is the accepted one"
