"""The blue-green contract (docs/feed-format.md "Switch", docs/configuration.md [switch]): what a
feed may declare, what the planner's manifest carries to the deployer, and the [switch] table."""

from __future__ import annotations

import json

import pytest

from agent.config import AgentConfig, config_from_dict
from agent.errors import ConfigError, FeedInvalid, ManifestInvalid
from agent.feed.catalog import _keys_read, _keys_written, parse_feed
from agent.feed.units import colour_unit, template_unit_problem
from agent.planning.manifest import DeployedCapability, Manifest, load_manifest
from tests.builders import FeedBuilder

API_UNITS = ["id1-core-api@.service"]
API_HEALTH = {"http": "http://127.0.0.1:@PORT@/healthz", "timeout_s": 30}
BLUE_GREEN = {"mode": "blue-green", "port": 8080}


def feed(*, api: dict | None = None, web: dict | None = None) -> FeedBuilder:
    """core/api and core/web in platform 1.0.0; each a blue-green release unless told otherwise."""
    api = {"units": API_UNITS, "health": API_HEALTH, "switch": BLUE_GREEN} | (api or {})
    web = {"units": ["id1-core-web@.service"], "health": {"http": "http://127.0.0.1:@PORT@/"},
           "switch": {"mode": "blue-green", "port": 8081}} | (web or {})
    return (FeedBuilder().capability("core/api", "1.0.0", **api).capability("core/web", "1.0.0", **web)
            .suite("core", "1.0.0", {"api": "1.0.0", "web": "1.0.0"}).platform("1.0.0", {"core": "1.0.0"}))


def errors(builder: FeedBuilder) -> list[str]:
    with pytest.raises(FeedInvalid) as raised:
        parse_feed(builder.bytes())
    return [str(issue) for issue in raised.value.issues]


# ── the feed ─────────────────────────────────────────────────────────────────────────────────


def test_a_blue_green_release_is_read_with_its_public_port():
    catalog = feed().catalog()
    [api] = catalog.capabilities["core/api"].values()
    assert api.blue_green and api.switch.port == 8080


@pytest.mark.parametrize("switch", [None, {"mode": "restart"}, {}])
def test_without_switch_or_with_restart_a_release_restarts_as_before(switch):
    builder = FeedBuilder().capability("core/api", "1.0.0", switch=switch).suite("core", "1.0.0", {"api": "1.0.0"}).platform("1.0.0", {"core": "1.0.0"})
    [api] = builder.catalog().capabilities["core/api"].values()
    assert not api.blue_green


@pytest.mark.parametrize(("api", "expected"), [
    ({"switch": {"mode": "rolling", "port": 8080}}, "capabilities[0].switch.mode: Input should be 'restart' or 'blue-green'"),
    ({"switch": {"mode": "blue-green"}}, 'capabilities[0].switch.port: mode "blue-green" needs the public port nginx listens on (1-65535)'),
    ({"switch": {"mode": "blue-green", "port": 0}}, "capabilities[0].switch.port: Input should be greater than or equal to 1"),
    ({"switch": {"mode": "blue-green", "port": 65536}}, "capabilities[0].switch.port: Input should be less than or equal to 65535"),
    ({"switch": {"mode": "restart", "port": 8080}, "units": ["id1-core-api.service"], "health": None},
     'capabilities[0].switch.port: a public port is only for mode "blue-green"'),
    ({"switch": None, "units": ["id1-core-api.service"]}, 'capabilities[0].health: @PORT@ is filled in only for mode "blue-green"'),
    ({"units": ["id1-core-api.service"]}, ("capabilities[0].units[0]: 'id1-core-api.service' is not a template: a blue-green "
                                           "release lists templates, which the agent runs as @blue and @green (e.g. 'id1-core-api@.service')")),
    ({"units": ["id1-core-api@main.service"]}, "capabilities[0].units[0]: 'id1-core-api@main.service' is not a template"),
    ({"units": ["id1-core-web@.service"]}, "capabilities[0].units[0]: 'id1-core-web@.service' is not a template core/api may own"),
    ({"units": ["id1-core-api@.socket"]}, ("capabilities[0].units: a blue-green release runs at least one service template, "
                                           "such as 'id1-core-api@.service'")),
    ({"health": None}, "capabilities[0].health: a blue-green release needs a check of the colour's own port"),
    ({"health": {"timeout_s": 5}}, "capabilities[0].health: a blue-green release needs a check of the colour's own port"),
    ({"health": {"http": "http://127.0.0.1:8080/healthz"}}, "capabilities[0].health.http: names no @PORT@"),
    ({"health": {"http": "http://127.0.0.1:@PORT@/", "command": ["/usr/bin/check", "8080"]}}, "capabilities[0].health.command: names no @PORT@"),
])
def test_a_release_that_breaks_the_switch_rules_is_named_by_path(api, expected):
    builder = feed(api=api)
    for key in ("switch", "health"):
        if key in api and api[key] is None:
            builder.data["capabilities"][0].pop(key, None)
    found = errors(builder)
    assert any(error.startswith(expected) for error in found), found


