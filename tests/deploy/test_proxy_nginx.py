"""The blue-green proxy against a real nginx (Debian's, started here with its own prefix): traffic
moves with the include, a bad include or a failed reload changes nothing users see, and a request
in flight on the old colour still completes after the switch — the property blue-green rests on."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time

import pytest

from agent.deploy.proxy import (
    NginxProxy,
    Upstream,
    ask_probe,
    loaded_probe,
    render_include,
)
from agent.errors import ProxyError, ProxyRefused
from tests.nginx import Backend, Nginx
from tests.ports import free_port

LISTEN = "127.0.0.1"
REF = "core/api"
DEADLINE_S = 10.0


@pytest.fixture
def nginx(tmp_path):
    with Nginx(tmp_path / "nginx") as running:
        yield running


@pytest.fixture
def colours():
    with Backend("blue") as blue, Backend("green") as green:
        yield {"blue": blue, "green": green}


def get(port: int, path: str = "/", *, timeout: float = 5.0) -> tuple[int, str]:
    connection = http.client.HTTPConnection(LISTEN, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def answer(port: int) -> str | None:
    try:
        return get(port)[1]
    except OSError:
        return None


def wait_for_answer(port: int, expected: str, nginx: Nginx) -> None:
    """New connections to ``port`` answer ``expected`` before the deadline (nginx's old workers
    may take a few of the first ones)."""
    deadline = time.monotonic() + DEADLINE_S
    while (said := answer(port)) != expected:
        assert time.monotonic() < deadline, f"port {port} still answers {said!r}, not {expected!r}\n{nginx.error_log()[-2000:]}"
        time.sleep(0.02)


def switch_to(proxy: NginxProxy, colour: str, public: int, colours: dict[str, Backend]) -> str:
    live = {REF: Upstream(public, colour, colours[colour].port)}
    text = render_include(live, LISTEN)
    proxy.apply(text, loaded=loaded_probe(live, LISTEN))
    return text


def proxy_for(nginx: Nginx, **kwargs) -> NginxProxy:
    return NginxProxy(nginx.include, nginx.test_command, nginx.reload_command, **kwargs)


def test_the_public_port_answers_the_live_colour_and_follows_the_switch(nginx, colours):
    proxy, public = proxy_for(nginx), free_port()
    text = switch_to(proxy, "blue", public, colours)
    assert proxy.current() == text and nginx.include.stat().st_mode & 0o777 == 0o644
    wait_for_answer(public, "blue", nginx)
    switch_to(proxy, "green", public, colours)
    wait_for_answer(public, "green", nginx)
    switch_to(proxy, "blue", public, colours)
    wait_for_answer(public, "blue", nginx)


def test_requests_pass_through_as_if_sent_to_the_colour(nginx, colours):
    proxy, public = proxy_for(nginx), free_port()
    switch_to(proxy, "blue", public, colours)
    wait_for_answer(public, "blue", nginx)
    body = b"x" * (3 * 1024 * 1024)  # over nginx's default 1 MiB body limit: the service decides its limits
    connection = http.client.HTTPConnection(LISTEN, public, timeout=10)
    try:
        connection.request("POST", "/upload", body=body, headers={"Host": "api.example.com:8443"})
        response = connection.getresponse()
        assert (response.status, response.read().decode()) == (200, f"blue {len(body)}")
    finally:
        connection.close()
    seen = colours["blue"].seen[-1]
    assert seen["Host"] == "api.example.com:8443"
    assert seen["X-Forwarded-For"] == "127.0.0.1" and seen["X-Real-IP"] == "127.0.0.1"
    assert "X-Id1-Probe" not in seen  # the probe is answered by nginx, never by the service


def test_an_include_nginx_refuses_is_put_back_byte_for_byte_and_traffic_stays(nginx, colours):
    proxy, public = proxy_for(nginx), free_port()
    good = switch_to(proxy, "blue", public, colours)
    wait_for_answer(public, "blue", nginx)
    green = render_include({REF: Upstream(public, "green", colours["green"].port)}, LISTEN)
    bad = green.replace(f"listen {LISTEN}:{public};", f"listen {LISTEN}:99999;")
    with pytest.raises(ProxyRefused) as refused:
        proxy.apply(bad)
    said = str(refused.value)
    assert "\n" not in said and "[emerg]" in said and 'invalid port in "127.0.0.1:99999"' in said
    assert said.endswith("the previous include is back, nothing switched")
    assert nginx.include.read_bytes() == good.encode()
    assert [answer(public) for _ in range(5)] == ["blue"] * 5


def test_a_first_include_nginx_refuses_is_removed(nginx):
    proxy, public = proxy_for(nginx), free_port()
    bad = render_include({REF: Upstream(public, "blue", free_port())}, LISTEN).replace("proxy_pass", "proxy_passs")
    with pytest.raises(ProxyRefused, match="unknown directive"):
        proxy.apply(bad)
    assert not nginx.include.exists() and proxy.current() is None


def test_a_failed_reload_puts_the_include_back(nginx, colours):
    public = free_port()
    good = switch_to(proxy_for(nginx), "blue", public, colours)
    wait_for_answer(public, "blue", nginx)
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('Job for nginx.service failed.\\n'); sys.exit(1)"]
    proxy = NginxProxy(nginx.include, nginx.test_command, failing)
    with pytest.raises(ProxyError) as failed:
        switch_to(proxy, "green", public, colours)
    assert not isinstance(failed.value, ProxyRefused)
    assert "(switch.nginx_reload) failed (exit 1): Job for nginx.service failed." in str(failed.value)
    assert nginx.include.read_bytes() == good.encode()
    # and nginx, reloaded now for whatever reason, still sends traffic to blue
    subprocess.run(nginx.reload_command, check=True, capture_output=True)
    assert [answer(public) for _ in range(5)] == ["blue"] * 5


def test_a_reload_nginx_cannot_carry_out_is_caught_and_put_back(nginx, colours):
    """``nginx -t`` does not bind and ``nginx -s reload`` returns once signalled: a public port
    another program holds passes both. The probe is what notices traffic never moved."""
    proxy, public = proxy_for(nginx), free_port()
    good = switch_to(proxy, "blue", public, colours)
    wait_for_answer(public, "blue", nginx)
    with socket.socket() as squatter:
        squatter.bind((LISTEN, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        live = {REF: Upstream(public, "green", colours["green"].port), "core/web": Upstream(taken, "blue", colours["blue"].port)}
        with pytest.raises(ProxyError, match=r"nginx did not load .* within 3 s .*the previous include is back, nothing switched"):
            proxy.apply(render_include(live, LISTEN), loaded=loaded_probe(live, LISTEN), wait_s=3)
    assert nginx.include.read_bytes() == good.encode()
    assert [answer(public) for _ in range(5)] == ["blue"] * 5
    assert "Address already in use" in nginx.error_log()


def test_a_request_in_flight_on_the_old_colour_completes_after_the_switch(nginx, colours):
    proxy, public = proxy_for(nginx), free_port()
    switch_to(proxy, "blue", public, colours)
    wait_for_answer(public, "blue", nginx)
    outcome: dict[str, object] = {}

    def long_request() -> None:
        try:
            outcome["answer"] = get(public, "/hold", timeout=30)
        except Exception as error:  # noqa: BLE001 (reported by the assertion below)
            outcome["answer"] = error

    client = threading.Thread(target=long_request)
    client.start()
    assert colours["blue"].held.wait(DEADLINE_S), "the long request never reached blue"
    switch_to(proxy, "green", public, colours)
    wait_for_answer(public, "green", nginx)  # new requests go to green while blue still holds one
    assert client.is_alive()
    colours["blue"].release()
    client.join(DEADLINE_S)
    assert outcome["answer"] == (200, "blue")


def test_the_probe_answers_the_loaded_generation_only(nginx, colours):
    proxy, public = proxy_for(nginx), free_port()
    blue = {REF: Upstream(public, "blue", colours["blue"].port)}
    green = {REF: Upstream(public, "green", colours["green"].port)}
    switch_to(proxy, "blue", public, colours)
    deadline = time.monotonic() + DEADLINE_S
    while ask_probe(loaded_probe(blue, LISTEN)) != loaded_probe(blue, LISTEN).answer:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ask_probe(loaded_probe(green, LISTEN)) != loaded_probe(green, LISTEN).answer


def test_an_ipv6_listen_address_is_one_nginx_accepts(nginx, colours):
    proxy, public = proxy_for(nginx), free_port()
    live = {REF: Upstream(public, "blue", colours["blue"].port)}
    text = render_include(live, "::1")
    assert f"listen [::1]:{public};" in text
    proxy.apply(text)  # nginx -t accepts it and the reload succeeds (::1 may be absent: no probe)
    assert proxy.current() == text


def test_applying_what_nginx_serves_already_runs_nothing_and_keeps_idle_connections(nginx, colours):
    proxy, public = proxy_for(nginx), free_port()
    switch_to(proxy, "blue", public, colours)
    wait_for_answer(public, "blue", nginx)
    ran = []

    def run(argv, **kwargs):
        ran.append(argv)
        return subprocess.run(argv, **kwargs)

    again = proxy_for(nginx, run=run)
    switch_to(again, "blue", public, colours)  # an undo or a resumed switch that finds it done
    assert ran == []  # no nginx -t, no reload: a reload would close every idle keep-alive connection
    switch_to(again, "green", public, colours)
    assert len(ran) == 2  # a real change is tested and loaded as before
    wait_for_answer(public, "green", nginx)
