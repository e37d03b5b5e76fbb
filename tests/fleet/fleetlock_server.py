"""A FleetLock server written from the protocol document (Zincati's
docs/development/fleetlock/protocol.md), backed by etcd like Airlock: one key per group holds
the semaphore, changed only by a compare-and-swap on its mod_revision.

    POST /v1/pre-reboot     RecursiveLock: 200 if the client holds a slot (already, or now)
    POST /v1/steady-state   UnlockIfHeld:  200 whether it held one or not
    header fleet-lock-protocol: true; body {"client_params": {"id": ..., "group": ...}}
    errors: 4xx/5xx with {"kind", "value"}, kind of small cardinality

    server = FleetLockServer(gateway, slots=1).start()   server.url, server.holders(group)
    server.stop(); server.start()                         down and back on the same port
    server.plain_failure = True                           answer 503 with a non-JSON body
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.fleet import gateway as etcd
from agent.fleet.gateway import EtcdGateway
from tests.ports import free_port

GROUP = re.compile(r"^[a-zA-Z0-9.-]+$")


class EtcdSemaphore:
    def __init__(self, gateway: EtcdGateway, slots: int):
        self.gateway = gateway
        self.slots = slots

    def key(self, group: str) -> str:
        return f"/fleetlock-test/{group}/semaphore"

    def holders(self, group: str) -> list[str]:
        kvs, _, _ = self.gateway.range(self.key(group))
        return json.loads(kvs[0].value)["holders"] if kvs else []

    def change(self, group: str, client: str, take: bool) -> bool:
        """Add (take) or remove the client; False when the semaphore is full."""
        key = self.key(group)
        while True:
            kvs, _, _ = self.gateway.range(key)
            holders = json.loads(kvs[0].value)["holders"] if kvs else []
            if take and client in holders or not take and client not in holders:
                return True
            if take and len(holders) >= self.slots:
                return False
            holders = [*holders, client] if take else [holder for holder in holders if holder != client]
            compare = etcd.modified_at(key, kvs[0].mod_revision) if kvs else etcd.absent(key)
            value = json.dumps({"total": self.slots, "holders": holders})
            if self.gateway.txn([compare], [etcd.put(key, value)], []).succeeded:
                return True


class FleetLockServer:
    def __init__(self, semaphore: EtcdSemaphore):
        self.semaphore = semaphore
        self.port = free_port()
        self.requests: list[tuple[str, dict, dict]] = []
        self.plain_failure = False
        self.refusal_value = "semaphore currently full, all slots are locked already"
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fleet"

    def holders(self, group: str) -> list[str]:
        return self.semaphore.holders(group)

    def start(self) -> FleetLockServer:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="fleetlock-server", daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler(owner: FleetLockServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            owner.requests.append((self.path, dict(self.headers), body))
            if owner.plain_failure:
                return self._answer(503, b"upstream unavailable\n", "text/plain")
            if self.headers.get("fleet-lock-protocol") != "true":
                return self._error(400, "missing_fleetlock_header", "fleet-lock-protocol header must be set to true")
            params = body.get("client_params") if isinstance(body, dict) else None
            if not isinstance(params, dict) or not params.get("id") or not isinstance(params.get("id"), str):
                return self._error(400, "invalid_client_params", "client_params.id must be a non-empty string")
            group = params.get("group")
            if not isinstance(group, str) or not GROUP.match(group):
                return self._error(400, "invalid_client_group", "client_params.group must match ^[a-zA-Z0-9.-]+$")
            if self.path == "/fleet/v1/pre-reboot":
                if owner.semaphore.change(group, params["id"], take=True):
                    return self._answer(200, b"", "text/plain")
                return self._error(409, "failed_lock_semaphore_full", owner.refusal_value)
            if self.path == "/fleet/v1/steady-state":
                owner.semaphore.change(group, params["id"], take=False)
                return self._answer(200, b"", "text/plain")
            return self._error(404, "not_found", f"no such endpoint {self.path}")

        def _error(self, status: int, kind: str, value: str) -> None:
            self._answer(status, json.dumps({"kind": kind, "value": value}).encode(), "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
