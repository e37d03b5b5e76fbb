"""The demo vendor's web server: the built feed folder on loopback, a stdlib server in a thread.

    server = FeedServer(vendor.feed).start()     # http://127.0.0.1:PORT/feed.json
    server.publish()                             # snapshot what `id1 feed build` just wrote
    server.stop()

A static server could hand the agent a new ``feed.json`` and the old signature when a
publication lands between its two requests (the agent would rightly reject that feed). So the
server keeps each publication as a snapshot in memory and answers ``feed.json.minisig`` with the
signature of the ``feed.json`` it served last: there is one agent, so its pair always matches.
Artifacts are served from the folder (``id1 feed build`` never changes a published one).
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

_ARTIFACT = re.compile(r"^/artifacts/([A-Za-z0-9][A-Za-z0-9_.+-]*)$")


@dataclass(frozen=True)
class _Snapshot:
    feed: bytes
    signature: bytes

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.feed).hexdigest()[:16] + '"'


class FeedServer:
    def __init__(self, folder: Path):
        self.folder = folder
        self._current: _Snapshot | None = None
        self._served: _Snapshot | None = None
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/feed.json"

    def start(self) -> FeedServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.1,), name="demo-feed-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(10)
            self._thread = None
        self._httpd.server_close()

    def publish(self) -> None:
        snapshot = _Snapshot((self.folder / "feed.json").read_bytes(), (self.folder / "feed.json.minisig").read_bytes())
        with self._lock:
            self._current = snapshot

    def _feed(self) -> _Snapshot | None:
        with self._lock:
            self._served = self._current
            return self._current

    def _signature(self) -> bytes | None:
        with self._lock:
            snapshot = self._served or self._current
            return snapshot.signature if snapshot else None


def _handler_for(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the terminal belongs to the dashboard

        def _answer(self, body: bool) -> None:
            path = urlsplit(self.path).path
            headers: dict[str, str] = {}
            if path == "/feed.json":
                snapshot = server._feed()
                data = snapshot.feed if snapshot else None
                if snapshot is not None:
                    headers["ETag"] = snapshot.etag
                    if snapshot.etag in [tag.strip() for tag in self.headers.get("If-None-Match", "").split(",")]:
                        self.send_response(304)
                        self.send_header("ETag", snapshot.etag)
                        self.end_headers()
                        return
            elif path == "/feed.json.minisig":
                data = server._signature()
            elif match := _ARTIFACT.match(path):
                try:
                    data = (server.folder / "artifacts" / match[1]).read_bytes()
                except OSError:
                    data = None
            else:
                data = None
            if data is None:
                data, status = b"not found\n", 404
            else:
                status = 200
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler
