"""The fleet group (DESIGN.md §12): ``GET /fleet``, ``POST /fleet/resume``, ``POST /fleet/release``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from agent.api.auth import ViewerDep, requires
from agent.api.roles import Caller, Role
from agent.api.routes import errors, service_of
from agent.api.schemas import FleetOutcome, FleetReleaseRequest, FleetResumeRequest, FleetState

router = APIRouter(tags=["fleet"])
Admin = Annotated[Caller, Depends(requires(Role.admin, "resume a halted change or free a fleet slot"))]


@router.get("/fleet", response_model=FleetState)
def fleet(request: Request, caller: ViewerDep) -> FleetState:
    """The group's hosts (what each published), slot holders, hosts waiting in line, and changes that failed on hosts of the group (halted at ``halt_after``)."""
    service = service_of(request)
    view = service.fleet_view()
    wait = service.slot_wait
    return FleetState(**asdict(view), slot_wait=wait.describe() if wait is not None else None)


@router.post("/fleet/resume", response_model=FleetOutcome, responses=errors(409, 422, 503))
def resume(request: Request, body: FleetResumeRequest, caller: Admin) -> FleetOutcome:
    """Lift the group's halt of a change (its failure records are removed); every host may deploy it again."""
    failed = service_of(request).fleet_resume(caller.user, body.ref, body.reason)
    hosts = next(iter(failed.values()), [])
    return FleetOutcome(message=f"{body.ref} resumed for the group" + (f" (it had failed on {', '.join(hosts)})" if hosts else ""))


@router.post("/fleet/release", response_model=FleetOutcome, responses=errors(409, 422, 503))
def release(request: Request, body: FleetReleaseRequest, caller: Admin) -> FleetOutcome:
    """Free the slot held by a host that is gone (it would otherwise be freed when its lease expires)."""
    service_of(request).fleet_release(caller.user, body.host_id, body.reason)
    return FleetOutcome(message=f"the slot of {body.host_id} is free")
