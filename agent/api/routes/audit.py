"""The audit log: ``GET /audit`` (newest first, filterable) and ``GET /audit/verify``."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from agent.api.auth import ViewerDep
from agent.api.routes import errors, service_of
from agent.api.schemas import AuditEntry, AuditVerification

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=list[AuditEntry], responses=errors(422))
def entries(request: Request, caller: ViewerDep, actor: str | None = Query(None, max_length=200),
            action: str | None = Query(None, max_length=200), limit: int = Query(100, ge=1, le=10000),
            before_seq: int | None = Query(None, ge=1)) -> list[AuditEntry]:
    """Audit entries, newest first, filterable by actor and action."""
    return service_of(request).audit.entries(actor=actor, action=action, limit=limit, before_seq=before_seq)


@router.get("/audit/verify", response_model=AuditVerification)
async def verify(request: Request, caller: ViewerDep) -> AuditVerification:
    """Check the audit log's hash chain: every edited, removed or reordered entry is named."""
    return await run_in_threadpool(service_of(request).audit.verify)
