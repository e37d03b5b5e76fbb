"""The blue-green switch as deployment steps, with a real nginx and real units (systemctl3)."""

from __future__ import annotations

import pytest

from agent.deploy.engine import (
    CHECKING_IDLE,
    DRAINING,
    STARTING_IDLE,
    STOPPING_OLD,
    SWITCHING_TRAFFIC,
    VERIFYING_PUBLIC,
)
from agent.store import DeploymentStatus
from tests.bluegreen import BlueGreenHost
from tests.test_engine import Crash

API = "core/api"
BLUE, GREEN = "id1-core-api@blue.service", "id1-core-api@green.service"


@pytest.fixture
def host(tmp_path):
    with BlueGreenHost(tmp_path) as box:
        yield box


def test_a_first_install_goes_live_in_blue_and_an_update_switches_to_green(host):
    first = host.deploy({API: "1.0.0"})
    assert (first.status, first.revision) == (DeploymentStatus.SUCCEEDED, 1), first.error
    assert host.answers(API, "1.0.0 blue")
    assert host.colour_states(API) == {"blue": "active", "green": "inactive"}
    assert host.enabled(BLUE) == "enabled"
    record = host.store.colours.get(API)
    assert record.live == "blue" and record.public_port == host.public[API]
    text = (host.unit_dir / BLUE).read_text()
    assert f"serve.py {record.ports['blue']} " in text and "/releases/core/api/1.0.0/bin" in text and "@PORT@" not in text
    assert not (host.unit_dir / "id1-core-api@.service").exists()  # the colours' own files, no template

    second = host.deploy({API: "1.1.0"})
    assert (second.status, second.revision) == (DeploymentStatus.SUCCEEDED, 2), second.error
    assert host.answers(API, "1.1.0 green")
    assert host.colour_states(API) == {"blue": "inactive", "green": "active"}
    assert (host.enabled(GREEN), host.enabled(BLUE)) == ("enabled", "disabled")
    assert f"serve.py {record.ports['green']} " in (host.unit_dir / GREEN).read_text()
    assert (host.unit_dir / BLUE).exists()  # kept: a rollback starts it again as it was
    assert host.starts(API) == ["blue 1.0.0", "green 1.1.0"]
    journal = [entry.state for entry in host.store.deployments.get(second.deployment_id).journal]
    assert journal[journal.index(STARTING_IDLE):journal.index(STOPPING_OLD) + 1] == [
        STARTING_IDLE, CHECKING_IDLE, SWITCHING_TRAFFIC, VERIFYING_PUBLIC, DRAINING, STOPPING_OLD]
    assert "restarting" not in journal  # nothing was stopped to be started again
    assert (host.state_dir / "releases" / "core" / "api" / "current").resolve().name == "1.1.0"


def test_a_release_unhealthy_in_its_own_colour_never_gets_users(host):
    host.deploy({API: "1.0.0"})
    include = host.nginx.include.read_text()

    failed = host.deploy({API: "1.1.0"}, {API: "broken"})

    assert failed.status == DeploymentStatus.ROLLED_BACK
    assert "is not healthy in colour green" in failed.error and "users stayed on blue" in failed.error
    assert host.answers(API, "1.0.0 blue") and host.nginx.include.read_text() == include
    assert host.colour_states(API) == {"blue": "active", "green": "inactive"}
    assert host.starts(API) == ["blue 1.0.0", "green 1.1.0"]  # blue was never restarted
    assert f"{API}@1.1.0" in host.store.blocked.refs()
    assert host.store.colours.get(API).live == "blue"


def test_a_release_failing_through_nginx_is_switched_back_to_the_running_old_colour(host):
    host.deploy({API: "1.0.0"})

    failed = host.deploy({API: "1.1.0"}, {API: "broken-behind-proxy"})

    assert failed.status == DeploymentStatus.ROLLED_BACK, failed.error
    assert "not healthy through nginx" in failed.error
    assert host.answers(API, "1.0.0 blue")
    assert host.colour_states(API) == {"blue": "active", "green": "inactive"}
    assert host.starts(API) == ["blue 1.0.0", "green 1.1.0"]  # users went back to the blue that never stopped
    assert host.store.colours.get(API).live == "blue" and host.enabled(BLUE) == "enabled"
    assert (host.state_dir / "releases" / "core" / "api" / "current").resolve().name == "1.0.0"


def test_a_rollback_to_an_older_revision_takes_the_same_path(host):
    host.deploy({API: "1.0.0"})
    host.deploy({API: "1.1.0"})

    result = host.engine().rollback(1, catalog=None, reason="1.1.0 is slow", actor="alice")

    assert result.deployment.status == DeploymentStatus.SUCCEEDED, result.deployment.error
    assert host.answers(API, "1.0.0 blue")
    assert host.colour_states(API) == {"blue": "active", "green": "inactive"}
    assert host.starts(API) == ["blue 1.0.0", "green 1.1.0", "blue 1.0.0"]


