"""One TLS context for every HTTPS client the agent makes (feed, artifacts, health checks, webhook).

Each ``httpx.Client`` otherwise loads the CA bundle into its own context: about 1–3 MB of a
long-running daemon's memory per client, for the same certificates.
"""

from __future__ import annotations

import ssl
from functools import cache

import certifi


@cache
def shared_ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())
