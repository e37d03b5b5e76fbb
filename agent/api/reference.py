"""docs/api.md, written from the app itself: every route, the role it needs, what it does.

    python -m agent.api.reference > docs/api.md

A test checks the file is what this prints, so the reference cannot drift from the code.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI
from fastapi.routing import APIRoute

from agent.api.app import create_app
from agent.config import RolesConfig

INTRO = """# The agent's API

The daemon serves HTTP on a Unix socket, `/run/id1/agent.sock` by default (`socket` in the
config), mode 0666: every local user may connect, and the daemon tells who is calling from the
socket's peer credentials (SO_PEERCRED), never from anything the request says. Roles come from
Unix groups named in the config's `[roles]`; root is admin.

| Role | May |
|---|---|
| viewer | read everything |
| approver | + approve and reject updates, check the feed now |
| admin | + pins, policies, rollback, deployments, enforcing advisories, unblocking versions, lifting a fleet halt, freeing a gone host's fleet slot |

The `id1` verbs and `id1 tui` are clients of this API; anything they do, a script can do:

```sh
curl --unix-socket /run/id1/agent.sock http://id1/status
```

The OpenAPI description is served at `/openapi.json` (and browsable at `/docs`), to callers
with the viewer role like everything else: a caller with no role is answered 403 before its
request is routed or its body read.

The socket defends itself against local users (docs/security.md): each user but root may hold
32 connections at once, and everyone but root 128 together (root is counted in neither); no
connection is taken while fewer than 256 of the agent's descriptors are free (at most a quarter
of its limit); a request head must arrive within 5 s and its body within 10 s more; a body may
not exceed 1 MiB. A connection refused for these reasons is answered 503 and closed.

Every error answer has one shape, `{"code": …, "message": …, "fields": [{"field": …, "message": …}]}`:
`invalid` (422, the field named), `forbidden` (403, naming the group that grants the role),
`not-found` (404), `conflict` or `refused` (409), `too-large` (413, the body over 1 MiB),
`feed-rejected` (502), `unavailable` or `failed` (503). Bad input never gets a 5xx.

This reference is generated from the code (`python -m agent.api.reference`).
"""


def role_of(route: APIRoute) -> str:
    for dependency in route.dependant.dependencies:
        role = getattr(dependency.call, "role", None)
        if role is not None:
            return str(role)
    return "anyone"


def api_routes(routes) -> list[APIRoute]:
    """Every APIRoute, also inside included routers (newer FastAPI keeps them wrapped)."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += api_routes(route.original_router.routes)
    return found


def render_reference(app: FastAPI) -> str:
    lines = [INTRO]
    sections: dict[str, list[str]] = {}
    for route in api_routes(app.routes):
        if not route.include_in_schema:
            continue
        tag = route.tags[0] if route.tags else "other"
        doc = inspect.cleandoc(route.endpoint.__doc__ or "").split("\n\n")[0].replace("\n", " ").replace("``", "`")
        body = getattr(route.body_field.field_info.annotation, "__name__", "") if route.body_field is not None else ""
        for method in sorted(route.methods):
            sections.setdefault(tag, []).append(
                f"| `{method} {route.path}` | {role_of(route)} | {body and f'`{body}`'} | {doc or route.name.replace('_', ' ')} |"
            )
    for tag, rows in sections.items():
        lines += [f"## {tag.capitalize()}", "", "| Route | Role | Body | What it does |", "|---|---|---|---|", *rows, ""]
    return "\n".join(lines)


def main() -> None:
    print(render_reference(create_app(None, RolesConfig())), end="")  # the app's routes, no agent behind them


if __name__ == "__main__":
    main()
