"""A host whose config has no feed yet (as the Debian package installs it): the daemon serves the
API, says there is no feed, and checks none."""

from __future__ import annotations

import re

import pytest

from tests.daemon.site import Site
from tests.test_engine import SYSTEMCTL3


def test_without_feed_url_the_agent_serves_the_api_and_says_so():
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    site = Site()
    try:
        text = re.sub(r'(?m)^url = .*\n', "", site.config_text("manual-approval"))
        site.config.write_text(text)
        site.start()
        status = site.status()
        assert status["feed_url"] is None and status["revision"] is None and status["activity"] == "idle"
        checked = site.cli("check")
        assert checked.code == 5 and "feed.url is not set" in checked.err
        assert site.stop() == 0
    finally:
        site.close()
