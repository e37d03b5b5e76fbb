"""What the API answers to input it cannot act on: one ErrorBody, never a traceback.

Against the real daemon on its socket (``tests.api.populated``), each refusal a user meets:
the status, the machine ``code``, the one-line ``message`` the CLI prints, and for invalid
input the ``fields`` at fault. Requests as users without a role come from a forked child that
drops to a throwaway user before it connects, as in test_peer_roles.py.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import ThrowawayAccounts
from tests.api.populated import ADVISORY, Populated, api_client, populated_site

FIELDS = {"code", "message", "fields"}


@pytest.fixture(scope="module")
def host(accounts: ThrowawayAccounts) -> Iterator[Populated]:
    with populated_site(extra_config=accounts.roles_toml()) as populated:
        yield populated


@pytest.fixture
def client(host: Populated) -> Iterator[httpx.Client]:
    with api_client(host.site) as client:
        yield client


def refused(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == FIELDS, body
    assert body["code"] == code, body
    assert body["message"] and "Traceback" not in body["message"]
    return body


def fields_of(body: dict) -> dict[str, str]:
    return {item["field"]: item["message"] for item in body["fields"]}


# ------------------------------------------------------------------ invalid input: 422


def test_a_body_that_is_not_json_is_refused_naming_the_problem(client):
    response = client.post("/policies", content=b'{"name": "freeze", "channel": ', headers={"Content-Type": "application/json"})
    body = refused(response, 422, "invalid")
    assert fields_of(body) == {"body": "the body is not valid JSON: Expecting value (at character 31)"}
    assert body["message"] == "body: the body is not valid JSON: Expecting value (at character 31)"


def test_a_body_that_is_not_even_text_is_refused_too(client):
    response = client.post("/policies", content=b'{"name": "\xff\xfe"}', headers={"Content-Type": "application/json"})
    body = refused(response, 422, "invalid")
    assert fields_of(body) == {"body": "the body is not valid JSON: it is not UTF-8 text"}


def test_a_missing_body_is_refused(client, host):
    body = refused(client.post(f"/approvals/{host.pending_approval}/reject"), 422, "invalid")
    assert fields_of(body) == {"body": "a JSON object is required as the body (Content-Type: application/json)"}


def test_an_unknown_field_is_refused_naming_it(client):
    response = client.post("/policies", json={"name": "freeze", "channel": "frozen", "colour": "blue"})
    body = refused(response, 422, "invalid")
    assert fields_of(body) == {"colour": "unknown field"}
    assert body["message"] == "colour: unknown field"


def test_a_value_of_the_wrong_type_is_refused_naming_the_field(client):
    # 0 is not false, "2" is not 2: the body must be what the published schema says.
    body = refused(client.post("/rollback", json={"to_revision": "2", "force": 0}), 422, "invalid")
    assert fields_of(body) == {"to_revision": "Input should be a valid integer", "force": "Input should be a valid boolean"}
    body = refused(client.get("/revisions/two"), 422, "invalid")
    assert fields_of(body) == {"number": "Input should be a valid integer, unable to parse string as an integer"}
    body = refused(client.get("/approvals", params={"limit": 0}), 422, "invalid")
    assert fields_of(body) == {"limit": "Input should be greater than or equal to 1"}


def test_a_value_the_store_refuses_is_named(client):
    body = refused(client.post("/versions/pin", json={"level": "capability", "name": "core", "version": "1.0.0"}), 422, "invalid")
    assert set(fields_of(body)) == {"name"} and "does not fit level capability" in body["message"]
    body = refused(client.post("/versions/pin", json={"level": "platform", "name": "platform", "version": "one"}), 422, "invalid")
    assert set(fields_of(body)) == {"version"} and "neither a PEP 440 version nor a specifier" in body["message"]
    body = refused(client.post("/policies", json={"name": "x", "channel": "frozen", "suite": "no spaces"}), 422, "invalid")
    assert set(fields_of(body)) == {"suite"}


def test_a_blank_reason_is_refused(client, host):
    body = refused(client.post(f"/approvals/{host.pending_approval}/reject", json={"reason": "   "}), 422, "invalid")
    assert set(fields_of(body)) == {"reason"}


def test_a_policy_field_that_may_not_be_null_is_refused(client, host):
    body = refused(client.put(f"/policies/{host.policy}", json={"channel": None}), 422, "invalid")
    assert set(fields_of(body)) == {"channel"}
    assert client.put(f"/policies/{host.policy}", json={"suite": None}).json()["suite"] is None


# ------------------------------------------------------------------ unknown ids and paths: 404


@pytest.mark.parametrize("method, path, payload, message", [
    ("GET", "/approvals/approval-99", None, "there is no approval approval-99"),
    ("POST", "/approvals/approval-99/approve", {"comment": "ok"}, "there is no approval approval-99"),
    ("POST", "/approvals/nonsense/reject", {"reason": "no"}, "there is no approval nonsense"),
    ("GET", "/revisions/99", None, "revision 99 is not kept"),
    ("GET", "/rollback/check?to_revision=99", None, "revision 99 is not kept"),
    ("POST", "/rollback", {"to_revision": 99}, "revision 99 is not kept"),
    ("GET", "/policies/policy-99", None, "there is no policy policy-99"),
    ("PUT", "/policies/policy-99", {"channel": "frozen"}, "there is no policy policy-99"),
    ("DELETE", "/policies/policy-99", None, "there is no policy policy-99"),
    ("GET", "/deployments/dep-99", None, "there is no deployment dep-99"),
    ("DELETE", "/blocked/core/auth@9.9.9", None, "core/auth@9.9.9 is not blocked"),
    ("POST", "/versions/unpin", {"level": "suite", "name": "analytics"}, "suite analytics is not pinned"),
    ("POST", "/security/enforce", {"advisory_id": "ID1-SA-1999-0001"}, "the feed has no advisory ID1-SA-1999-0001"),
    ("GET", "/no/such/path", None, "the agent's API has no /no/such/path"),
])
def test_an_unknown_id_is_refused_naming_it(client, method, path, payload, message):
    body = refused(client.request(method, path, json=payload), 404, "not-found")
    assert body["message"] == message


def test_a_method_the_path_does_not_have_names_the_ones_it_has(client):
    response = client.request("PATCH", "/policy")
    body = refused(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET, PUT"
    assert body["message"] == "PATCH is not allowed on /policy: use GET or PUT"


# ------------------------------------------------------------------ clashes with the agent's state: 409


def test_an_approval_can_be_decided_once(client, host):
    approval = host.pending_approval
    rejected = client.post(f"/approvals/{approval}/reject", json={"reason": "not this week"})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["approval"]["status"] == "rejected"
    body = refused(client.post(f"/approvals/{approval}/approve", json={"comment": "changed my mind"}), 409, "conflict")
    assert body["message"] == f"approval {approval} is rejected (not this week): only a pending approval can be approved"
    body = refused(client.post(f"/approvals/{approval}/reject", json={"reason": "again"}), 409, "conflict")
    assert "only a pending approval can be rejected" in body["message"]
    body = refused(client.post(f"/approvals/{host.superseded_approval}/approve", json={}), 409, "conflict")
    assert body["message"].startswith(f"approval {host.superseded_approval} is superseded")


def test_rolling_back_onto_an_enforced_advisory_needs_force(client):
    body = refused(client.post("/rollback", json={"to_revision": 1}), 409, "refused")
    assert ADVISORY in body["message"] and "force" in body["message"]


def test_a_target_that_changed_since_it_was_shown_is_not_deployed(client):
    body = refused(client.post("/deployments", json={"target_hash": "0" * 64}), 409, "conflict")
    assert "the target has changed since it was shown" in body["message"]


def test_a_fix_that_is_running_is_not_enforced_again(client):
    body = refused(client.post("/security/enforce", json={"advisory_id": ADVISORY}), 409, "conflict")
    assert "not affected" in body["message"]


def test_a_deployment_cannot_be_cancelled_from_outside(client, host):
    body = refused(client.delete(f"/deployments/{host.deployments[0]}"), 409, "conflict")
    assert "only a running deployment could be cancelled" in body["message"]


# ------------------------------------------------------------------ roles: 403


def request_as(user: str, socket: str, method: str, url: str, payload: dict | None = None) -> dict:
    """One request as ``user`` from a forked child that drops to the user before it connects."""
    entry = pwd.getpwnam(user)
    gids = os.getgrouplist(user, entry.pw_gid)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_end)
            os.setgroups(gids)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            with httpx.Client(transport=httpx.HTTPTransport(uds=socket), base_url="http://id1", timeout=30) as client:
                response = client.request(method, url, json=payload)
            report = {"status": response.status_code, "body": response.json()}
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            report = {"error": repr(exc)}
        finally:
            os.write(write_end, json.dumps(report).encode())
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + 30
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the request as {user} did not finish")
        time.sleep(0.01)
    with os.fdopen(read_end, "rb") as pipe:
        report = json.loads(pipe.read())
    assert "error" not in report, report["error"]
    return report


@pytest.mark.parametrize("method, url", [("GET", "/status"), ("GET", "/approvals"), ("GET", "/audit"), ("GET", "/report")])
def test_a_caller_without_a_role_reads_nothing(host, accounts, method, url):
    answer = request_as(accounts.nobody, str(host.site.socket), method, url)
    assert answer["status"] == 403
    assert set(answer["body"]) == FIELDS and answer["body"]["code"] == "forbidden"
    roles = accounts.roles
    assert answer["body"]["message"] == (
        f"{accounts.nobody} may not read the agent's state: that needs the viewer role "
        f"(group {roles.viewer[0]}, {roles.approver[0]} or {roles.admin[0]})"
    )


def test_a_viewer_reads_but_does_not_decide(host, accounts):
    socket = str(host.site.socket)
    status = request_as(accounts.viewer, socket, "GET", "/status")
    assert status["status"] == 200
    assert status["body"]["role"] == "viewer"
    assert status["body"]["role_groups"] == {"viewer": accounts.roles.viewer, "approver": accounts.roles.approver,
                                             "admin": accounts.roles.admin}
    approve = request_as(accounts.viewer, socket, "POST", f"/approvals/{host.pending_approval}/approve", {"comment": "ok"})
    assert approve["status"] == 403 and approve["body"]["code"] == "forbidden"
    assert approve["body"]["message"].startswith(f"{accounts.viewer} may not approve or reject updates: that needs the approver role")
    pin = request_as(accounts.approver, socket, "POST", "/versions/pin", {"level": "suite", "name": "core", "version": "1.0.0"})
    assert pin["status"] == 403
    assert pin["body"]["message"] == (
        f"{accounts.approver} may not change pins, policies or blocked versions: that needs the admin role "
        f"(group {accounts.roles.admin[0]})"
    )
