"""API routes, one module per area; each gets the service with ``service_of(request)`` and
declares the errors it can answer with ``errors(...)``, so the OpenAPI documents every status."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from agent.api.limits import ApiLimits
from agent.api.schemas import ErrorBody
from agent.daemon.service import AgentService

_MEANINGS = {
    403: "the caller's role does not allow it (the message names the groups that do)",
    404: "what the request names does not exist",
    409: "the request clashes with the agent's state (already decided, changed since shown, refused)",
    413: f"the request body is over {ApiLimits().max_body_bytes >> 20} MiB, the most the agent accepts; the connection is closed",
    422: "the request is invalid; ``fields`` names each field at fault",
    502: "the feed was fetched but rejected (signature, expiry, replay, format)",
    503: "the agent cannot do it now (feed unreachable, state or services failing)",
}


def service_of(request: Request) -> AgentService:
    return request.app.state.id1_service


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status answered with an ErrorBody (403 and 413 are app-wide)."""
    return {status: {"model": ErrorBody, "description": _MEANINGS[status]} for status in statuses}
