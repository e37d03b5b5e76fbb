"""A real daemon with something in every table: the host the API tests and benchmarks call.

``populated_site()`` starts the daemon (``tests.daemon.site.Site``: a real subprocess on a temp
socket, a loopback feed server, units run by systemctl3) and brings it to this state:

    revision 1   core/auth 1.0.0, deployed now by root through ``POST /deployments``
    revision 2   core/auth 1.0.1, the forced fix of the critical advisory ID1-SA-2026-0001
    approval-1   superseded (it was for revision 1's target)
    approval-2   pending: core/auth 1.0.1 → 1.1.0 (platform 1.1.0)
    policy-1     a disabled policy (frozen, suite core), there to be read and changed

The maintenance window (Sun 03:00-03:01) is closed, so nothing deploys by itself later: an
approval only waits for the window, and a pin or policy change only replans. Building it takes
about five seconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from tests.daemon.site import Site

CLOSED_WINDOW = "Sun 03:00-03:01"
ADVISORY = "ID1-SA-2026-0001"


@dataclass(frozen=True)
class Populated:
    site: Site
    pending_approval: str
    superseded_approval: str
    revisions: tuple[int, ...]
    deployments: tuple[str, ...]
    policy: str


def api_client(site: Site, timeout: float = 60) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(site.socket)), base_url="http://id1", timeout=timeout)


def _ok(response: httpx.Response) -> dict:
    assert response.status_code < 300, f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
    return response.json()


@contextlib.contextmanager
def populated_site(*, extra_config: str = "") -> Iterator[Populated]:
    site = Site()
    try:
        site.configure("manual-approval", window=CLOSED_WINDOW, extra=extra_config)
        site.vendor.publish(1, {"1.0.0": False}, {"1.0.0": "1.0.0"})
        site.start()
        with api_client(site) as client:
            _ok(client.post("/check"))
            target = _ok(client.get("/updates"))["target_hash"]
            assert _ok(client.post("/deployments", json={"target_hash": target}))["status"] == "succeeded"
            site.vendor.publish(2, {"1.0.0": False, "1.0.1": False, "1.1.0": False}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"},
                                advisory="<1.0.1")
            assert "deployed revision 2" in _ok(client.post("/check"))["message"]
            policy = _ok(client.post("/policies", json={"name": "weekend freeze", "channel": "frozen", "suite": "core",
                                                        "enabled": False}))["id"]
            status = _ok(client.get("/status"))
            deployments = tuple(d["id"] for d in _ok(client.get("/deployments")))
            approvals = {a["status"]: a["id"] for a in _ok(client.get("/approvals"))}
            revisions = tuple(r["number"] for r in _ok(client.get("/revisions")))
        assert status["revision"] == 2 and status["pending_approval"] is not None, status
        assert revisions == (2, 1), revisions
        yield Populated(site, approvals["pending"], approvals["superseded"], revisions, deployments, policy)
    finally:
        site.close()
