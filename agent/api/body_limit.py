"""A cap on request bodies, for every route: ``app.add_middleware(BodyLimit, max_bytes=…)``.

A body whose Content-Length is over the cap is answered 413 before a byte of it is read; a
chunked body is counted as the app reads it and answered 413 as soon as it passes the cap (the
app then sees the client as gone, and whatever it answers is dropped). Either way the answer
says ``Connection: close``: the rest of the body is never read.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

Scope = dict[str, Any]
Message = dict[str, Any]


def _size(limit: int) -> str:
    return f"{limit / (1 << 20):g} MiB" if limit >= 1 << 20 else f"{limit:,} bytes"


def too_large_message(limit: int) -> str:
    return f"the request body is larger than the agent accepts ({_size(limit)}); every body the API takes is far smaller"


def closing_error(status: int, code: str, message: str, fields: list[dict[str, str]] | None = None) -> JSONResponse:
    """An ``ErrorBody`` answer that ends the connection: what is left of the request is never read."""
    return JSONResponse(status_code=status, content={"code": code, "message": message, "fields": fields or []},
                        headers={"Connection": "close"})


class BodyLimit:
    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        problem = [{"field": "body", "message": f"larger than {_size(limit)}"}]
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await closing_error(413, "too-large", too_large_message(limit), problem)(scope, receive, send)
            return

        read = 0
        started = answered = False

        async def counted_receive() -> Message:
            nonlocal read, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    answered = True
                    if not started:
                        await closing_error(413, "too-large", too_large_message(limit), problem)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # we answered for the app
            started = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)
