"""The pure side of the blue-green proxy (agent.deploy.proxy): the colours' ports and the include
nginx runs. What real nginx does with the include is tests/deploy/test_proxy_nginx.py."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import AgentConfig
from agent.deploy.proxy import (
    HEADER,
    ColourPorts,
    NginxProxy,
    Upstream,
    assign_ports,
    include_generation,
    loaded_probe,
    render_include,
)
from agent.errors import PortsUnavailable, ProxyError, ProxyRefused

RANGE = range(20000, 21000)


# ── ports ────────────────────────────────────────────────────────────────────────────────────


def test_new_capabilities_take_the_lowest_free_pairs_in_name_order():
    assert assign_ports({"core/web": 8081, "core/api": 8080}, {}, RANGE) == {
        "core/api": ColourPorts(20000, 20001),
        "core/web": ColourPorts(20002, 20003),
    }


def test_a_capability_keeps_its_ports_when_others_come_and_go():
    first = assign_ports({"core/api": 8080, "core/web": 8081}, {}, RANGE)
    # core/api leaves, analytics/ui arrives (sorted before core/web): core/web keeps its pair,
    # and the newcomer takes the pair core/api gave back.
    second = assign_ports({"core/web": 8081, "analytics/ui": 8082}, first, RANGE)
    assert second == {"core/web": ColourPorts(20002, 20003), "analytics/ui": ColourPorts(20000, 20001)}
    assert assign_ports({"core/web": 8081, "analytics/ui": 8082}, second, RANGE) == second


def test_a_kept_pair_that_no_longer_fits_is_given_a_new_one():
    kept = {"core/api": ColourPorts(30000, 30001), "core/web": ColourPorts(20000, 20000)}
    assert assign_ports({"core/api": 8080, "core/web": 8081}, kept, RANGE) == {
        "core/api": ColourPorts(20000, 20001), "core/web": ColourPorts(20002, 20003)}


def test_two_kept_pairs_that_overlap_leave_the_second_to_move():
    kept = {"a/x": ColourPorts(20000, 20001), "b/y": ColourPorts(20001, 20002)}
    assert assign_ports({"a/x": 1, "b/y": 2}, kept, RANGE) == {"a/x": ColourPorts(20000, 20001), "b/y": ColourPorts(20002, 20003)}


def test_a_range_too_small_says_how_many_ports_are_needed():
    with pytest.raises(PortsUnavailable, match=r"switch.ports 20000-20002 has no two free ports left for core/web: "
                                               r"2 blue-green capabilities need 4 ports; widen switch.ports"):
        assign_ports({"core/api": 8080, "core/web": 8081}, {}, range(20000, 20003))


def test_a_public_port_inside_the_private_range_is_refused():
    with pytest.raises(PortsUnavailable, match=r"switch.ports 20000-20999 holds the public port of core/api \(20080\)"):
        assign_ports({"core/api": 20080}, {}, RANGE)


refs = st.from_regex(r"[a-c]/[a-e]", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(
    public=st.dictionaries(refs, st.integers(1, 19999), max_size=8),
    kept=st.dictionaries(refs, st.builds(ColourPorts, st.integers(19990, 20030), st.integers(19990, 20030)), max_size=8),
    size=st.integers(2, 24),
)
def test_assigned_ports_are_distinct_in_range_and_keep_what_fits(public, kept, size):
    ports = range(20000, 20000 + size)
    try:
        assigned = assign_ports(public, kept, ports)
    except PortsUnavailable:
        assert 2 * len(public) > size - size % 2 or kept  # too small, or kept pairs sit across aligned slots
        return
    assert assigned.keys() == public.keys()
    used = [port for pair in assigned.values() for port in (pair.blue, pair.green)]
    assert len(used) == len(set(used)) and all(port in ports for port in used)
    # a kept pair is kept whenever it fits and no capability earlier by name took one of its ports
    taken: set[int] = set()
    for ref in sorted(public):
        pair = kept.get(ref)
        if pair is not None and pair.blue != pair.green and {pair.blue, pair.green} <= set(ports) - taken:
            assert assigned[ref] == pair
            taken |= {pair.blue, pair.green}
    assert assign_ports(public, assigned, ports) == assigned  # stable once assigned


def test_colour_ports_round_trip_through_json():
    pair = ColourPorts(20000, 20001)
    assert ColourPorts.from_json(pair.to_json()) == pair and pair.of("green") == 20001
    with pytest.raises(ValueError, match="'red' is not a colour"):
        pair.of("red")


# ── the include ──────────────────────────────────────────────────────────────────────────────

LIVE = {"core/web": Upstream(8081, "blue", 20002), "core/api": Upstream(8080, "green", 20001)}


def test_the_include_routes_each_public_port_to_its_live_colour():
    text = render_include(LIVE, "0.0.0.0")
    assert text.startswith(HEADER + "\n")
    api, web = text.index("# core/api: live colour green"), text.index("# core/web: live colour blue")
    assert api < web  # capabilities in name order
    assert "upstream id1_8080 {\n    server 127.0.0.1:20001;\n    keepalive 32;\n}" in text
    assert "listen 0.0.0.0:8080;" in text and "proxy_pass http://id1_8080;" in text
    assert "listen 0.0.0.0:8081;" in text and "server 127.0.0.1:20002;" in text
    assert 'proxy_http_version 1.1;' in text and "proxy_set_header Connection $id1_upstream_connection;" in text


def test_the_include_is_a_function_of_what_is_live():
    again = dict(reversed(list(LIVE.items())))
    assert render_include(again, "0.0.0.0") == render_include(LIVE, "0.0.0.0")
    moved = {**LIVE, "core/api": Upstream(8080, "blue", 20000)}
    assert include_generation(moved, "0.0.0.0") != include_generation(LIVE, "0.0.0.0")
    assert include_generation(LIVE, "::") != include_generation(LIVE, "0.0.0.0")


def test_ipv6_listen_addresses_are_bracketed_and_probed_on_loopback():
    assert "listen [::]:8080;" in render_include(LIVE, "::")
    assert "listen [2001:db8::1]:8080;" in render_include(LIVE, "2001:db8:0::1")
    assert loaded_probe(LIVE, "::").host == "::1"
    assert loaded_probe(LIVE, "0.0.0.0").host == "127.0.0.1"
    assert loaded_probe(LIVE, "192.0.2.7").host == "192.0.2.7"


def test_the_probe_answer_is_in_the_include_and_names_its_generation():
    probe = loaded_probe(LIVE, "0.0.0.0")
    generation = include_generation(LIVE, "0.0.0.0")
    assert (probe.port, probe.answer) == (8080, f"id1 core/api green {generation}")
    assert f'return 200 "{probe.answer}\\n";' in render_include(LIVE, "0.0.0.0")
    assert loaded_probe({}, "0.0.0.0") is None


def test_an_include_without_blue_green_capabilities_is_only_its_header():
    text = render_include({}, "0.0.0.0")
    assert all(line.startswith("#") for line in text.splitlines())


def test_two_capabilities_on_one_public_port_are_refused_by_name():
    with pytest.raises(PortsUnavailable, match="core/api and core/web both declare public port 8080"):
        render_include({"core/api": Upstream(8080, "blue", 20000), "core/web": Upstream(8080, "blue", 20002)}, "0.0.0.0")


# ── the edge, without nginx ──────────────────────────────────────────────────────────────────


def test_a_file_the_agent_did_not_write_is_never_replaced(tmp_path):
    include = tmp_path / "nginx.conf"
    include.write_text("user www-data;\nevents {}\n")
    proxy = NginxProxy(include, ["true"], ["true"])
    with pytest.raises(ProxyError, match="was not written by id1-agent .* refusing to replace it"):
        proxy.apply(render_include(LIVE, "0.0.0.0"))
    assert include.read_text() == "user www-data;\nevents {}\n"


def test_a_missing_nginx_is_one_clear_error_and_the_file_goes_again(tmp_path):
    include = tmp_path / "id1.conf"
    proxy = NginxProxy(include, ["/nonexistent/nginx", "-t"], ["true"])
    with pytest.raises(ProxyError, match=r"cannot run '/nonexistent/nginx' \(switch.nginx_test\): no such command; "
                                         r".*id1.conf is removed again, nothing switched"):
        proxy.apply(render_include(LIVE, "0.0.0.0"))
    assert not include.exists() and proxy.current() is None


def test_nginx_output_is_quoted_on_one_safe_line(tmp_path):
    include, noisy = tmp_path / "id1.conf", tmp_path / "nginx"
    noisy.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write('nginx: [emerg] bad \\x1b[31mthing\\nnginx: test failed\\n')\nsys.exit(1)\n")
    noisy.chmod(0o755)
    with pytest.raises(ProxyRefused) as refused:
        NginxProxy(include, [str(noisy), "-t"], ["true"]).apply(render_include(LIVE, "0.0.0.0"))
    said = str(refused.value)
    assert "nginx: [emerg] bad \\x1b[31mthing" in said and "\n" not in said and "\x1b" not in said
    assert "test failed" not in said  # only nginx's problem lines, when it names one


def test_the_proxy_runs_the_configured_commands_on_the_configured_file():
    proxy = NginxProxy.from_config(AgentConfig().switch)
    assert str(proxy.include_path) == "/etc/nginx/conf.d/id1-upstreams.conf"
    assert (proxy.test_command, proxy.reload_command) == (["nginx", "-t"], ["systemctl", "reload", "nginx"])


def test_only_an_include_made_by_render_include_is_applied(tmp_path):
    with pytest.raises(ValueError, match="not an include made by render_include"):
        NginxProxy(tmp_path / "id1.conf", ["true"], ["true"]).apply("server { listen 80; }\n")
