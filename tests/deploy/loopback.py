"""A real static file server on 127.0.0.1 with byte ranges, that misbehaves on demand.

    with ArtifactServer(tmp_path / "www") as server:
        server.publish("a.tar.gz", data)
        server.misbehave("a.tar.gz", Status(500), Status(500))     # the next two requests fail
        cache.fetch(server.url("a.tar.gz"), sha256, len(data))
        assert server.requests[-1].headers.get("Range") is None

Bodies go out with ``socket.sendfile`` (the kernel copies them), as nginx does, so the server is
not what a download benchmark measures. One-shot misbehaviours are queued per file and used up in
order, one per request; every request is recorded in ``requests``. ``on_request`` runs before
each answer (a test can fill a disk there, as another process on the host would).

Run as a script (``python loopback.py ROOT``) it serves ROOT in its own process and prints its
port: the benchmark's server, which then competes with the measured client for nothing but CPU.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass(frozen=True)
class SeenRequest:
    path: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Status:
    """Answer with this status (and no body) instead of the file."""

    code: int
    retry_after: int | None = None


@dataclass(frozen=True)
class Redirect:
    """Answer 302 to another file of this server (a mirror moving its artifacts)."""

    to: str


@dataclass(frozen=True)
class DropAfter:
    """Announce the whole answer, send this many body bytes, then close the connection."""

    count: int


@dataclass(frozen=True)
class IgnoreRange:
    """Answer 200 with the whole file even when a range was asked for."""


@dataclass(frozen=True)
class Oversize:
    """Send the file plus ``extra`` bytes; announce them (Content-Length) or not (close-delimited)."""

    extra: int
    announce: bool = True


@dataclass(frozen=True)
class Trickle:
    """Announce the whole answer, then send ``chunk`` bytes every ``every_s`` seconds (a mirror
    on a dying link); after ``for_s`` seconds close the connection, so that a client without a
    rate floor fails a test instead of hanging it."""

    every_s: float
    chunk: int = 1
    for_s: float = 10.0


Misbehaviour = Status | Redirect | DropAfter | IgnoreRange | Oversize | Trickle


class ArtifactServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests: list[SeenRequest] = []
        self.on_request: Callable[[SeenRequest], None] | None = None
        self._queued: dict[str, deque[Misbehaviour]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def publish(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def misbehave(self, name: str, *actions: Misbehaviour) -> None:
        with self._lock:
            self._queued.setdefault("/" + name, deque()).extend(actions)

    def _next_misbehaviour(self, path: str) -> Misbehaviour | None:
        with self._lock:
            queued = self._queued.get(path)
            return queued.popleft() if queued else None

    def _record(self, seen: SeenRequest) -> None:
        with self._lock:
            self.requests.append(seen)

    def start(self) -> ArtifactServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="artifact-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> ArtifactServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up on a body it refuses is what several tests are about.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(server: ArtifactServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            path = unquote(urlsplit(self.path).path)
            seen = SeenRequest(path=path, headers=dict(self.headers.items()))
            server._record(seen)
            if server.on_request is not None:
                server.on_request(seen)
            action = server._next_misbehaviour(path)
            if isinstance(action, Status):
                self.send_status(action)
                return
            if isinstance(action, Redirect):
                self.send_response(302)
                self.send_header("Location", "/" + action.to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            file = server.root / path.lstrip("/")
            if not file.is_file():
                self.send_status(Status(404))
                return
            self.send_file(file, action, seen.headers.get("Range"))

        def send_status(self, action: Status) -> None:
            self.send_response(action.code)
            if action.retry_after is not None:
                self.send_header("Retry-After", str(action.retry_after))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def send_file(self, file: Path, action: Misbehaviour | None, range_header: str | None) -> None:
            size = file.stat().st_size
            start, end = 0, size - 1
            match = _RANGE.fullmatch(range_header or "")
            partial = match is not None and not isinstance(action, IgnoreRange)
            if partial:
                start = int(match[1])
                end = min(int(match[2]), size - 1) if match[2] else size - 1
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            count = end - start + 1
            extra = action.extra if isinstance(action, Oversize) else 0
            self.send_response(206 if partial else 200)
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            if isinstance(action, Oversize) and not action.announce:
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(count + extra))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if isinstance(action, DropAfter):
                count = min(count, action.count)
            if isinstance(action, Trickle):
                self.trickle(file, start, count, action)
                return
            with open(file, "rb") as body:
                self.connection.sendfile(body, start, count)
            if extra:
                self.wfile.write(b"\0" * extra)
            if isinstance(action, DropAfter):
                self.close_connection = True
                self.connection.shutdown(2)  # SHUT_RDWR: the client sees the body end early

        def trickle(self, file: Path, start: int, count: int, action: Trickle) -> None:
            self.close_connection = True
            give_up = time.monotonic() + action.for_s
            with open(file, "rb") as body:
                body.seek(start)
                while count > 0 and not server._stopping.wait(action.every_s) and time.monotonic() < give_up:
                    data = body.read(min(action.chunk, count))
                    self.wfile.write(data)
                    count -= len(data)

    return Handler


def main(argv: list[str]) -> int:
    """Serve ``argv[0]`` until killed; print the port on the first line of stdout."""
    with ArtifactServer(Path(argv[0])) as server:
        print(server.port, flush=True)
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
