"""Service control through the configured ``systemctl`` command, and nothing else.

The same code drives real systemd on a host and, in tests and the demo,
``systemctl3 --root=DIR`` from docker-systemctl-replacement, which runs real unit files as real
processes. Every call has a timeout; a failure is a ServiceError saying which command failed and
what it printed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence

from agent.config import ServicesConfig
from agent.errors import ServiceError

DEFAULT_TIMEOUT_S = 120.0


class ServiceController:
    def __init__(
        self,
        command: Sequence[str],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    ):
        if not command:
            raise ValueError("the systemctl command is empty")
        self.command = list(command)
        self.timeout_s = timeout_s
        self._run = run

    @classmethod
    def from_config(cls, services: ServicesConfig, **kwargs) -> ServiceController:
        return cls([services.systemctl, *services.systemctl_args], **kwargs)

    def daemon_reload(self) -> None:
        self._call("daemon-reload")

    def restart(self, units: Sequence[str]) -> None:
        if units:
            self._call("restart", *units)

    def start(self, units: Sequence[str]) -> None:
        if units:
            self._call("start", *units)

    def stop(self, units: Sequence[str]) -> None:
        if units:
            self._call("stop", *units)

    def enable(self, units: Sequence[str]) -> None:
        if units:
            self._call("enable", *units)

    def disable(self, units: Sequence[str]) -> None:
        if units:
            self._call("disable", *units)

    def is_active(self, unit: str) -> bool:
        return self.state(unit) == "active"

    def state(self, unit: str) -> str:
        """``active``, ``inactive``, ``failed``, ``activating``…; is-active exits non-zero for
        anything but active, which is an answer here, not a failure."""
        done = self._call("is-active", unit, check=False)
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "unknown"

    def _call(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [*self.command, *arguments]
        shown = " ".join(argv)
        try:
            done = self._run(argv, capture_output=True, text=True, timeout=self.timeout_s, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise ServiceError(f"cannot run {self.command[0]!r}: no such command (services.systemctl)") from None
        except PermissionError:
            raise ServiceError(f"cannot run {self.command[0]!r}: permission denied") from None
        except subprocess.TimeoutExpired:
            raise ServiceError(f"{shown} did not finish within {self.timeout_s:g} s") from None
        if check and done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise ServiceError(f"{shown} failed (exit {done.returncode}): {said[-1] if said else 'no output'}")
        return done
