"""A real loopback HTTP server for a feed folder, with misbehaviour on demand.

    with FeedServer(tmp_path / "www") as server:
        server.publish("feed.json", data)            # ETag / Last-Modified change on every publish
        server.fail("/feed.json", status=500, times=2)
        client = FeedClient(server.url_for("feed.json"), …)

It answers like a static web server (nginx): GET and HEAD of files under ``root``, an ETag made
of mtime and size, Last-Modified, 304 for a matching ``If-None-Match`` (or, without one, an
``If-Modified-Since`` not older than the file). Every request is recorded in ``requests``.
One-shot misbehaviours are queued per path and used up in order: a status code, a connection
closed without an answer, a body cut short, an endless body, a body trickled a few bytes at a
time, or a stall until the server stops. ``date`` freezes the clock the Date header is read from
(a response sent within the second its file was published, for Last-Modified's one-second grain).
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

# Every publish moves a file's mtime one second on from this, so that ETag and Last-Modified
# change even when a test publishes twice within a second (as a real upload a second later would).
_FIRST_MTIME = 1_795_000_000


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    peer: tuple[str, int] = ("", 0)
    """The client's address: one per TCP connection, so reused connections share it."""


class FeedServer:
    def __init__(self, root: Path, *, etags: bool = True, last_modified: bool = True):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.etags = etags
        self.last_modified = last_modified
        self.requests: list[SeenRequest] = []
        self.redirects: dict[str, str] = {}
        self.date: float | None = None
        """When set, every answer's Date header says this time instead of the real one."""
        self._pending: dict[str, deque[tuple[str, object]]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._mtime = _FIRST_MTIME
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ── life cycle ───────────────────────────────────────────────────────────────────────────

    def start(self) -> FeedServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), name="feed-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def url_for(self, name: str) -> str:
        return self.url + name.lstrip("/")

    # ── content ──────────────────────────────────────────────────────────────────────────────

    def publish(self, name: str, data: bytes, *, mtime: int | None = None) -> Path:
        """Write a file to serve, with a new mtime (so new validators), as an upload would.

        ``mtime`` sets the upload's time instead, e.g. the same second as the previous upload.
        """
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        with self._lock:
            if mtime is None:
                self._mtime += 1
                mtime = self._mtime
            else:
                self._mtime = max(self._mtime, mtime)
        os.utime(path, (mtime, mtime))
        return path

    def remove(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    # ── misbehaviour (each queued action is used by one request to that path) ──────────────────

    def fail(self, path: str, status: int = 500, times: int = 1) -> None:
        self._queue(path, "status", status, times)

    def drop_connection(self, path: str, times: int = 1) -> None:
        """Read the request, then close the connection without answering."""
        self._queue(path, "drop", 0, times)

    def truncate_body(self, path: str, times: int = 1) -> None:
        """Announce the full Content-Length, send half of the body, close the connection."""
        self._queue(path, "truncate", 0, times)

    def send_endless(self, path: str, times: int = 1, *, declare_length: int | None = None) -> None:
        """Answer 200 and stream 64 MiB or until the client hangs up (optionally claiming a length)."""
        self._queue(path, "endless", -1 if declare_length is None else declare_length, times)

    def trickle(self, path: str, *, every_s: float, chunk: int = 1, for_s: float = 10.0, times: int = 1) -> None:
        """Answer 200 with the file's Content-Length and validators, then send ``chunk`` bytes of
        it every ``every_s`` seconds; after ``for_s`` seconds hang up (so that a client without a
        rate floor fails a test instead of hanging it for the whole file)."""
        self._queue(path, "trickle", (every_s, chunk, for_s), times)

    def stall(self, path: str, times: int = 1) -> None:
        """Accept the request and answer nothing until the server stops (a client timeout)."""
        self._queue(path, "stall", 0, times)

    def redirect(self, path: str, location: str) -> None:
        self.redirects[_normal(path)] = location

    # ── what happened ────────────────────────────────────────────────────────────────────────

    def hits(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for seen in self.requests if path is None or seen.path == _normal(path))

    def seen(self, path: str) -> list[SeenRequest]:
        with self._lock:
            return [seen for seen in self.requests if seen.path == _normal(path)]

    # ── internals ────────────────────────────────────────────────────────────────────────────

    def _queue(self, path: str, action: str, argument: object, times: int) -> None:
        with self._lock:
            self._pending.setdefault(_normal(path), deque()).extend([(action, argument)] * times)

    def _record(self, method: str, path: str, headers: dict[str, str], peer: tuple[str, int] = ("", 0)) -> tuple[str, object] | None:
        with self._lock:
            self.requests.append(SeenRequest(method, path, headers, peer))
            pending = self._pending.get(path)
            return pending.popleft() if pending else None


def _normal(path: str) -> str:
    return "/" + path.lstrip("/")


def _handler_for(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the test reads server.requests, not stderr

        def date_time_string(self, timestamp: float | None = None) -> str:
            return super().date_time_string(timestamp if timestamp is not None else server.date)

        def _answer(self, send_body: bool) -> None:
            path = urlsplit(self.path).path
            action = server._record(self.command, path, {k.lower(): v for k, v in self.headers.items()}, self.client_address[:2])
            if action is not None and action[0] != "trickle":
                self._misbehave(*action)
                return
            if path in server.redirects:
                self._send_status(302, {"Location": server.redirects[path]})
                return
            file = (server.root / path.lstrip("/")).resolve()
            if server.root.resolve() not in file.parents or not file.is_file():
                self._send_status(404)
                return
            data = file.read_bytes()
            mtime = int(file.stat().st_mtime)
            validators = {}
            if server.etags:
                validators["ETag"] = f'"{mtime:x}-{len(data):x}"'
            if server.last_modified:
                validators["Last-Modified"] = email.utils.formatdate(mtime, usegmt=True)
            if action is not None:
                self._trickle(data, validators, *action[1])
                return
            if self._not_modified(validators, mtime):
                self.send_response(304)
                for name, value in validators.items():
                    self.send_header(name, value)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json" if path.endswith(".json") else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            for name, value in validators.items():
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def _not_modified(self, validators: dict[str, str], mtime: int) -> bool:
            # RFC 9110 §13.2.2: If-None-Match wins; If-Modified-Since only counts without it.
            if_none_match = self.headers.get("If-None-Match")
            if if_none_match is not None:
                etag = validators.get("ETag")
                return etag is not None and etag in [tag.strip() for tag in if_none_match.split(",")]
            since = self.headers.get("If-Modified-Since")
            if since is None or "Last-Modified" not in validators:
                return False
            try:
                return mtime <= email.utils.parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError):
                return False

        def _trickle(self, data: bytes, validators: dict[str, str], every_s: float, chunk: int, for_s: float) -> None:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            for name, value in validators.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.flush()
            give_up = time.monotonic() + for_s
            try:
                for start in range(0, len(data), chunk):
                    if server._stopping.wait(every_s) or time.monotonic() > give_up:
                        break
                    self.wfile.write(data[start : start + chunk])
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on us: what a rate floor is for

        def _send_status(self, status: int, headers: dict[str, str] | None = None) -> None:
            body = f"{status}\n".encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _misbehave(self, action: str, argument: int) -> None:
            self.close_connection = True
            if action == "status":
                self._send_status(argument)
            elif action == "drop":
                pass  # closing without a status line is the whole point
            elif action == "truncate":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b"{" * 500)
            elif action == "endless":
                self.send_response(200)
                if argument >= 0:
                    self.send_header("Content-Length", str(argument))
                self.send_header("Connection", "close")
                self.end_headers()
                chunk = b" " * 65536
                try:
                    # "Endless" up to 64 MiB, so that a client without a cap fails a test, not hangs it.
                    for _ in range(1024):
                        if server._stopping.is_set():
                            break
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            elif action == "stall":
                server._stopping.wait()

    return Handler
