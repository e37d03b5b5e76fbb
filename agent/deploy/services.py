"""Service control through the configured ``systemctl`` command, and nothing else.

The same code drives real systemd on a host and, in tests and the demo,
``systemctl3 --root=DIR`` from docker-systemctl-replacement, which runs real unit files as real
processes. Every call has a timeout; a failure is a ServiceError saying which command failed and
what it printed. Unit names always follow ``--``, so no name can be read as an option.
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
        self._on_units("restart", units)

    def start(self, units: Sequence[str]) -> None:
        self._on_units("start", units)

    def stop(self, units: Sequence[str]) -> None:
        self._on_units("stop", units)

    def enable(self, units: Sequence[str]) -> None:
        """Started at boot (their ``[Install]`` section); does not start them now."""
        self._on_units("enable", units)

    def disable(self, units: Sequence[str]) -> None:
        self._on_units("disable", units)

    def reset_failed(self, units: Sequence[str]) -> None:
        """Forget a failed state and its start-rate count, so a restart is not refused as
        "start request repeated too quickly" (a release whose unit kept crashing is being put
        back). systemd also forgets them on a daemon-reload, which ``enable`` usually causes;
        this does not rely on that. Best effort: a unit that is not failed, or not loaded, is
        fine as it is."""
        if units:
            self._call("reset-failed", "--", *units, check=False)

    def is_enabled(self, unit: str) -> str:
        """``enabled``, ``disabled``, ``static``, ``not-found``…"""
        done = self._call("is-enabled", "--", unit, check=False)
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "not-found"

    def is_active(self, unit: str) -> bool:
        return self.state(unit) == "active"

    def state(self, unit: str) -> str:
        """``active``, ``inactive``, ``failed``, ``activating``…; is-active exits non-zero for
        anything but active, which is an answer here, not a failure."""
        done = self._call("is-active", "--", unit, check=False)
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "unknown"

    def _on_units(self, verb: str, units: Sequence[str]) -> None:
        if units:
            self._call(verb, "--", *units)

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
