"""Deployments, revisions and rollback: ``/deployments``, ``/revisions``, ``/rollback``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from agent.api.auth import ViewerDep, requires
from agent.api.roles import Caller, Role
from agent.api.routes import errors, service_of
from agent.api.schemas import (
    Deployment, DeploymentRequest, DeploymentUpdate, Revision, RevisionView, RollbackChange, RollbackOperation, RollbackOutcome,
    RollbackPreview, RollbackRequest,
)
from agent.errors import Conflict, NotFound

router = APIRouter(tags=["deployments"])
Admin = Annotated[Caller, Depends(requires(Role.admin, "deploy or roll back"))]


@router.get("/deployments", response_model=list[Deployment], responses=errors(422))
def list_deployments(request: Request, caller: ViewerDep, limit: int = Query(20, ge=1, le=1000)) -> list[Deployment]:
    """Recent deployments, newest first, with each step's journal."""
    return service_of(request).store.deployments.recent(limit)


@router.post("/deployments", response_model=Deployment, responses=errors(409, 422, 503))
def create_deployment(request: Request, body: DeploymentRequest, caller: Admin) -> Deployment:
    """Deploy the current target now, whatever the channel and window (an admin's decision, audited)."""
    service = service_of(request)
    result = service.deploy_target(caller.user, body.target_hash, force=body.force)
    return service.store.deployments.get(result.deployment_id)


@router.get("/deployments/{deployment_id}", response_model=Deployment, responses=errors(404, 422))
def get_deployment(request: Request, deployment_id: str, caller: ViewerDep) -> Deployment:
    """One deployment with its journal."""
    deployment = service_of(request).store.deployments.get(deployment_id)
    if deployment is None:
        raise NotFound(f"there is no deployment {deployment_id}")
    return deployment


@router.put("/deployments/{deployment_id}", response_model=Deployment, responses=errors(404, 409, 422))
def update_deployment(request: Request, deployment_id: str, body: DeploymentUpdate, caller: Admin) -> Deployment:
    """The only change a deployment takes is ``{"action": "cancel"}`` (same as DELETE)."""
    return cancel_deployment(request, deployment_id, caller)


@router.delete("/deployments/{deployment_id}", response_model=Deployment, responses=errors(404, 409, 422))
def cancel_deployment(request: Request, deployment_id: str, caller: Admin) -> Deployment:
    """Deployments are not cancelled from outside (that could leave a host half-deployed): always a 409 saying what to do instead."""
    service = service_of(request)
    deployment = service.store.deployments.get(deployment_id)
    if deployment is None:
        raise NotFound(f"there is no deployment {deployment_id}")
    raise Conflict(f"deployment {deployment_id} is {deployment.status.value}: only a running deployment could be "
                   "cancelled, and a running one is finished or undone by the agent itself (stop the agent to stop it safely)"
                   if deployment.finished else
                   f"deployment {deployment_id} is running ({deployment.state}); it cannot be cancelled from outside "
                   "without risking a half-deployed host: stop the agent (SIGTERM) and it stops safely at the next step")


@router.get("/revisions", response_model=list[RevisionView], response_model_exclude_unset=True, responses=errors(422))
def list_revisions(request: Request, caller: ViewerDep, manifests: bool = False) -> list[RevisionView]:
    """Kept revisions, newest first (``manifests=true`` includes each manifest)."""
    return [
        RevisionView(number=r.number, manifest_sha256=r.manifest_sha256, feed_serial=r.feed_serial, created_at=r.created_at,
                     deployment_id=r.deployment_id, platform=r.manifest.get("platform"),
                     **({"manifest": r.manifest} if manifests else {}))
        for r in service_of(request).store.revisions.list()
    ]


@router.get("/revisions/{number}", response_model=Revision, responses=errors(404, 422))
def get_revision(request: Request, number: int, caller: ViewerDep) -> Revision:
    """One kept revision with its manifest."""
    revision = service_of(request).store.revisions.get(number)
    if revision is None:
        raise NotFound(f"revision {number} is not kept")
    return revision


@router.get("/rollback/check", response_model=RollbackPreview, responses=errors(404, 409, 422))
def rollback_preview(request: Request, caller: ViewerDep, to_revision: int | None = Query(None, ge=1)) -> RollbackPreview:
    """What a rollback would change and whether it may go ahead (the TUI's preview)."""
    check = service_of(request).check_rollback(to_revision)
    return RollbackPreview(
        to_revision=check.to_revision, from_revision=check.from_revision,
        changes=[RollbackChange(capability=c.capability, from_version=c.from_version, to_version=c.to_version) for c in check.changes],
        problems=list(check.problems), advisories=list(check.advisories),
        allowed=check.refusal(force=False) is None, needs_force=bool(check.advisories) and not check.problems,
    )


@router.post("/rollback", response_model=RollbackOutcome, responses=errors(404, 409, 422, 503))
def rollback(request: Request, body: RollbackRequest, caller: Admin) -> RollbackOutcome:
    """Roll back to a kept revision (default: the one before the running one), checked first; waits for the deployment and answers how it went."""
    result = service_of(request).rollback(caller.user, body.to_revision, body.reason or f"rollback by {caller.user}", body.force)
    return RollbackOutcome(operation=result.operation, deployment_status=result.deployment.status.value,
                           revision=result.deployment.revision, error=result.deployment.error)


@router.get("/rollback/history", response_model=list[RollbackOperation], responses=errors(422))
def rollback_history(request: Request, caller: ViewerDep, limit: int = Query(50, ge=1, le=1000)) -> list[RollbackOperation]:
    """Rollbacks, newest first: who, from which revision to which, why, how it went."""
    return service_of(request).store.rollbacks.list(limit)
