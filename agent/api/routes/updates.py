"""Pending updates and their approval: ``GET /updates``, ``/approvals``, approve and reject."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from agent.api.auth import ViewerDep, requires
from agent.api.roles import Caller, Role
from agent.api.routes import errors, service_of
from agent.api.schemas import Approval, ApproveRequest, Change, Decision, Problem, RejectRequest, Updates
from agent.errors import NotFound

router = APIRouter(tags=["updates"])
Approver = Annotated[Caller, Depends(requires(Role.approver, "approve or reject updates"))]


@router.get("/updates", response_model=Updates)
def get_updates(request: Request, caller: ViewerDep) -> Updates:
    """The plan against the feed in force: each change (from, to, source, action), problems, and the approval bound to this target."""
    service = service_of(request)
    plan = service.plan
    approval = None
    if plan is not None and plan.target_hash is not None:
        found = service.store.approvals.for_target(plan.target_hash)
        if found is not None and not found.finished:
            approval = found
    return Updates(
        target_hash=plan.target_hash if plan else None,
        changes=[Change.model_validate(change.to_json()) for change in (plan.changes if plan else ())],
        problems=[Problem(code=p.code, detail=p.detail) for p in (plan.problems if plan else ())],
        approval=approval,
        next_window=service.next_window(),
    )


@router.get("/approvals", response_model=list[Approval], responses=errors(422))
def list_approvals(request: Request, caller: ViewerDep, limit: int = Query(50, ge=1, le=1000)) -> list[Approval]:
    """Approvals, newest first, with their status, who decided and why."""
    return service_of(request).store.approvals.list(limit)


@router.get("/approvals/{approval_id}", response_model=Approval, responses=errors(404, 422))
def get_approval(request: Request, approval_id: str, caller: ViewerDep) -> Approval:
    """One approval, with the target manifest, the changes, release notes and advisories shown to approvers."""
    approval = service_of(request).store.approvals.get(approval_id)
    if approval is None:
        raise NotFound(f"there is no approval {approval_id}")
    return approval


@router.post("/approvals/{approval_id}/approve", response_model=Decision, responses=errors(404, 409, 422, 503))
def approve(request: Request, approval_id: str, body: ApproveRequest, caller: Approver) -> Decision:
    """Approve a pending update: it deploys now, or when the maintenance window opens."""
    service = service_of(request)
    approval = service.approve(approval_id, caller.user, body.comment)
    opens = service.next_window()
    when = "deploying now" if opens is None or opens <= service.clock() else f"deploys when the maintenance window opens ({opens:%a %Y-%m-%d %H:%M %Z})"
    return Decision(approval=approval, message=f"{approval_id} approved by {caller.user}; {when}")


@router.post("/approvals/{approval_id}/reject", response_model=Decision, responses=errors(404, 409, 422, 503))
def reject(request: Request, approval_id: str, body: RejectRequest, caller: Approver) -> Decision:
    """Reject a pending update, with the reason (recorded in the audit log)."""
    approval = service_of(request).reject(approval_id, caller.user, body.reason)
    return Decision(approval=approval, message=f"{approval_id} rejected by {caller.user}")
