"""Real daemons and a release that fails on the first host that tries it (DESIGN.md §12 Halt):
with ``halt_after = 1`` nobody else runs it — the rest hold it as ``fleet-halted`` — until an
admin has fixed the cause and lifts the halt with ``POST /fleet/resume`` (audited); then the
others deploy it, one at a time.

The failure here is environmental, as it often is in the field: the release answers 500 while
a flag file is in the host's state (a missing migration, a full disk). Every host has the flag;
the admin removes it, then resumes. Timelines come from the agents' journals and from etcd.
"""

from __future__ import annotations

import os
import pwd

import pytest

from tests.daemon.site import Release
from tests.fleet.fleet_site import EnvironmentSensitive, Fleet, etcd_table, flag_path, fleets, max_concurrent
from tests.fleet.helpers import holder_hosts

OLD = {"1.0.0": Release()}
FLAKY = EnvironmentSensitive()
NEW = {**OLD, "1.0.1": FLAKY}
OLD_PLATFORMS = {"1.0.0": "1.0.0"}
NEW_PLATFORMS = {"1.0.0": "1.0.0", "1.1.0": "1.0.1"}
REF = "core/auth@1.0.1"


@pytest.fixture
def make_fleet():
    with fleets() as make:
        yield make


def broken_environment(fleet: Fleet, broken: bool) -> None:
    for site in fleet.sites.values():
        path = flag_path(site, FLAKY)
        if broken:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.unlink(missing_ok=True)


def checked(fleet: Fleet, *hosts: str) -> None:
    """POST /check on each host and wait for its answer (it comes once its deployment ended)."""
    before = len(fleet.checks)
    fleet.check(*hosts)
    fleet.wait(lambda: all(future.done() for _, future in fleet.checks[before:]), f"the checks of {', '.join(hosts)} answered")


def new_deployment(fleet: Fleet, host: str):
    """The host's deployment of 1.0.1 (None: it never started one)."""
    return next((d for d in fleet.deployments(host) if d.auth == "1.0.1"), None)


def test_a_release_that_fails_is_halted_for_the_group_until_an_admin_resumes_it(etcd_cluster, group, make_fleet, record_property):
    hosts = ["h1", "h2", "h3", "h4"]
    fleet = make_fleet(hosts, lambda host: etcd_table(host, group, etcd_cluster.endpoints, slots=1, halt_after=1, lease="5s"))
    fleet.first_install(OLD, OLD_PLATFORMS)

    broken_environment(fleet, True)
    fleet.publish(2, NEW, NEW_PLATFORMS)
    checked(fleet, *hosts)  # all at once: one gets the slot, the others wait in line behind it

    deployments = {host: new_deployment(fleet, host) for host in hosts}
    ran = [host for host, d in deployments.items() if d is not None and d.reached("switching")]
    assert len(ran) == 1, f"1.0.1 ran on {ran}"
    [first] = ran
    rest = [host for host in hosts if host != first]
    failed = deployments[first]
    assert failed.status == "rolled_back", failed
    assert failed.states.index("slot-held") < failed.states.index("switching")
    assert failed.states.index("rolling-back") < failed.states.index("slot-released") < failed.states.index("rolled-back")
    in_line = [host for host in rest if deployments[host] is not None]
    assert in_line, "no host was waiting in line when 1.0.1 failed"  # else each saw the halt when it planned
    for host in in_line:  # handed the slot, found the change halted, gave the slot on
        deployment = deployments[host]
        assert deployment.status == "failed" and f"{REF} was halted for fleet group {group} after it failed on {first}" \
            in deployment.error, deployment
        assert deployment.states[-3:] == ["waiting-for-slot", "slot-released", "failed"], deployment.states
        assert deployment.at("waiting-for-slot") < failed.at("slot-released") < deployment.at("slot-released")
    assert holder_hosts(etcd_cluster.endpoints, group) == []
    view = fleet.api(rest[0], "GET", "/fleet").json()
    assert view["failures"] == [{"ref": REF, "hosts": [first], "halted": True}]

    # The rest hold the change as fleet-halted: at once (a host that found the halt in line
    # replans with it, not only at its next poll), and after a further check, which deploys nothing.
    for moment in ("at once", "after a check"):
        if moment == "after a check":
            checked(fleet, *rest)
        for host in rest:
            assert new_deployment(fleet, host) == deployments[host], f"{host} tried 1.0.1 again"
            status = fleet.status(host)
            assert status["platform"] == "1.0.0", host
            halted = [p for p in status["problems"] if p["code"] == "fleet-halted"]
            assert halted and "core/auth 1.0.1" in halted[0]["detail"] and first in halted[0]["detail"], \
                f"{host}, {moment}: {status['problems']}"
    updates = fleet.api(rest[0], "GET", "/updates").json()
    assert "fleet-halted" in [problem["code"] for problem in updates["problems"]]
    assert fleet.status(first)["platform"] == "1.0.0" and fleet.sites[first].answers_http() == 200

    # The admin fixes the hosts, then lifts the halt from any host (audited there).
    broken_environment(fleet, False)
    refused = fleet.api(rest[0], "POST", "/fleet/resume", json={"ref": "core/auth@9.9.9"})
    assert refused.status_code == 409, refused.text
    resumed = fleet.api(rest[0], "POST", "/fleet/resume", json={"ref": REF, "reason": "migration 42 applied on every host"})
    assert resumed.status_code == 200, resumed.text
    assert first in resumed.json()["message"]
    [audit] = fleet.sites[rest[0]].audit("fleet-resume")
    assert (audit["what"], audit["actor"]) == (REF, pwd.getpwuid(os.getuid()).pw_name), audit
    assert "migration 42" in audit["why"] and audit["details"] == {"group": group, "failed_on": [first]}, audit
    assert fleet.api(rest[1], "GET", "/fleet").json()["failures"] == []

    # The rest deploy it, one at a time (the resuming host replans at once, the others at their
    # next check). The first host still blocks 1.0.1 locally, as any host does after rolling a
    # release back: the admin unblocks it there, and it follows.
    fleet.check(*rest[1:])
    fleet.wait(lambda: fleet.on_platform("1.1.0", rest), "the other hosts run platform 1.1.0", deadline_s=120)
    assert fleet.status(first)["platform"] == "1.0.0"
    assert REF in [entry["ref"] for entry in fleet.api(first, "GET", "/blocked").json()]
    unblocked = fleet.api(first, "DELETE", f"/blocked/{REF}")
    assert unblocked.status_code == 200, unblocked.text
    checked(fleet, first)
    fleet.wait(lambda: fleet.on_platform("1.1.0"), "every host runs platform 1.1.0")

    everything = [d for host in hosts for d in fleet.deployments(host) if d.auth == "1.0.1"]
    for deployment in everything:
        if deployment.reached("switching"):
            assert deployment.reached("slot-held") and deployment.at("slot-held") < deployment.at("switching"), deployment
    most, instant, who = max_concurrent(d.interval("switching", "slot-released") for d in everything if d.reached("switching"))
    assert most == 1, f"{who} changing at once at {instant}"
    assert holder_hosts(etcd_cluster.endpoints, group) == []
    record_property("hosts_that_ran_the_halted_release", len(ran))

