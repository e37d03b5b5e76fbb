"""``GET /status``, ``POST /check``, ``GET /events`` (server-sent events) and ``GET /report``."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from agent import __version__
from agent.api.auth import ViewerDep, requires, roles_from
from agent.api.roles import Caller, Role
from agent.api.routes import errors, service_of
from agent.api.schemas import ApprovalSummary, CapabilityState, Change, CheckResult, DeploymentSummary, Problem, Status
from agent.daemon.events import SHUTDOWN
from agent.daemon.report import compliance_report, render_markdown
from agent.planning import Manifest
from agent.window import in_window

router = APIRouter(tags=["status"])
HEARTBEAT_S = 15.0


def _capabilities(service, manifest: Manifest | None) -> list[CapabilityState]:
    colours = service.store.colours.all()
    found = []
    for ref, entry in sorted((manifest.capabilities() if manifest else {}).items()):
        record = colours.get(ref) if entry.switch is not None else None
        found.append(CapabilityState(
            capability=ref, version=entry.version, source=entry.source, overrides=entry.overrides,
            units=service.engine.units_of(ref, entry),
            live_colour=record.live if record else None, public_port=record.public_port if record else None))
    return found


@router.get("/status", response_model=Status)
async def get_status(request: Request, caller: ViewerDep) -> Status:
    """What the agent is doing, the running revision and its capabilities, the plan, the pending approval, problems, and the caller's role."""
    # On the event loop, not in the thread pool: /status is what every client polls, and a
    # sync route costs two thread hops per request (the route, then its response's validation),
    # which with 50 concurrent clients tripled the p99 (tests/benchmarks/test_api_benchmark.py).
    # It only reads: in-memory state and the store, whose lock a writer holds for one short
    # transaction at most (the worker never waits for the loop while holding it).
    service = service_of(request)
    policy = service.planning_policy(windowed=False)
    latest = service.store.revisions.latest()
    manifest = Manifest.model_validate(latest.manifest) if latest else None
    plan = service.plan
    pending = service.store.approvals.pending()
    active = service.store.deployments.active()
    now = service.clock()
    return Status(
        instance_id=service.instance_id,
        agent_version=__version__,
        activity=service.activity.text,
        activity_since=service.activity.since,
        user=caller.user,
        role=str(caller.role),
        role_groups={role.name: list(getattr(roles_from(request), role.name)) for role in Role},
        channel=policy.channel,
        suites={name: suite.channel for name, suite in policy.suites.items()},
        maintenance_window=policy.maintenance_window,
        timezone=policy.timezone,
        in_window=bool(policy.maintenance_window) and in_window(policy.maintenance_window, policy.timezone, now),
        next_window=service.next_window(),
        revision=latest.number if latest else None,
        platform=manifest.platform if manifest else None,
        capabilities=_capabilities(service, manifest),
        feed_url=service.config.feed.url,
        feed_serial=service.catalog.serial if service.catalog else None,
        last_check=service.last_check,
        last_success=service.last_success,
        next_check=service.next_check,
        pending_approval=ApprovalSummary(id=pending.id, status=pending.status.value, created_at=pending.created_at,
                                         changes=len(pending.changes)) if pending else None,
        changes=[Change.model_validate(change.to_json()) for change in (plan.changes if plan else ())],
        problems=[Problem(code=p.code, detail=p.detail) for p in (plan.problems if plan else ())],
        exposed_advisories=sum(1 for p in (plan.problems if plan else ()) if p.code == "exposed"),
        blocked_versions=len(service.store.blocked.refs()),
        deployment=DeploymentSummary(id=active.id, status=active.status.value, state=active.state,
                                     started_at=active.started_at) if active else None,
        last_error=service.last_error,
        warnings=list(service.warnings),
    )


@router.post("/check", response_model=CheckResult, responses=errors(409, 502, 503))
def check_now(request: Request, caller: Annotated[Caller, Depends(requires(Role.approver, "check the feed now"))]) -> CheckResult:
    """Check the feed now and act on it (as the scheduled poll would); answers what happened in one line."""
    service = service_of(request)
    return CheckResult(message=service.exclusive(lambda: service.poll(actor=caller.user)))


@router.get("/events", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, caller: ViewerDep) -> StreamingResponse:
    """Server-sent events: ``event: <kind>`` and ``data: <json>``; a comment line every 15 s keeps it open."""
    bus = service_of(request).events
    queue = bus.subscribe()

    async def stream():
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps({**event.data, 'at': event.at})}\n\n"
                if event.kind == SHUTDOWN:
                    return
        finally:
            bus.unsubscribe(queue)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/report", response_model=None,
            responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}},
                             "description": "``format=markdown`` (default): text/markdown; ``format=json``: the same as JSON"},
                       **errors(422)})
async def report(request: Request, caller: ViewerDep, format: Literal["markdown", "json"] = Query("markdown")):
    """The compliance report: what runs and why, pending changes, problems, pins, blocked versions, recent deployments and rollbacks, the audit chain's state (markdown or JSON)."""
    service = service_of(request)
    data = await run_in_threadpool(compliance_report, service)
    if format == "json":
        return data
    return PlainTextResponse(render_markdown(data), media_type="text/markdown")
