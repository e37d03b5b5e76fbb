"""The dashboard's client protocol is what the real client offers, and what the fake offers:
same methods, same parameter names and kinds (a renamed keyword would break only at run time);
and every answer of the fake is what the real route would send (its response model, checked)."""

from __future__ import annotations

import inspect
import re

import pytest

from agent.api.schemas import Revision, Status
from agent.client import AgentClient
from tests.tui.fake import FakeClient, as_the_api_sends
from tui.client import DashboardClient

METHODS = sorted(name for name, value in vars(DashboardClient).items()
                 if callable(value) and not name.startswith("_"))


def shape(function) -> list[tuple[str, inspect._ParameterKind, bool]]:
    return [(p.name, p.kind, p.default is inspect.Parameter.empty)
            for p in inspect.signature(function).parameters.values()]


def test_the_protocol_lists_every_call_the_dashboard_makes():
    assert METHODS == ["advisories", "approval", "approvals", "approve", "audit", "check", "events", "fleet",
                       "fleet_release", "fleet_resume", "pin", "policy", "reject", "revision", "revisions", "rollback",
                       "rollback_check", "set_channel", "status", "unpin", "updates", "versions"]


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("implementation", [AgentClient, FakeClient], ids=["AgentClient", "FakeClient"])
def test_each_client_has_the_protocols_signature(implementation, name):
    assert shape(getattr(implementation, name)) == shape(getattr(DashboardClient, name))


# Where AgentClient sends each call (agent/client.py): the real route decides the answer's shape.
ROUTES = {
    "status": ("GET", "/status"), "updates": ("GET", "/updates"), "approvals": ("GET", "/approvals"),
    "approval": ("GET", "/approvals/{approval_id}"), "revisions": ("GET", "/revisions"),
    "revision": ("GET", "/revisions/{number}"), "rollback_check": ("GET", "/rollback/check"),
    "versions": ("GET", "/versions"), "policy": ("GET", "/policy"), "policies": ("GET", "/policies"),
    "advisories": ("GET", "/security/patches"), "audit": ("GET", "/audit"), "check": ("POST", "/check"),
    "approve": ("POST", "/approvals/{approval_id}/approve"), "reject": ("POST", "/approvals/{approval_id}/reject"),
    "rollback": ("POST", "/rollback"), "pin": ("POST", "/versions/pin"), "unpin": ("POST", "/versions/unpin"),
    "set_channel": ("PUT", "/policy"), "fleet": ("GET", "/fleet"), "fleet_resume": ("POST", "/fleet/resume"),
    "fleet_release": ("POST", "/fleet/release"),
}


def real_route(verb: str, path: str):
    from agent.api.routes import audit, deployments, fleet, security, settings, status, updates

    [route] = [route for module in (status, updates, deployments, settings, security, audit, fleet) for route in module.router.routes
               if route.path == path and verb in route.methods]
    return route


@pytest.mark.parametrize("name", [name for name in METHODS if name != "events"])
def test_each_fake_answer_goes_through_the_response_model_of_the_real_route(name):
    assert name in ROUTES, f"which route does AgentClient.{name} call? add it to ROUTES"
    route = real_route(*ROUTES[name])
    declared = getattr(getattr(FakeClient, name), "response_model", None)

    assert declared == (route.response_model, route.response_model_exclude_unset), (
        f"FakeClient.{name} must be decorated @answers({route.response_model}"
        f"{', exclude_unset=True' if route.response_model_exclude_unset else ''}), as {' '.join(ROUTES[name])} answers")


def test_what_the_real_client_calls_is_where_the_routes_table_says():
    source = inspect.getsource(AgentClient)
    for name, (verb, path) in ROUTES.items():
        called = re.search(rf"def {name}\(.*?\n.*?self\._call\(\"(\w+)\", f?\"([^\"]+)\"", source, re.S)
        assert called and (called[1], re.sub(r"\{[^}]+\}", "{}", called[2])) == (verb, re.sub(r"\{[^}]+\}", "{}", path)), name


def test_every_answer_of_the_fake_fits_the_api():
    fake = FakeClient(role="admin")
    for call in (fake.status, fake.updates, fake.approvals, lambda: fake.approval("approval-2"), fake.revisions,
                 lambda: fake.revisions(manifests=True), lambda: fake.revision(3), fake.rollback_check, fake.versions,
                 fake.policy, fake.policies, fake.advisories, fake.audit, fake.check,
                 lambda: fake.pin("capability", "core/web", "3.0.0", "hold"), lambda: fake.unpin("capability", "core/web"),
                 lambda: fake.set_channel("frozen", "search"), lambda: fake.approve("approval-3", "ok"),
                 lambda: fake.rollback(3, reason="back", force=True), fake.fleet,
                 lambda: fake.fleet_resume("core/api@2.2.1", "fixed in 2.2.2"), lambda: fake.fleet_release("host-04")):
        call()  # each raises AssertionError, naming the field, if it does not


@pytest.mark.parametrize(("drift", "named"), [
    (lambda status: status.pop("role_groups"), "role_groups"),
    (lambda status: status.update(uptime_s=5), ".uptime_s: the API has no such field"),
    (lambda status: status.update(revision="4"), "revision"),
    (lambda status: status["capabilities"][0].pop("units"), "units"),
])
def test_a_fake_answer_that_drifts_from_the_api_fails(drift, named):
    answer = FakeClient().status()
    assert as_the_api_sends(Status, answer) == answer
    drift(answer)

    with pytest.raises(AssertionError, match=re.escape(named)):
        as_the_api_sends(Status, answer)


def test_a_manifest_in_an_answer_must_be_what_the_planner_writes():
    revision = FakeClient().revision(4)
    revision["manifest"]["suites"]["core"]["capabilities"]["auth"]["health"]["timeout_s"] = 60

    with pytest.raises(AssertionError, match=r"\.manifest\.suites\.core\.capabilities\.auth\.health\.timeout_s: 60 where the API sends 60\.0"):
        as_the_api_sends(Revision, revision)
