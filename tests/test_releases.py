"""Release folders, the atomic ``current`` switch, and unit files with placeholders filled."""

from __future__ import annotations

import os

import pytest

from agent.deploy.releases import ReleaseLayout
from agent.errors import ReleaseError


@pytest.fixture
def layout(tmp_path) -> ReleaseLayout:
    return ReleaseLayout(tmp_path / "state")


def make_release(layout: ReleaseLayout, ref: str, version: str, unit: str | None = None):
    folder = layout.release_dir(ref, version)
    (folder / "systemd").mkdir(parents=True)
    (folder / "bin").mkdir()
    if unit is not None:
        (folder / "systemd" / "id1-core-auth.service").write_text(unit)
    return folder


def test_current_switches_atomically_between_versions(layout):
    make_release(layout, "core/auth", "1.0.0")
    make_release(layout, "core/auth", "1.0.1")
    assert layout.current_version("core/auth") is None
    layout.switch_current("core/auth", "1.0.0")
    assert layout.current_version("core/auth") == "1.0.0"
    assert (layout.current_link("core/auth") / "bin").is_dir()
    layout.switch_current("core/auth", "1.0.1")
    assert layout.current_version("core/auth") == "1.0.1"
    assert os.readlink(layout.current_link("core/auth")) == "1.0.1"  # relative link
    assert not [p for p in layout.capability_dir("core/auth").iterdir() if p.name.startswith(".current")]


def test_switching_to_a_missing_release_changes_nothing(layout):
    make_release(layout, "core/auth", "1.0.0")
    layout.switch_current("core/auth", "1.0.0")
    with pytest.raises(ReleaseError, match="1.9.9"):
        layout.switch_current("core/auth", "1.9.9")
    assert layout.current_version("core/auth") == "1.0.0"


def test_retention_never_removes_the_current_release(layout):
    make_release(layout, "core/auth", "1.0.0")
    make_release(layout, "core/auth", "1.0.1")
    layout.switch_current("core/auth", "1.0.1")
    assert layout.kept_versions("core/auth") == ["1.0.0", "1.0.1"]
    with pytest.raises(ValueError, match="is current"):
        layout.remove_release("core/auth", "1.0.1")
    layout.remove_release("core/auth", "1.0.0")
    assert layout.kept_versions("core/auth") == ["1.0.1"]
