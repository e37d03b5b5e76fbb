"""The API client every front end uses (``id1`` verbs, ``id1 tui``): httpx over the Unix socket.

    client = AgentClient.connect(socket_path)      # --socket, else $ID1_SOCKET, else /run/id1/agent.sock
    client.status()["activity"]

Answers are plain JSON (dicts and lists) as the API documents them. An id put into a path
(``approve("approval-3")``) is one path segment whatever it holds: ``../audit`` asks for an
approval of that name, it does not walk up to ``/audit``. Failures are one of:

    AgentUnreachable   no daemon on the socket (not running, wrong path, no permission)
    ApiError           the daemon answered with an error: ``status`` (403, 404, 409, 422…),
                       ``code`` and the one-line ``message`` to show as it is
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from agent.errors import AgentUnreachable, ApiError, UsageError
from agent.socket_path import DEFAULT_SOCKET, SOCKET_ENV, socket_path

# The errors and the socket's whereabouts live in light modules (the CLI imports them without
# httpx); they are named here too, where a client's user looks for them.
__all__ = ["DEFAULT_SOCKET", "DEFAULT_TIMEOUT", "SOCKET_ENV", "AgentClient", "AgentUnreachable", "ApiError", "segment", "socket_path"]

DEFAULT_TIMEOUT = httpx.Timeout(10.0, read=900.0)  # a rollback waits for its deployment


def segment(value: str) -> str:
    """``value`` as one path segment: every character a URL path gives a meaning to (``/``, ``?``,
    ``#``, ``%``) percent-encoded, and a segment of dots too (httpx would resolve ``..``)."""
    if not value:
        raise UsageError("an empty name names nothing: give the id (see id1 updates, id1 history)")
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted.strip(".") == "" else quoted


class AgentClient:
    def __init__(self, http: httpx.Client, socket: Path):
        self._http = http
        self.socket = socket

    @classmethod
    def connect(cls, socket: str | os.PathLike | None = None, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> AgentClient:
        path = socket_path(socket)
        # No TLS on a Unix socket: without verify=False the transport would still load a CA bundle,
        # and fail with a traceback when $SSL_CERT_FILE names a file that is not there.
        http = httpx.Client(transport=httpx.HTTPTransport(uds=str(path), verify=False), base_url="http://id1-agent", timeout=timeout)
        return cls(http, path)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- reading --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def updates(self) -> dict[str, Any]:
        return self._call("GET", "/updates")

    def approvals(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._call("GET", "/approvals", params={"limit": limit})

    def approval(self, approval_id: str) -> dict[str, Any]:
        return self._call("GET", f"/approvals/{segment(approval_id)}")

    def revisions(self, *, manifests: bool = False) -> list[dict[str, Any]]:
        return self._call("GET", "/revisions", params={"manifests": manifests})

    def revision(self, number: int) -> dict[str, Any]:
        return self._call("GET", f"/revisions/{segment(str(number))}")

    def deployments(self, limit: int = 20) -> list[dict[str, Any]]:
        return self._call("GET", "/deployments", params={"limit": limit})

    def rollback_check(self, to_revision: int | None = None) -> dict[str, Any]:
        return self._call("GET", "/rollback/check", params={} if to_revision is None else {"to_revision": to_revision})

    def rollback_history(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._call("GET", "/rollback/history", params={"limit": limit})

    def versions(self) -> dict[str, Any]:
        return self._call("GET", "/versions")

    def policy(self) -> dict[str, Any]:
        return self._call("GET", "/policy")

    def policies(self) -> list[dict[str, Any]]:
        return self._call("GET", "/policies")

    def blocked(self) -> list[dict[str, Any]]:
        return self._call("GET", "/blocked")

    def advisories(self) -> list[dict[str, Any]]:
        return self._call("GET", "/security/patches")

    def audit(self, *, actor: str | None = None, action: str | None = None, limit: int = 100,
              before_seq: int | None = None) -> list[dict[str, Any]]:
        params = {"limit": limit, "actor": actor, "action": action, "before_seq": before_seq}
        return self._call("GET", "/audit", params={k: v for k, v in params.items() if v is not None})

    def audit_verify(self) -> dict[str, Any]:
        return self._call("GET", "/audit/verify")

    def report(self, format: str = "markdown") -> str | dict[str, Any]:
        if format == "json":
            return self._call("GET", "/report", params={"format": "json"})
        return self._call("GET", "/report", params={"format": "markdown"}, text=True)

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Server-sent events as ``(kind, data)``, until the connection closes."""
        try:
            with self._http.stream("GET", "/events", timeout=httpx.Timeout(10.0, read=None)) as response:
                if response.status_code != 200:
                    response.read()
                    self._raise_for(response)
                kind, data = "message", []
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line == "" and data:
                        yield kind, json.loads("\n".join(data))
                        kind, data = "message", []
        except httpx.TransportError as error:
            raise self._unreachable(error) from None

    # --- deciding -------------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        return self._call("POST", "/check")

    def approve(self, approval_id: str, comment: str | None = None) -> dict[str, Any]:
        return self._call("POST", f"/approvals/{segment(approval_id)}/approve", json={"comment": comment})

    def reject(self, approval_id: str, reason: str) -> dict[str, Any]:
        return self._call("POST", f"/approvals/{segment(approval_id)}/reject", json={"reason": reason})

    def rollback(self, to_revision: int | None = None, *, reason: str = "", force: bool = False) -> dict[str, Any]:
        return self._call("POST", "/rollback", json={"to_revision": to_revision, "reason": reason, "force": force})

    def pin(self, level: str, name: str, version: str, reason: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/versions/pin", json={"level": level, "name": name, "version": version, "reason": reason})

    def unpin(self, level: str, name: str, reason: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/versions/unpin", json={"level": level, "name": name, "reason": reason})

    def set_channel(self, channel: str, suite: str | None = None, reason: str | None = None) -> dict[str, Any]:
        return self._call("PUT", "/policy", json={"channel": channel, "suite": suite, "reason": reason})

    def unblock(self, ref: str) -> dict[str, Any]:
        return self._call("DELETE", f"/blocked/{segment(ref)}")

    def enforce(self, advisory_id: str) -> dict[str, Any]:
        return self._call("POST", "/security/enforce", json={"advisory_id": advisory_id})

    def fleet(self) -> dict[str, Any]:
        return self._call("GET", "/fleet")

    def fleet_resume(self, ref: str, reason: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/fleet/resume", json={"ref": ref, "reason": reason})

    def fleet_release(self, host_id: str, reason: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/fleet/release", json={"host_id": host_id, "reason": reason})

    def deploy(self, target_hash: str) -> dict[str, Any]:
        return self._call("POST", "/deployments", json={"target_hash": target_hash})

    # --- plumbing -------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, text: bool = False, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise self._unreachable(error) from None
        if response.status_code >= 400:
            self._raise_for(response)
        if response.status_code == 204:
            return None
        return response.text if text else response.json()

    def _raise_for(self, response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        message = body.get("message") or body.get("detail") or f"the agent answered {response.status_code}"
        raise ApiError(response.status_code, body.get("code", "error"), str(message), body.get("fields"))

    def _unreachable(self, error: httpx.TransportError) -> AgentUnreachable:
        cause = error.__cause__ or error.__context__
        if isinstance(cause, PermissionError) or "Permission denied" in str(error):
            return AgentUnreachable(f"cannot connect to the agent at {self.socket}: permission denied")
        if not self.socket.exists():
            return AgentUnreachable(f"the agent is not running: no socket at {self.socket} (start it with "
                                    f"`systemctl start id1-agent`, or point --socket / ${SOCKET_ENV} at it)")
        if isinstance(cause, ConnectionRefusedError) or "Connection refused" in str(error):
            return AgentUnreachable(f"the agent is not running: nothing answers on {self.socket} (a socket left by an agent "
                                    f"that died?); start it with `systemctl start id1-agent`")
        if isinstance(error, httpx.TimeoutException):
            return AgentUnreachable(f"the agent at {self.socket} did not answer in time")
        return AgentUnreachable(f"cannot connect to the agent at {self.socket}: {error or 'connection refused'}")
