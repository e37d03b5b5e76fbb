"""Serving the API on a Unix socket, inside the daemon's own event loop.

    Id1Error
    └── ApiServerError      the API socket cannot be served (folder, bind, start-up time)
        └── ApiSocketBusy   another live process already serves that socket

uvicorn runs as a task in the running loop, which the daemon shares with its scheduler, so
not through ``uvicorn.run``; and without uvicorn's signal handlers, because the daemon owns
SIGTERM and SIGHUP and decides when the API stops. It does not touch the daemon's logging
either (no ``log_config``): uvicorn's loggers propagate to whatever the daemon set up.

The server binds the socket itself and hands uvicorn a listening socket whose ``accept()`` is
``agent.api.gate``'s, and uvicorn a protocol with deadlines, so that the limits of
``agent.api.limits.ApiLimits`` hold from the moment a connection is accepted: no local user
can hold more than its share of connections, keep one idle, or take the descriptors the agent
needs for its own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from agent.errors import Id1Error

from agent.api.gate import ConnectionGate, GuardedH11Protocol
from agent.api.limits import ApiLimits
from agent.api.peer import peer_credentials

SOCKET_MODE = 0o666  # every local user may connect; roles decide what they may do
FOLDER_MODE = 0o755

log = logging.getLogger(__name__)


class ApiServerError(Id1Error):
    pass


class ApiSocketBusy(ApiServerError):
    pass


class _UvicornWithoutSignals(uvicorn.Server):
    """uvicorn's server minus its signal handling, which belongs to the daemon."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29 wraps serve() in this
        yield

    def install_signal_handlers(self) -> None:  # what uvicorn < 0.29 called instead
        pass


class UnixApiServer:
    """The API on ``socket_path`` (mode 0666), started and stopped by the daemon.

    ``await start()`` returns once the socket accepts connections; ``await stop()`` lets
    requests in flight finish (up to ``grace`` seconds) and removes the socket file.
    Also an async context manager. ``limits``: connections per user and in all, descriptors
    kept for the agent, deadlines (the body cap is the app's: ``create_app``).
    """

    def __init__(self, app: Any, socket_path: Path, *, start_timeout: float = 10.0, grace: float = 10.0,
                 limits: ApiLimits = ApiLimits()):
        self.app = app
        self.socket_path = Path(socket_path)
        self.start_timeout = start_timeout
        self.grace = grace
        self.limits = limits
        self.gate: ConnectionGate | None = None
        self._server: _UvicornWithoutSignals | None = None
        self._task: asyncio.Task[None] | None = None
        self._bound: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we made

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the API server is already started")
        path = self.socket_path
        _make_folder(path.parent)
        await _clear_stale_socket(path)
        gate = ConnectionGate(self.limits)
        try:
            listener = gate.listen(path, mode=SOCKET_MODE)
        except OSError as exc:
            raise ApiServerError(f"cannot serve the API on {path}: {exc.strerror or exc}") from exc
        info = os.stat(path)
        config = uvicorn.Config(
            self.app,
            http=functools.partial(GuardedH11Protocol, gate=gate),
            ws="none",  # the API has no websockets
            lifespan="off",  # the daemon opens and closes what the app uses
            log_config=None,
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # no proxies on a local socket; never trust X-Forwarded-*
            server_header=False,
            timeout_keep_alive=self.limits.head_timeout,  # the protocol's head deadline, which a byte cannot move
            timeout_graceful_shutdown=self.grace,
        )
        server = _UvicornWithoutSignals(config)
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[listener]), name=f"id1-api {path}")
        try:
            await _wait_started(server, task, path, self.start_timeout)
        except BaseException:
            server.should_exit = True
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            listener.close()
            self._bound = (info.st_dev, info.st_ino)
            self._remove_socket()
            gate.close()
            raise
        self._server, self._task, self.gate = server, task, gate
        self._bound = (info.st_dev, info.st_ino)

    async def stop(self) -> None:
        server, task = self._server, self._task
        if server is None or task is None:
            return
        self._server = self._task = None
        server.should_exit = True
        try:
            # uvicorn bounds its own shutdown by timeout_graceful_shutdown; this is the backstop.
            await asyncio.wait_for(asyncio.shield(task), self.grace + 5)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception:  # the server had already failed; stopping must still tidy up
            log.exception("the API server failed")
        finally:
            self._remove_socket()
            if self.gate is not None:
                self.gate.close()  # the refusals and timeouts still only counted are logged now
                self.gate = None

    async def __aenter__(self) -> UnixApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _remove_socket(self) -> None:
        """Remove the socket file, unless it is no longer the one we bound."""
        try:
            info = os.lstat(self.socket_path)
            if (info.st_dev, info.st_ino) == self._bound:
                os.unlink(self.socket_path)
        except FileNotFoundError:  # Python 3.13's asyncio removes it on close
            pass
        except OSError as exc:
            log.warning("cannot remove the API socket %s: %s", self.socket_path, exc)
        self._bound = None


def _make_folder(folder: Path) -> None:
    """Create the socket's folder, and any missing parent, as 0755 whatever the umask:
    callers of every uid must reach the socket. Existing folders are left as they are."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=FOLDER_MODE)
            os.chmod(path, FOLDER_MODE)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ApiServerError(f"cannot create {path} for the API socket: {exc.strerror}") from exc


async def _clear_stale_socket(path: Path, probe_timeout: float = 2.0) -> None:
    """Refuse a socket someone still serves; remove one nobody does.

    asyncio would silently replace a live socket, cutting the other server off, so we ask
    first: a refused connection means the file is left over from a process that died.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ApiServerError(f"{path} exists and is not a socket; remove it or choose another socket path")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), probe_timeout)
    except (ConnectionRefusedError, FileNotFoundError):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ApiServerError(f"cannot remove the stale API socket {path}: {exc.strerror}") from exc
        log.info("removed the stale API socket %s", path)
        return
    except TimeoutError:
        raise ApiSocketBusy(
            f"{path} is held by a process that does not answer; stop it (is another id1 agent running?)"
        ) from None
    except OSError as exc:
        raise ApiServerError(f"cannot check the API socket {path}: {exc.strerror or exc}") from exc
    peer = peer_credentials(writer.get_extra_info("socket"))
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    who = f"process {peer.pid}" if peer and peer.pid else "another process"
    raise ApiSocketBusy(f"{who} already serves the API on {path}; stop it first (is another id1 agent running?)")


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None], path: Path, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not server.started:
        if task.done():
            error = None if task.cancelled() else task.exception()
            reason = getattr(error, "strerror", None) or error or "it stopped before it started"
            raise ApiServerError(f"cannot serve the API on {path}: {reason}") from error
        if loop.time() > deadline:
            raise ApiServerError(f"the API server on {path} did not start within {timeout:g} s")
        await asyncio.sleep(0.01)
