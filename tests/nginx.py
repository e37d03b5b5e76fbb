"""A real nginx (Debian's), started by a test with its own prefix and config, and tiny backends.

    with Nginx(tmp_path / "nginx") as nginx:                  # nginx.include: the agent's file
        proxy = NginxProxy(nginx.include, nginx.test_command, nginx.reload_command)
        with Backend("blue") as blue:                         # answers "blue" on 127.0.0.1:blue.port
            ...

Its ``nginx.conf`` is a host's in miniature: an ``http`` block that includes ``conf.d/*.conf``
(where the agent's include goes, as Debian's does) and one server of its own on a loopback
control port, answered once nginx is up. pid, logs and temp folders live in the prefix. The test
commands are the operator's, pointed at this prefix: ``nginx -p PREFIX -c CONF -t`` and
``… -s reload``. ``error_log()`` is what nginx logged, for a failing test's message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.ports import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
START_TIMEOUT_S = 15.0


class Nginx:
    def __init__(self, prefix: Path, *, workers: int = 2):
        self.prefix = prefix
        self.conf = prefix / "nginx.conf"
        self.include = prefix / "conf.d" / "id1-upstreams.conf"
        self.control_port = free_port()
        self.workers = workers
        self.process: subprocess.Popen | None = None

    @property
    def base_command(self) -> list[str]:
        return [NGINX, "-p", str(self.prefix), "-c", str(self.conf)]

    @property
    def test_command(self) -> list[str]:
        return [*self.base_command, "-t"]

    @property
    def reload_command(self) -> list[str]:
        return [*self.base_command, "-s", "reload"]

    def __enter__(self) -> Nginx:
        if not Path(NGINX).exists():
            raise RuntimeError(f"{NGINX} is missing: install Debian's nginx (make debian-packages)")
        for folder in ("conf.d", "temp"):
            (self.prefix / folder).mkdir(parents=True, exist_ok=True)
        temp = {name: self.prefix / "temp" / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        # As root, nginx's workers would run as nobody, who cannot enter a test's 0700 tmp_path.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{user}worker_processes {self.workers};\n"
            f"error_log {self.prefix / 'error.log'} info;\n"
            f"pid {self.prefix / 'nginx.pid'};\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "    access_log off;\n"
            f"    client_body_temp_path {temp['body']};\n"
            f"    proxy_temp_path {temp['proxy']};\n"
            f"    fastcgi_temp_path {temp['fastcgi']};\n"
            f"    uwsgi_temp_path {temp['uwsgi']};\n"
            f"    scgi_temp_path {temp['scgi']};\n"
            f"    server {{ listen 127.0.0.1:{self.control_port}; location / {{ return 200 \"up\\n\"; }} }}\n"
            f"    include {self.prefix / 'conf.d'}/*.conf;\n"
            "}\n"
        )
        self.process = subprocess.Popen([*self.base_command, "-g", "daemon off;"], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=open(self.prefix / "stderr.log", "wb"))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers_control():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"nginx did not start: {self.error_log()[-2000:]}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # fast shutdown of the master we started (and its workers)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def error_log(self) -> str:
        parts = []
        for name in ("stderr.log", "error.log"):
            try:
                parts.append((self.prefix / name).read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)

    def _answers_control(self) -> bool:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=1)
        try:
            connection.request("GET", "/")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()


class Backend:
    """A colour's service: answers every GET with its colour; ``GET /hold`` waits until
    ``release()`` (``held`` is set once such a request has arrived); POST answers the size of the
    body it read. ``seen`` keeps each request's headers."""

    def __init__(self, colour: str, port: int | None = None):
        self.colour = colour
        self.port = port or free_port()
        self.held = threading.Event()
        self._release = threading.Event()
        self.seen: list[dict[str, str]] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                backend.seen.append(dict(self.headers))
                if self.path.startswith("/hold"):
                    backend.held.set()
                    backend._release.wait(30)
                self._answer(backend.colour)

            def do_POST(self) -> None:
                backend.seen.append(dict(self.headers))
                length = int(self.headers.get("Content-Length", "0"))
                read = 0
                while read < length:
                    read += len(self.rfile.read(min(1 << 16, length - read)))
                self._answer(f"{backend.colour} {read}")

            def _answer(self, text: str) -> None:
                body = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True

    def release(self) -> None:
        self._release.set()

    def __enter__(self) -> Backend:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
