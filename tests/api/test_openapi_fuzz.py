"""The API never answers 5xx to bad input, and answers what its published OpenAPI says.

schemathesis reads the OpenAPI the REAL daemon publishes at ``/openapi.json`` and sends it
generated requests over the Unix socket, as root (admin: every route is reachable), both
valid ones and ones that break the schema (negative mode), derandomized and bounded (about
1,300 requests, under half a minute). Every answer goes through all of schemathesis' checks
for a response, among them:

    not_a_server_error            no 5xx, whatever the input
    status_code_conformance       the status is one the operation documents
    content_type_conformance      the content type is one it documents for that status
    response_schema_conformance   the body matches the documented schema (errors: ErrorBody)
    negative_data_rejection       input that breaks the schema is refused with a 4xx
    positive_data_acceptance      input that fits the schema is not refused as invalid
    unsupported_method            a method the path does not have: 405 with a true ``Allow``

The daemon runs against a populated host (``tests.api.populated``): two revisions, a pending
and a superseded approval, an advisory. Generated ids never name a real record, so
``test_real_records_answer_as_published`` validates the answers about the real ones.

Left out of the generated requests, and why:

- ``GET /events`` is an endless server-sent event stream: a generated request would never
  finish. It takes no input; ``test_the_event_stream_opens`` checks that it answers.
- ``POST /rollback`` with valid input really rolls the host back (systemctl restarts and health
  checks: seconds per example, and the state the other operations see keeps changing). It is
  fuzzed with invalid input only (negative mode: 422, never 5xx); its refusals of valid input
  (unknown revision, a revision affected by an enforced advisory) are in test_api_errors.py.

``POST /deployments`` and ``POST /security/enforce`` stay in: they refuse fast unless given the
exact current target hash, or the one advisory the host would still need fixed (none: its fix
is running), so generated input never starts a deployment.

One exception to positive_data_acceptance: ``POST /versions/pin`` may answer 422 to a request
that fits the schema, because two rules of a pin cannot be said in a JSON schema (the name
must fit the level; the version must be PEP 440). The store refuses those, naming the field.
"""

from __future__ import annotations

import os
import socket
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from requests.adapters import HTTPAdapter
from schemathesis.config import SchemathesisConfig
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

from tests.api.populated import Populated, api_client, populated_site

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the fuzz runs as root, so that every route is reachable (admin)")

BASE_URL = "http://id1"
MAX_EXAMPLES = 25
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))

answered: dict[str, Counter] = defaultdict(Counter)
"""``METHOD /path`` → how many answers of each status the generated requests got."""


class _UnixConnection(HTTPConnection):
    def __init__(self, *args, socket_path: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.socket_path = socket_path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if isinstance(self.timeout, (int, float)):
            sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        return sock


class _UnixPool(HTTPConnectionPool):
    ConnectionCls = _UnixConnection


class UnixSocketAdapter(HTTPAdapter):
    """requests over a Unix socket: every URL mounted on it goes to ``socket_path``."""

    def __init__(self, socket_path: str):
        super().__init__()
        self.pool = _UnixPool("localhost", maxsize=4, socket_path=socket_path)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return self.pool

    def request_url(self, request, proxies):
        return request.path_url

    def close(self) -> None:
        self.pool.close()
        super().close()


@pytest.fixture(scope="module")
def populated() -> Iterator[Populated]:
    with populated_site() as host:
        yield host


@pytest.fixture(scope="module")
def session(populated: Populated) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.mount(BASE_URL + "/", UnixSocketAdapter(str(populated.site.socket)))
        yield session


@pytest.fixture(scope="module")
def published_openapi(populated: Populated) -> dict:
    with api_client(populated.site) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def fuzz_config(mode: str, host: Populated) -> SchemathesisConfig:
    # Half of the ids are the host's real ones, so that what is done to a real record (approve,
    # reject, change a policy) is fuzzed too, not only the answer "there is none".
    real = {
        "approval_id": [host.pending_approval, host.superseded_approval],
        "deployment_id": list(host.deployments),
        "number": list(host.revisions),
        "policy_id": [host.policy],
    }
    return SchemathesisConfig.from_dict({
        "base-url": BASE_URL,
        "generation": {"mode": mode, "max-examples": MAX_EXAMPLES, "deterministic": True},
        "dictionaries": {name: {"values": values} for name, values in real.items()},
        "parameters": {f"path.{name}": {"dictionary": name, "probability": 0.5} for name in real},
        "operations": [{
            "include-path": "/versions/pin",  # see the module's docstring
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "403", "404", "409", "422"]}},
        }],
    })


