"""The control API (DESIGN.md §7): ``create_app(service, roles)``, served on the Unix socket.

Routes live in ``routes/``, one module per area; they translate HTTP to the service's calls and
the agent's errors to ``ErrorBody`` answers, and declare which ones they give (``errors(...)``),
so the published OpenAPI lists every status a route answers:

    422 invalid       the request does not fit the schema or a value does not fit the store;
                      ``fields`` names each field (``comment``, ``limit``, ``body`` for the JSON)
    403 forbidden     the caller's role does not allow it; the message names the groups (a
                      caller with no role is refused before its body is read: ``auth.RoleGate``)
    404 not-found     an unknown id, or a path the API does not have
    405 method-not-allowed   ``Allow`` lists every method the path has
    409 conflict      a clash with the agent's state (already decided, changed since shown)
    413 too-large     the body is over ``ApiLimits.max_body_bytes`` (``body_limit``); the
                      connection is closed, the rest of the body never read
    502/503           the feed was rejected; the agent cannot do it now
    500 internal      a bug: the answer is still an ErrorBody, never a traceback; the
                      traceback goes to the agent's log

Every answer that is not a success has the same shape, whoever raised it (a route, the store,
FastAPI's validation or Starlette's router), so a client reads one ``message``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent import __version__
from agent.api.auth import install_roles
from agent.api.body_limit import BodyLimit
from agent.api.limits import ApiLimits
from agent.api.routes import audit, deployments, errors, fleet, security, settings, status, updates
from agent.config import RolesConfig
from agent.daemon.service import AgentService
from agent.deploy.engine import RollbackRefused
from agent.errors import Conflict, FeedRejected, FeedUnavailable, Id1Error, NotFound
from agent.store.errors import InvalidTransition, InvalidValue, RecordNotFound


def create_app(service: AgentService, roles: RolesConfig, *, limits: ApiLimits = ApiLimits()) -> FastAPI:
    app = FastAPI(
        title="id1-agent",
        version=__version__,
        description="The update agent's control API, on a Unix socket; callers are identified by peer credentials.",
        responses=errors(403, 413),
        # FastAPI's OpenTelemetry spans, metrics and logs cost every request some work, and
        # FASTAPI_OTEL_AUTO_CONFIGURE=true in the environment would send them to an exporter:
        # the agent's API reports nothing anywhere (metrics go to its own textfile).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False, "auto_configure": False},
    )
    app.state.id1_service = service
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    install_roles(app, roles)  # answers Forbidden with 403; its gate goes in front of BodyLimit
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(ValidationError, _invalid_model)
    app.add_exception_handler(InvalidValue, _invalid_value)
    app.add_exception_handler(NotFound, _error(404, "not-found"))
    app.add_exception_handler(RecordNotFound, _error(404, "not-found"))
    app.add_exception_handler(Conflict, _error(409, "conflict"))
    app.add_exception_handler(InvalidTransition, _error(409, "conflict"))
    app.add_exception_handler(RollbackRefused, _error(409, "refused"))
    app.add_exception_handler(FeedRejected, _error(502, "feed-rejected"))
    app.add_exception_handler(FeedUnavailable, _error(503, "unavailable"))
    app.add_exception_handler(Id1Error, _error(503, "failed"))
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    routers = [module.router for module in (status, updates, deployments, settings, security, audit, fleet)]
    for router in routers:
        app.include_router(router)
    # Which methods each path has, for the Allow header of a 405 (the app's own routes and ours).
    app.state.id1_methods = [(route.path_regex, frozenset(route.methods or ()))
                             for route in [*app.router.routes, *(r for router in routers for r in router.routes)]
                             if hasattr(route, "path_regex")]
    return app


def error_response(status_code: int, code: str, message: str, fields: Iterable[Mapping[str, str]] = (),
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An ``ErrorBody`` answer."""
    return JSONResponse(status_code=status_code, content={"code": code, "message": message, "fields": list(fields)},
                        headers=headers)


def _error(status_code: int, code: str):
    async def handler(request: Request, error: Exception) -> JSONResponse:
        return error_response(status_code, code, str(error))
    return handler


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    fields = [_field_error(issue) for issue in error.errors()]
    message = "; ".join(f"{item['field']}: {item['message']}" for item in fields) or "invalid request"
    return error_response(422, "invalid", message, fields)


def _field_error(issue: Mapping[str, Any]) -> dict[str, str]:
    """One of FastAPI's validation issues as ``{field, message}``: the field without its location
    (``comment``, not ``body.comment``), the whole body as ``body``, in words a person acts on."""
    location, *path = issue.get("loc") or ("body",)
    kind = issue.get("type", "")
    if kind == "json_invalid":
        at = f" (at character {path[0] + 1})" if path and isinstance(path[0], int) else ""  # 1-based, as people count
        return {"field": "body", "message": f"the body is not valid JSON: {issue.get('ctx', {}).get('error', 'cannot parse it')}{at}"}
    field = ".".join(str(part) for part in path) or str(location)
    if kind == "extra_forbidden":
        return {"field": field, "message": "unknown field"}
    if kind == "missing" and not path and location == "body":
        return {"field": "body", "message": "a JSON object is required as the body (Content-Type: application/json)"}
    if kind in ("model_type", "model_attributes_type", "dict_type") and not path:
        return {"field": "body", "message": "the body must be a JSON object (Content-Type: application/json)"}
    return {"field": field, "message": str(issue.get("msg", "invalid"))}


async def _invalid_model(request: Request, error: ValidationError) -> JSONResponse:
    fields = [{"field": ".".join(str(part) for part in issue["loc"]), "message": issue["msg"]} for issue in error.errors()]
    message = "; ".join(f"{item['field']}: {item['message']}" if item["field"] else item["message"] for item in fields)
    return error_response(422, "invalid", message, fields)


async def _invalid_value(request: Request, error: InvalidValue) -> JSONResponse:
    return error_response(422, "invalid", str(error), [{"field": issue.path, "message": issue.message} for issue in error.issues])


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """What FastAPI and Starlette's router raise themselves: a body that cannot be decoded, an
    unknown path, a method the path does not have."""
    headers = dict(error.headers or {})
    if error.status_code == 400:  # FastAPI's answer to a body it cannot even decode (not UTF-8)
        cause = error.__cause__
        why = "it is not UTF-8 text" if isinstance(cause, UnicodeDecodeError) else str(cause or error.detail)
        problem = {"field": "body", "message": f"the body is not valid JSON: {why}"}
        return error_response(422, "invalid", f"body: {problem['message']}", [problem], headers=headers)
    if error.status_code == 404:
        return error_response(404, "not-found", f"the agent's API has no {request.url.path}", headers=headers)
    if error.status_code == 405:
        # Starlette names only the first route that matched the path; a path served by several
        # routes (GET and PUT /policy) has all of their methods.
        allowed = _methods_for_path(request)
        headers["Allow"] = ", ".join(allowed)
        return error_response(405, "method-not-allowed",
                              f"{request.method} is not allowed on {request.url.path}: use {' or '.join(allowed)}", headers=headers)
    return error_response(error.status_code, "invalid" if error.status_code < 500 else "failed", str(error.detail), headers=headers)


def _methods_for_path(request: Request) -> list[str]:
    path = request.url.path
    return sorted({method for pattern, methods in request.app.state.id1_methods if pattern.match(path) for method in methods})


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # Starlette re-raises the error after this answer, so the server logs its traceback.
    return error_response(500, "internal", f"the agent failed unexpectedly ({type(error).__name__}: {error}); "
                          "this is a bug, and the agent's log has the details")