def test_nginx_refusing_the_include_changes_nothing_users_see(host):
    host.deploy({API: "1.0.0"})
    refusing = host.switch.model_copy(update={"nginx_test": ["/bin/sh", "-c", "echo '[emerg] no' >&2; exit 1"]})

    failed = host.deploy({API: "1.1.0"}, engine=host.engine(switch=refusing))

    assert failed.status == DeploymentStatus.ROLLED_BACK and "nginx refused" in failed.error, failed.error
    assert host.answers(API, "1.0.0 blue") and host.colour_states(API) == {"blue": "active", "green": "inactive"}


def test_the_drain_waits_before_the_old_colour_stops_and_a_first_install_has_none(tmp_path):
    with BlueGreenHost(tmp_path, drain="7s") as host:
        host.deploy({API: "1.0.0"})
        assert host.waited == []  # nothing to drain: no colour had users
        host.deploy({API: "1.1.0"})
        assert host.waited == [7.0]


def test_a_restart_capability_turns_blue_green_and_back(host):
    assert host.deploy({API: "1.0.0"}, restart={API}).status == DeploymentStatus.SUCCEEDED
    assert host.state("id1-core-api.service") == "active"

    turned = host.deploy({API: "1.1.0"})
    assert turned.status == DeploymentStatus.SUCCEEDED, turned.error
    assert host.answers(API, "1.1.0 blue")
    assert not (host.unit_dir / "id1-core-api.service").exists()

    back = host.deploy({API: "1.2.0"}, restart={API})
    assert back.status == DeploymentStatus.SUCCEEDED, back.error
    assert host.state("id1-core-api.service") == "active"
    assert not list(host.unit_dir.glob("id1-core-api@*")) and host.store.colours.get(API) is None
    assert "core/api" not in host.nginx.include.read_text()


def test_a_removed_capability_leaves_nginx_and_the_unit_folder(host):
    host.deploy({API: "1.0.0", "core/web": "1.0.0"})
    assert host.answers("core/web", "1.0.0 blue")

    assert host.deploy({API: "1.0.0"}).status == DeploymentStatus.SUCCEEDED
    assert host.answers("core/web", None) and "core/web" not in host.nginx.include.read_text()
    assert not list(host.unit_dir.glob("id1-core-web@*")) and host.store.colours.get("core/web") is None
    assert host.answers(API, "1.0.0 blue")


# --- killed anywhere in the switch ------------------------------------------------------------------

KILL_POINTS = [STARTING_IDLE, "starting core/api green", CHECKING_IDLE, SWITCHING_TRAFFIC, "switching core/api green",
               VERIFYING_PUBLIC, DRAINING, STOPPING_OLD, "stopping core/api blue", "rolling-back"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_at_any_step_of_the_switch_the_next_start_leaves_one_healthy_colour_live(host, point):
    host.deploy({API: "1.0.0"})
    broken = point == "rolling-back"  # the undo's own switch back, cut off
    seen = []

    def crash(state):
        seen.append(state)
        if state == point:
            raise Crash(point)

    with pytest.raises(Crash):
        result = host.deploy({API: "1.1.0"}, {API: "broken-behind-proxy"} if broken else None, engine=host.engine(crash))
        pytest.fail(f"never reached {point}: {result.status} {result.error} (steps {seen})")

    host.engine().resume()

    want = ("1.0.0", "blue") if broken else ("1.1.0", "green")
    assert host.answers(API, " ".join(want))
    states = host.colour_states(API)
    assert sorted(states.values()) == ["active", "inactive"] and states[want[1]] == "active", states
    record = host.store.colours.get(API)
    assert record.live == want[1]
    assert f"id1 core/api {want[1]} " in host.nginx.include.read_text()
    assert host.store.deployments.active() is None


def test_the_hosts_nginx_failing_undoes_the_switch_and_blocks_nothing(host):
    host.deploy({API: "1.0.0"})
    broken_reload = host.switch.model_copy(update={"nginx_reload": ["/bin/false"]})

    failed = host.deploy({API: "1.1.0"}, engine=host.engine(switch=broken_reload))

    assert failed.status == DeploymentStatus.ROLLED_BACK and "switch.nginx_reload" in failed.error, failed.error
    assert not host.store.blocked.refs()  # the release is not at fault: tried again once nginx works
    assert host.answers(API, "1.0.0 blue") and host.colour_states(API) == {"blue": "active", "green": "inactive"}
    assert host.deploy({API: "1.1.0"}).status == DeploymentStatus.SUCCEEDED
    assert host.answers(API, "1.1.0 green")


def test_a_deployment_cut_off_while_draining_drains_again_before_stopping_the_old_colour(tmp_path):
    with BlueGreenHost(tmp_path, drain="7s") as host:
        host.deploy({API: "1.0.0"})

        def crash(state):
            if state == DRAINING:
                raise Crash(state)

        with pytest.raises(Crash):
            host.deploy({API: "1.1.0"}, engine=host.engine(crash))
        assert host.colour_states(API) == {"blue": "active", "green": "active"}  # blue still had users' requests

        host.engine().resume()

        assert host.waited == [7.0]  # the resumed run's drain (the first was cut off before its wait)
        assert host.colour_states(API) == {"blue": "inactive", "green": "active"}
        assert host.answers(API, "1.1.0 green")
