"""Advisories and their status on this host: ``GET /security/patches``, ``POST /security/enforce``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from agent.api.auth import ViewerDep, requires
from agent.api.roles import Caller, Role
from agent.api.routes import errors, service_of
from agent.api.schemas import Advisory, EnforceOutcome, EnforceRequest
from agent.feed.model import severity_at_least
from agent.planning import Manifest
from agent.versions import matches

router = APIRouter(tags=["security"])


@router.get("/security/patches", response_model=list[Advisory])
def patches(request: Request, caller: ViewerDep) -> list[Advisory]:
    """The feed's advisories and their status on this host (not installed, not affected, affected, fix pending, exposed)."""
    service = service_of(request)
    if service.catalog is None:
        return []
    latest = service.store.revisions.latest()
    installed = Manifest.model_validate(latest.manifest).versions() if latest else {}
    threshold = service.planning_policy(windowed=False).enforce_severity
    exposed = " ".join(p.detail for p in (service.plan.problems if service.plan else ()) if p.code == "exposed")
    pending = {c.capability for c in (service.plan.changes if service.plan else ())}
    result = []
    for items in service.catalog.advisories.values():
        for advisory in items:
            version = installed.get(advisory.capability)
            if version is None:
                status = "not-installed"
            elif not matches(advisory.affected, version):
                status = "not-affected"
            elif advisory.id in exposed:
                status = "exposed"
            elif advisory.capability in pending:
                status = "fix-pending"
            else:
                status = "affected"
            result.append(Advisory(id=advisory.id, severity=advisory.severity, capability=advisory.capability,
                                   affected=advisory.affected, summary=advisory.summary, published_at=advisory.published_at,
                                   enforced=severity_at_least(advisory.severity, threshold), status=status, installed_version=version))
    return sorted(result, key=lambda a: (a.status in ("not-installed", "not-affected"), a.id))


@router.post("/security/enforce", response_model=EnforceOutcome, responses=errors(404, 409, 422, 503))
def enforce(request: Request, body: EnforceRequest,
            caller: Annotated[Caller, Depends(requires(Role.admin, "enforce a security fix"))]) -> EnforceOutcome:
    """Apply a named advisory's fix now, whatever its severity, channel and window; waits for the deployment."""
    result = service_of(request).enforce(caller.user, body.advisory_id)
    return EnforceOutcome(deployment_id=result.deployment_id, status=result.status.value, revision=result.revision, error=result.error)
