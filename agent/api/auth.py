"""How a route learns who is calling: FastAPI dependencies over the kernel's credentials.

    app = FastAPI()
    install_roles(app, config.roles)

    @app.get("/status")
    async def status(caller: ViewerDep): ...

    @app.post("/approvals/{update_id}/approve")
    async def approve(caller: Annotated[Caller, Depends(requires(Role.approver, "approve updates"))]): ...

A caller that lacks the role gets 403 with an ErrorBody (``code`` ``forbidden``) whose
``message`` names the groups that would grant it; the clients print that line as it is.

Every route needs at least the viewer role, and so do the OpenAPI schema and its pages
(``/openapi.json``, ``/docs``, ``/redoc``) and paths the API does not have. ``install_roles``
also puts ``RoleGate`` in front of the app: a caller with no role is answered 403 before its
request is routed or a byte of its body is read (FastAPI reads and parses a body before it runs
a route's dependencies, so the routes' own checks come too late for a 1 GB body). Paths a
caller without a role may reach are named in ``open_paths``; the agent's API has none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from agent.config import RolesConfig

from agent.api.body_limit import closing_error
from agent.api.peer import PeerCredentials, peer_from_scope
from agent.api.roles import AccountLookup, Caller, Forbidden, Role, identify, require, system_accounts

_ROLES = "id1_roles"
_ACCOUNTS = "id1_accounts"
_CALLER = "id1_caller"
_GATED = "id1_role_gate"

UNKNOWN_CALLER = ("cannot tell who is calling: the API answers only on its Unix socket, "
                  "where the kernel names the caller")


def install_roles(app: FastAPI, roles: RolesConfig, *, lookup: AccountLookup = system_accounts,
                  open_paths: Collection[str] = ()) -> None:
    """Give ``app`` its roles config, answer Forbidden with 403, and refuse callers without a
    role (except on ``open_paths``) before their requests are read.

    Call it again with the new config on reload; requests read it per request (the gate and
    its ``open_paths`` stay those of the first call).
    """
    setattr(app.state, _ROLES, roles)
    setattr(app.state, _ACCOUNTS, lookup)
    app.add_exception_handler(Forbidden, _forbidden_response)
    if not getattr(app.state, _GATED, False):
        # Added last, so it is the outermost of the app's own middleware: before BodyLimit too,
        # a caller without a role is told 403, not 413.
        app.add_middleware(RoleGate, open_paths=frozenset(open_paths))
        setattr(app.state, _GATED, True)


class RoleGate:
    """ASGI middleware: a caller without a role (or whom the kernel did not name) is answered
    403 before anything of its request but the head is read; anyone else goes on to the
    routes, which check the role each one needs. The Caller is left in the scope for them."""

    def __init__(self, app: Any, open_paths: frozenset[str] = frozenset()):
        self.app = app
        self.open_paths = open_paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        owner = scope["app"]
        peer = peer_from_scope(scope)
        refusal = UNKNOWN_CALLER if peer is None else self._refusal(owner, scope, peer)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[:120]})
        else:
            await closing_error(403, "forbidden", refusal)(scope, receive, send)

    def _refusal(self, owner: Any, scope: dict[str, Any], peer: PeerCredentials) -> str | None:
        roles = getattr(owner.state, _ROLES)
        caller = identify(peer, roles, lookup=getattr(owner.state, _ACCOUNTS))
        scope.setdefault("state", {})[_CALLER] = caller
        try:
            require(caller, Role.viewer, roles)
        except Forbidden as refused:
            return None if scope["path"] in self.open_paths else str(refused)
        return None


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
        raise Forbidden(UNKNOWN_CALLER)
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