@pytest.fixture
def api_schema(published_openapi: dict, populated: Populated):
    return schemathesis.openapi.from_dict(published_openapi, config=fuzz_config("all", populated))


@pytest.fixture
def negative_rollback_schema(published_openapi: dict, populated: Populated):
    return schemathesis.openapi.from_dict(published_openapi, config=fuzz_config("negative", populated))


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/events").exclude(method="POST", path="/rollback")
rollback_only = schemathesis.pytest.from_fixture("negative_rollback_schema").include(method="POST", path="/rollback")


def call_and_check(case, session: requests.Session) -> None:
    response = case.call_and_validate(session=session, base_url=BASE_URL, timeout=60)
    answered[f"{case.operation.method.upper()} {case.operation.path}"][response.status_code] += 1


# The real records first: the generated requests change the host (policies, pins, a rejection).
@pytest.mark.parametrize("method, template, parameters", [
    ("GET", "/status", {}),
    ("GET", "/updates", {}),
    ("GET", "/approvals", {}),
    ("GET", "/approvals/{approval_id}", {"approval_id": "pending"}),
    ("GET", "/approvals/{approval_id}", {"approval_id": "superseded"}),
    ("GET", "/deployments", {}),
    ("GET", "/deployments/{deployment_id}", {"deployment_id": "dep-1"}),
    ("GET", "/revisions", {"query": {"manifests": "true"}}),
    ("GET", "/revisions", {}),
    ("GET", "/revisions/{number}", {"number": 2}),
    ("GET", "/rollback/check", {}),
    ("GET", "/rollback/check", {"query": {"to_revision": "1"}}),
    ("GET", "/rollback/history", {}),
    ("GET", "/versions", {}),
    ("GET", "/policy", {}),
    ("GET", "/policies", {}),
    ("GET", "/policies/{policy_id}", {"policy_id": "policy"}),
    ("GET", "/security/patches", {}),
    ("GET", "/report", {"query": {"format": "json"}}),
    ("GET", "/report", {}),
    ("GET", "/audit", {}),
    ("GET", "/audit/verify", {}),
])
def test_real_records_answer_as_published(populated, session, published_openapi, method, template, parameters):
    loaded = schemathesis.openapi.from_dict(published_openapi, config=fuzz_config("positive", populated))
    names = {"pending": populated.pending_approval, "superseded": populated.superseded_approval, "policy": populated.policy}
    query = parameters.pop("query", {})
    path_parameters = {name: names.get(value, value) for name, value in parameters.items()}
    case = loaded[template][method].Case(path_parameters=path_parameters, query=query)
    response = case.call(session=session, base_url=BASE_URL, timeout=60)
    assert response.status_code == 200, response.text
    case.validate_response(response)


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_answers_as_published(case, session):
    call_and_check(case, session)


@rollback_only.parametrize()
@FUZZ_SETTINGS
def test_rollback_refuses_invalid_input(case, session):
    call_and_check(case, session)


def test_the_event_stream_opens(populated):
    with api_client(populated.site, timeout=10) as client:
        with client.stream("GET", "/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert next(response.iter_lines()) == "retry: 2000"


def test_the_generated_requests_reached_every_operation(published_openapi):
    """The fuzz is not vacuous: every operation answered, and not only with refusals of the caller."""
    if not answered:
        pytest.skip("the generated requests did not run in this session")
    print("\n".join(f"{op}: {dict(st)}" for op, st in sorted(answered.items())))
    published = {f"{method.upper()} {path}" for path, item in published_openapi["paths"].items() for method in item}
    assert published - set(answered) == {"GET /events"}
    for operation, statuses in answered.items():
        assert sum(statuses.values()) >= 3, (operation, statuses)
        assert set(statuses) - {403, 405}, f"{operation} only refused: {statuses}"
    assert any(200 <= status < 300 for status in answered["POST /policies"]), answered["POST /policies"]
    assert any(status == 422 for status in answered["POST /rollback"]), answered["POST /rollback"]
    assert answered["POST /security/enforce"].keys() <= {404, 405, 409, 422}, "no enforcement may have run"
    assert answered["POST /deployments"].keys() <= {405, 409, 422}, "no deployment may have run"
