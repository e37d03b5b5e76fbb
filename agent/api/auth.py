"""How a route learns who is calling: FastAPI dependencies over the kernel's credentials.

    app = FastAPI()
    install_roles(app, config.roles)

    @app.get("/status")
    async def status(caller: ViewerDep): ...

    @app.post("/approvals/{update_id}/approve")
    async def approve(caller: Annotated[Caller, Depends(requires(Role.approver, "approve updates"))]): ...

A caller that lacks the role gets 403 with an ErrorBody (``code`` ``forbidden``) whose
``message`` names the groups that would grant it; the clients print that line as it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from agent.config import RolesConfig

from agent.api.peer import peer_from_scope
from agent.api.roles import AccountLookup, Caller, Forbidden, Role, identify, require, system_accounts

_ROLES = "id1_roles"
_ACCOUNTS = "id1_accounts"
_CALLER = "id1_caller"


def install_roles(app: FastAPI, roles: RolesConfig, *, lookup: AccountLookup = system_accounts) -> None:
    """Give ``app`` its roles config and answer Forbidden with 403.

    Call it again with the new config on reload; requests read it per request.
    """
    setattr(app.state, _ROLES, roles)
    setattr(app.state, _ACCOUNTS, lookup)
    app.add_exception_handler(Forbidden, _forbidden_response)


async def _forbidden_response(request: Request, exc: Exception) -> JSONResponse:
    # The ErrorBody shape (agent.api.schemas), as every other error the API answers.
    return JSONResponse(status_code=403, content={"code": "forbidden", "message": str(exc), "fields": []})


def roles_from(request: Request) -> RolesConfig:
    try:
        return getattr(request.app.state, _ROLES)
    except AttributeError:
        raise RuntimeError("install_roles(app, roles) was not called for this app") from None


async def caller_from(request: Request) -> Caller:
    """The Caller behind this request's connection (resolved once per request).

    Without kernel credentials (not our protocol, not a Unix socket) nobody is trusted.
    """
    cached = request.scope.get("state", {}).get(_CALLER)
    if cached is not None:
        return cached
    peer = peer_from_scope(request.scope)
    if peer is None:
        raise Forbidden(
            "cannot tell who is calling: the API answers only on its Unix socket, "
            "where the kernel names the caller"
        )
    caller = identify(peer, roles_from(request), lookup=getattr(request.app.state, _ACCOUNTS))
    request.scope.setdefault("state", {})[_CALLER] = caller
    return caller


CallerDep = Annotated[Caller, Depends(caller_from)]
"""A route parameter typed ``CallerDep`` receives the Caller, whatever its role."""


def requires(needed: Role, action: str | None = None) -> Callable[[Request], Awaitable[Caller]]:
    """A dependency that yields the Caller if it holds ``needed``, else answers 403.

    ``action`` completes the refusal "alice may not …", e.g. "approve updates".
    """

    async def caller_with_role(request: Request) -> Caller:
        caller = await caller_from(request)
        require(caller, needed, roles_from(request), action=action)
        return caller

    caller_with_role.role = needed  # type: ignore[attr-defined]  # read by the API reference (reference.py)
    return caller_with_role


ViewerDep = Annotated[Caller, Depends(requires(Role.viewer))]
"""A route parameter typed ``ViewerDep`` receives the Caller if it may read the agent's state
(viewer or above); anyone else gets 403. Every route of the agent's API needs at least this."""
