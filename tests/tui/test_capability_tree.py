"""The Overview's capability tree: a blue-green capability shows the colour users are on."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from tui.widgets.capability_tree import CapabilityTree

pytestmark = pytest.mark.asyncio

MANIFEST = {"platform": "1.1.0", "suites": {"core": {"version": "1.1.0", "capabilities": {
    "api": {"version": "2.0.0", "source": "latest"}, "auth": {"version": "1.0.0", "source": "latest"}}}}}


def status(live: str | None) -> dict:
    return {"revision": 2, "platform": "1.1.0", "capabilities": [
        {"capability": "core/api", "version": "2.0.0", "source": "latest", "units": [f"id1-core-api@{live}.service"],
         "live_colour": live, "public_port": 8080},
        {"capability": "core/auth", "version": "1.0.0", "source": "latest", "units": ["id1-core-auth.service"],
         "live_colour": None, "public_port": None}]}


class TreeApp(App):
    def compose(self) -> ComposeResult:
        yield CapabilityTree()


def leaves(tree: CapabilityTree) -> dict[str, str]:
    return {node.data: str(node.label) for suite in tree.root.children for node in suite.children}


async def test_the_live_colour_shows_beside_a_blue_green_capability_and_follows_a_switch():
    app = TreeApp()
    async with app.run_test() as pilot:
        tree = app.query_one(CapabilityTree)
        tree.show(MANIFEST, status("blue"))
        await pilot.pause()
        shown = leaves(tree)
        assert "blue live on :8080" in shown["core/api"] and "live" not in shown["core/auth"]

        tree.show(MANIFEST, status("green"))  # same manifest, the switch happened
        await pilot.pause()
        assert "green live on :8080" in leaves(tree)["core/api"]
