"""A demo capability as the vendor ships it: a tiny HTTP service, run by its unit.

    service.py SUITE/NAME VERSION PORT STATE_DIR fine|broken

``GET /healthz`` answers 200 (``fine``) or 500 (``broken``: the release that fails its health
check); any other path says which capability and version answers. This file goes into every
demo artifact as ``bin/service.py``; nothing imports it.
"""

import http.server
import os
import sys


def serve(capability: str, version: str, port: int, state_dir: str, mode: str) -> None:
    os.makedirs(state_dir, exist_ok=True)
    with open(os.path.join(state_dir, "service-starts.log"), "a", encoding="utf-8") as starts:
        starts.write(f"{capability} {version} pid {os.getpid()}\n")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/healthz":
                status, body = (500, "unhealthy: this build is broken\n") if mode == "broken" else (200, "ok\n")
            else:
                status, body = 200, f"{capability} {version}\n"
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