@pytest.mark.parametrize("health", [{"command": ["/usr/bin/check", "--port", "@PORT@"]}, {"command": "check --port=@PORT@"},
                                    {"http": "http://[::1]:@PORT@/healthz", "command": "check @PORT@"}])
def test_a_health_command_may_name_the_port_instead(health):
    feed(api={"health": health}).catalog()


def test_a_template_in_a_restart_release_points_at_blue_green():
    builder = FeedBuilder().capability("core/api", "1.0.0", units=["id1-core-api@.service"]).suite("core", "1.0.0", {"api": "1.0.0"}).platform("1.0.0", {"core": "1.0.0"})
    [error] = errors(builder)
    assert error.startswith("capabilities[0].units[0]: 'id1-core-api@.service' is a template: list its instances")
    assert 'or declare "switch": {"mode": "blue-green"} to run it as @blue and @green' in error


def test_two_blue_green_capabilities_of_one_platform_may_not_share_a_public_port():
    found = errors(feed(web={"switch": {"mode": "blue-green", "port": 8080}}))
    assert found == [("platforms[0]: core/api 1.0.0 and core/web 1.0.0 both declare public port 8080 (switch.port): "
                      "each blue-green capability of a platform release needs a port of its own")]


def test_a_port_may_pass_from_one_capability_to_another_between_platform_releases():
    builder = feed()
    builder.capability("core/api", "2.0.0", units=API_UNITS, health=API_HEALTH, switch={"mode": "blue-green", "port": 9090})
    builder.capability("core/web", "2.0.0", units=["id1-core-web@.service"], health={"http": "http://127.0.0.1:@PORT@/"},
                       switch={"mode": "blue-green", "port": 8080})
    builder.suite("core", "2.0.0", {"api": "2.0.0", "web": "2.0.0"}).platform("2.0.0", {"core": "2.0.0"})
    catalog = builder.catalog()  # 8080 is core/api's in 1.0.0 and core/web's in 2.0.0: no clash
    assert len(catalog.platforms) == 2


def test_a_feed_with_switches_needs_no_second_parse_for_duplicate_keys():
    # Every key written was read: the count the duplicate-key check rests on includes ``switch``.
    data = feed().bytes()
    assert _keys_written(data) == _keys_read(parse_feed(data).feed)


def test_a_switch_written_twice_is_refused():
    text = feed().bytes().decode().replace('"switch": {', '"switch": {"mode": "restart"}, "switch": {', 1)
    with pytest.raises(FeedInvalid, match=r"capabilities\[0\].switch: this key is written twice"):
        parse_feed(text.encode())


def test_template_units_run_as_two_colours():
    assert colour_unit("id1-core-api@.service", "blue") == "id1-core-api@blue.service"
    assert colour_unit("id1-core-api-worker@.socket", "green") == "id1-core-api-worker@green.socket"
    assert template_unit_problem("core/api", "id1-core-api-worker@.socket") is None
    assert "too long" in template_unit_problem("core/api", "id1-core-api-" + "x" * 235 + "@.service")


# ── the manifest the planner hands the deployer ──────────────────────────────────────────────


def api_entry(catalog) -> DeployedCapability:
    [release] = catalog.capabilities["core/api"].values()
    return DeployedCapability.from_release(release, "latest")


def test_the_manifest_carries_the_switch_and_its_hash_binds_it():
    entry = api_entry(feed().catalog())
    assert entry.model_dump(mode="json")["switch"] == {"mode": "blue-green", "port": 8080}
    manifest = Manifest(platform="1.0.0", suites={"core": {"version": "1.0.0", "capabilities": {"api": entry}}})
    moved = manifest.model_copy(deep=True)
    other_port = Manifest.model_validate(json.loads(json.dumps(moved.to_json()).replace('"port": 8080', '"port": 8081')))
    assert other_port.content_hash() != manifest.content_hash()  # a new port is a new approval
    assert Manifest.model_validate(manifest.to_json()).to_json() == manifest.to_json()  # stored and loaded back whole


