"""The colours table: one record per blue-green capability, kept across opens, refused when damaged."""

from __future__ import annotations

import json

import pytest

from agent.store import Store
from agent.store.records import ColourRecord, ColourRun

SHA = "a" * 64


def test_records_are_kept_across_opens_and_removed_one_by_one(tmp_path):
    store = Store.open(tmp_path)
    api = ColourRecord(public_port=8080, ports={"blue": 20000, "green": 20001}, live="blue",
                       runs={"blue": ColourRun(version="1.0.0", sha256=SHA)})
    store.colours.put("core/api", api)
    store.colours.put("core/web", api.model_copy(update={"public_port": 8081, "live": None}))
    store.close()

    again = Store.open(tmp_path)
    assert again.colours.get("core/api") == api and again.colours.get("core/web").live is None
    again.colours.remove("core/web")
    again.colours.remove("core/gone")  # nothing there: nothing written, no error
    assert list(again.colours.all()) == ["core/api"]
    again.close()


def test_a_damaged_colours_record_is_moved_aside_like_any_damage(tmp_path):
    store = Store.open(tmp_path)
    store.colours.put("core/api", ColourRecord(public_port=8080, ports={"blue": 20000, "green": 20001}))
    store.close()
    state = json.loads((tmp_path / "state.json").read_text())
    state["colours"]["1"]["capabilities"]["core/api"]["live"] = "purple"
    (tmp_path / "state.json").write_text(json.dumps(state))

    reopened = Store.open(tmp_path)
    try:
        assert reopened.colours.all() == {}
        [warning] = reopened.startup_warnings
        assert "colours[1].capabilities.core/api.live" in warning
    finally:
        reopened.close()


@pytest.mark.parametrize("ports", [{"blue": 0, "green": 20001}, {"blue": 20000, "purple": 20001}])
def test_a_record_with_impossible_ports_is_refused(ports):
    with pytest.raises(ValueError):
        ColourRecord(public_port=8080, ports=ports)
