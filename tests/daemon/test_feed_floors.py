"""The daemon's feed client takes its floors from the agent's own state and config.

A rollback floor kept only in ``<state_dir>/feed`` is gone with that folder; the agent's store
remembers the serials it used too (the feed state, and each revision's feed serial), so an older
feed stays refused. And ``[download]`` is what a slow mirror is measured against.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.config import config_from_dict
from agent.daemon.service import AgentService
from agent.errors import FeedReplayed, FeedUnavailable
from agent.feed.signature import SecretKey, sign
from agent.store import Store
from tests.builders import NOW, FeedBuilder
from tests.feedserver import FeedServer

KEY = SecretKey.generate()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FeedServer]:
    with FeedServer(tmp_path / "www") as running:
        yield running


def publish(server: FeedServer, serial: int) -> None:
    data = FeedBuilder(serial=serial).bytes()
    server.publish("feed.json", data)
    server.publish("feed.json.minisig", sign(data, KEY, trusted_comment="file:feed.json").encode())


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def open_service(server: FeedServer, state_dir: Path) -> Iterator[Callable[..., AgentService]]:
    """An agent on ``state_dir`` polling ``server`` in this process (no worker thread, no socket)."""
    opened: list[AgentService] = []

    def open_(**download: object) -> AgentService:
        config = config_from_dict({
            "state_dir": str(state_dir),
            "feed": {"url": server.url_for("feed.json"), "trusted_keys": [KEY.public_key().to_base64()]},
            "policy": {"channel": "frozen"},
            "download": download,
        })
        service = AgentService(config, "host-01", clock=lambda: NOW)
        opened.append(service)
        return service

    yield open_
    for service in opened:
        service.close()


def test_losing_the_feed_folder_does_not_let_an_older_feed_in(server, open_service, state_dir):
    publish(server, 5)
    first = open_service()
    assert first.poll().startswith("feed serial 5")
    first.close()
    shutil.rmtree(state_dir / "feed")
    publish(server, 4)  # validly signed and unexpired, but older than what this host used

    with pytest.raises(FeedReplayed, match=r"feed serial 4 is lower than serial 5, which the agent's state records"):
        open_service().poll()


def test_a_revision_deployed_from_a_newer_feed_raises_the_floor_too(server, open_service, state_dir):
    """``id1 agent run --once`` records the feed serial in the revisions it deploys, not in the
    feed state: either is enough."""
    with Store.open(state_dir) as store:
        store.revisions.add({"platform": None, "suites": {}}, feed_serial=7, deployment_id=None)
    publish(server, 6)
    service = open_service()

    with pytest.raises(FeedReplayed, match="feed serial 6 is lower than serial 7"):
        service.poll()

    publish(server, 7)
    assert service.poll().startswith("feed serial 7")


def test_the_download_table_sets_the_rate_a_slow_feed_mirror_is_held_to(server, open_service):
    publish(server, 1)
    server.trickle("/feed.json", every_s=0.5)  # 2 bytes a second

    with pytest.raises(FeedUnavailable, match=r"too slow: \d+ B/s over the last \d\.\d s, below the floor of 2\.0 KiB/s"):
        open_service(min_rate=2048, rate_window="1s").poll()