def test_a_restart_manifest_is_what_it_was_before_blue_green_existed():
    entry = {"version": "2.1.0", "source": "latest", "artifact": {"url": "artifacts/core-api-2.1.0.tar.gz", "sha256": "a" * 64, "size": 10},
             "units": ["id1-core-api.service"], "health": {"http": "http://127.0.0.1:8081/healthz", "timeout_s": 60}}
    for switch in ({}, {"switch": {"mode": "restart"}}, {"switch": None}):
        manifest = Manifest.model_validate({"platform": "2.5.0", "suites": {"core": {"version": "1.2.0", "capabilities": {"api": entry | switch}}}})
        assert "switch" not in manifest.to_json()["suites"]["core"]["capabilities"]["api"]
        # the hash an agent from before blue-green gave this manifest: approvals stored then still bind
        assert manifest.content_hash() == "8788fdb960f91369c2cdbb7e3f7f58d91bfe47b43681191d8c71361942911422"


def test_a_manifest_file_with_a_broken_blue_green_entry_is_invalid(tmp_path):
    entry = api_entry(feed().catalog()).model_dump(mode="json")
    entry["health"] = {"http": "http://127.0.0.1:8080/healthz"}
    entry["units"] = ["id1-core-api.service"]
    path = tmp_path / "installed.json"
    path.write_text(json.dumps({"platform": "1.0.0", "suites": {"core": {"version": "1.0.0", "capabilities": {"api": entry}}}}))
    with pytest.raises(ManifestInvalid) as raised:
        load_manifest(path)
    said = str(raised.value)
    assert "suites.core.capabilities.api: units[0]: 'id1-core-api.service' is not a template" in said
    assert "health.http: names no @PORT@" in said


# ── [switch] ─────────────────────────────────────────────────────────────────────────────────


def test_the_switch_table_defaults_to_the_documented_values():
    switch = AgentConfig().switch
    assert (switch.ports, switch.port_range, switch.nginx_include) == ("20000-20999", range(20000, 21000), "/etc/nginx/conf.d/id1-upstreams.conf")
    assert (switch.nginx_test, switch.nginx_reload) == (["nginx", "-t"], ["systemctl", "reload", "nginx"])
    assert (switch.drain_s, switch.listen) == (30.0, "0.0.0.0")


@pytest.mark.parametrize(("table", "expected"), [
    ({"ports": "20000"}, "switch.ports: '20000' is not a port range such as 20000-20999"),
    ({"ports": "80-1000"}, "switch.ports: '80-1000': the ports must run from 1024 to 65535, low to high"),
    ({"ports": "30000-20000"}, "switch.ports: '30000-20000': the ports must run from 1024 to 65535, low to high"),
    ({"ports": "60000-70000"}, "switch.ports: '60000-70000': the ports must run from 1024 to 65535, low to high"),
    ({"ports": "20000-20000"}, "switch.ports: '20000-20000' holds one port; a capability's two colours need two"),
    ({"nginx_include": "conf.d/id1.conf"}, "switch.nginx_include: 'conf.d/id1.conf' is not the absolute path of a file"),
    ({"nginx_test": []}, "switch.nginx_test: empty: give the program and its arguments as a list of strings"),
    ({"nginx_reload": "systemctl reload nginx"}, "switch.nginx_reload: Input should be a valid list"),
    ({"drain": "soon"}, "switch.drain: 'soon' is not a duration such as 30s, 15m, 6h or 1d"),
    ({"listen": "localhost"}, "switch.listen: 'localhost' is not an IP address such as 0.0.0.0, 127.0.0.1 or ::"),
    ({"listen": "fe80::1%eth0"}, "switch.listen: 'fe80::1%eth0': nginx cannot listen on a scoped address (%eth0)"),
    ({"port": "8080"}, "switch.port: unknown key"),
])
def test_switch_values_are_checked_by_key_path(table, expected):
    with pytest.raises(ConfigError) as raised:
        config_from_dict({"switch": table})
    assert any(str(issue).startswith(expected) for issue in raised.value.issues), raised.value.issues


@pytest.mark.parametrize("ports", ["1024-1025", "20000 - 20001", "65534-65535"])
def test_a_range_of_two_ports_or_more_is_accepted(ports):
    assert len(config_from_dict({"switch": {"ports": ports, "listen": "::"}}).switch.port_range) == 2


@pytest.mark.parametrize(("drain", "seconds"), [("0s", 0.0), ("0", 0.0), ("1s", 1.0), ("2m", 120.0)])
def test_a_drain_may_be_none_at_all(drain, seconds):
    assert config_from_dict({"switch": {"drain": drain}}).switch.drain_s == seconds
