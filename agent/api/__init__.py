"""The agent's HTTP API, served on a Unix socket (DESIGN.md §7).

``peer`` reads who is calling from the kernel (SO_PEERCRED), ``roles`` turns that into a role
from the Unix groups named in the config, ``auth`` hands the caller to FastAPI routes, and
``server`` runs uvicorn on the socket inside the daemon's own event loop.
"""
