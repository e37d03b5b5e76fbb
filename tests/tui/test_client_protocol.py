"""The dashboard's client protocol is what the real client offers, and what the fake offers:
same methods, same parameter names and kinds (a renamed keyword would break only at run time)."""

from __future__ import annotations

import inspect

import pytest

from agent.client import AgentClient
from tests.tui.fake import FakeClient
from tui.client import DashboardClient

METHODS = sorted(name for name, value in vars(DashboardClient).items()
                 if callable(value) and not name.startswith("_"))


def shape(function) -> list[tuple[str, inspect._ParameterKind, bool]]:
    return [(p.name, p.kind, p.default is inspect.Parameter.empty)
            for p in inspect.signature(function).parameters.values()]


def test_the_protocol_lists_every_call_the_dashboard_makes():
    assert METHODS == ["advisories", "approval", "approvals", "approve", "audit", "check", "events", "pin", "policy",
                       "reject", "revision", "revisions", "rollback", "rollback_check", "set_channel", "status",
                       "unpin", "updates", "versions"]


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("implementation", [AgentClient, FakeClient], ids=["AgentClient", "FakeClient"])
def test_each_client_has_the_protocols_signature(implementation, name):
    assert shape(getattr(implementation, name)) == shape(getattr(DashboardClient, name))
