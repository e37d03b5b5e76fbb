"""Pins, policies and blocked versions: ``/versions``, ``/versions/pin|unpin``, ``/policies``, ``/policy``, ``/blocked``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from agent.api.auth import ViewerDep, requires
from agent.api.roles import Caller, Role
from agent.api.routes import errors, service_of
from agent.api.schemas import (
    BlockedVersion, ChannelRequest, EffectivePolicy, PinRequest, PinView, PolicyRequest, PolicyUpdate, Unblocked, UnpinRequest,
    UpdatePolicy, Versions,
)
from agent.errors import NotFound
from agent.planning import Manifest

router = APIRouter(tags=["pins and policies"])
Admin = Annotated[Caller, Depends(requires(Role.admin, "change pins, policies or blocked versions"))]


@router.get("/versions", response_model=Versions)
def versions(request: Request, caller: ViewerDep) -> Versions:
    """Pins (from the config file, read-only, and from the API), the running versions, the versions the feed offers, blocked versions."""
    service = service_of(request)
    latest = service.store.revisions.latest()
    installed = Manifest.model_validate(latest.manifest).versions() if latest else {}
    available: dict[str, list[str]] = {}
    if service.catalog is not None:
        catalog = service.catalog
        available["platform"] = [str(catalog.platforms[v].version) for v in catalog.versions("platform")]
        for ref in sorted(catalog.capabilities):
            available[ref] = [catalog.capabilities[ref][v].version for v in catalog.versions(ref)]
    return Versions(pins=_pins(service), installed=installed, available=available, blocked=service.store.blocked.list())


@router.post("/versions/pin", response_model=PinView, responses=errors(409, 422, 503))
def pin(request: Request, body: PinRequest, caller: Admin) -> PinView:
    """Pin a platform, suite or capability to a version or specifier (one pin per name: pinning again replaces it)."""
    pin = service_of(request).set_pin(caller.user, body.level, body.name, body.version, body.reason)
    return PinView(origin="api", **pin.model_dump())


@router.post("/versions/unpin", response_model=PinView, responses=errors(404, 409, 422, 503))
def unpin(request: Request, body: UnpinRequest, caller: Admin) -> PinView:
    """Remove a pin made through the API."""
    pin = service_of(request).remove_pin(caller.user, body.level, body.name, body.reason)
    return PinView(origin="api", **pin.model_dump())


@router.get("/policies", response_model=list[UpdatePolicy])
def list_policies(request: Request, caller: ViewerDep) -> list[UpdatePolicy]:
    """Stored update policies (the API's; the newest enabled one per scope wins over the config file)."""
    return service_of(request).store.policies.list()


@router.post("/policies", response_model=UpdatePolicy, status_code=201, responses=errors(422, 503))
def create_policy(request: Request, body: PolicyRequest, caller: Admin) -> UpdatePolicy:
    """Create an update policy for the instance or, with `suite`, for one suite."""
    return service_of(request).create_policy(caller.user, **body.model_dump())


@router.get("/policies/{policy_id}", response_model=UpdatePolicy, responses=errors(404, 422))
def get_policy(request: Request, policy_id: str, caller: ViewerDep) -> UpdatePolicy:
    """One stored update policy."""
    policy = service_of(request).store.policies.get(policy_id)
    if policy is None:
        raise NotFound(f"there is no policy {policy_id}")
    return policy


@router.put("/policies/{policy_id}", response_model=UpdatePolicy, responses=errors(404, 422, 503))
def update_policy(request: Request, policy_id: str, body: PolicyUpdate, caller: Admin) -> UpdatePolicy:
    """Change a stored update policy."""
    return service_of(request).update_policy(caller.user, policy_id, **body.model_dump(exclude_unset=True))


@router.delete("/policies/{policy_id}", status_code=204, response_class=Response, responses=errors(404, 422, 503))
def delete_policy(request: Request, policy_id: str, caller: Admin) -> Response:
    """Delete a stored update policy."""
    service_of(request).delete_policy(caller.user, policy_id)
    return Response(status_code=204)


@router.get("/policy", response_model=EffectivePolicy)
def effective(request: Request, caller: ViewerDep) -> EffectivePolicy:
    """The policy in force: the config file's with the enabled stored policies over it."""
    service = service_of(request)
    policy = service.planning_policy(windowed=False)
    return EffectivePolicy(channel=policy.channel, suites={s: p.channel for s, p in policy.suites.items()},
                           enforce_severity=policy.enforce_severity, maintenance_window=policy.maintenance_window,
                           timezone=policy.timezone, allow_prerelease=policy.allow_prerelease,
                           policies=service.store.policies.list())


@router.put("/policy", response_model=EffectivePolicy, responses=errors(422, 503))
def set_channel(request: Request, body: ChannelRequest, caller: Admin) -> EffectivePolicy:
    """Set the channel of the instance or of one suite (`id1 policy set`): updates the newest policy of that scope or creates one."""
    service_of(request).set_channel(caller.user, body.channel, body.suite, body.reason)
    return effective(request, caller)


@router.get("/blocked", response_model=list[BlockedVersion])
def blocked(request: Request, caller: ViewerDep) -> list[BlockedVersion]:
    """Versions not chosen again automatically (rolled back from, or whose deployment failed)."""
    return service_of(request).store.blocked.list()


@router.delete("/blocked/{ref:path}", response_model=Unblocked, responses=errors(404, 422, 503))
def unblock(request: Request, ref: str, caller: Admin) -> Unblocked:
    """Unblock a version (e.g. `core/auth@1.1.0`) so automatic updates may choose it again."""
    service_of(request).unblock(caller.user, ref)
    return Unblocked(ref=ref)


def _pins(service) -> list[PinView]:
    configured = [PinView(id=None, level=p.level, name=p.name, version=p.version, reason=p.reason, origin="config")
                  for p in service.config.pins]
    stored = [PinView(origin="api", **p.model_dump()) for p in service.store.pins.list()]
    return configured + stored
