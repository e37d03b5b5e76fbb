"""The FleetLock backend: Zincati's protocol, spoken to any FleetLock server (Airlock, ...).

    POST {url}/v1/pre-reboot     take a slot        header fleet-lock-protocol: true
    POST {url}/v1/steady-state   give it back       body {"client_params": {"id": ID, "group": G}}

200 is a yes; anything else is a refusal, and a JSON error body ``{"kind", "value"}`` is shown
to the operator as ``kind: value`` in the SlotWait. Both calls are recursive on the server
(taking a slot held, giving back one not held: both 200), so they are safe to repeat.

The protocol carries a slot and nothing else: no halt, no view, no holders; halted() is empty
and view() says only whether this host holds a slot.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

import httpx

from agent.errors import FleetUnavailable, FleetUnreachable
from agent.fleet.background import Background
from agent.fleet.config import FleetConfig
from agent.fleet.coordinator import Coordinator
from agent.fleet.model import FleetView, SlotGrant, SlotHolder, SlotWait, one_line
from agent.fleet.waiting import Backoff, Reporter, WaitLoop

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
RETRY_FIRST_S, RETRY_CAP_S = 5.0, 60.0


class FleetLockCoordinator(Coordinator):
    backend = "fleetlock"

    def __init__(self, config: FleetConfig, *, host_id: str, instance_id: str, http: httpx.Client | None = None,
                 retry_first: float = RETRY_FIRST_S, retry_cap: float = RETRY_CAP_S, rng: random.Random | None = None):
        super().__init__(config, host_id=host_id, instance_id=instance_id)
        self._url = config.fleetlock_url.rstrip("/")
        self._http = http if http is not None else httpx.Client(timeout=TIMEOUT, trust_env=False)
        self._owns_http = http is None
        self._retry = (retry_first, retry_cap)
        self._rng = rng or random.Random()
        self._held = False
        self._lock = threading.Lock()
        self._background = Background(f"id1-fleetlock-{config.group}")

    def acquire(self, *, should_stop: Callable[[], bool], on_wait: Callable[[SlotWait], None],
                give_up_after: float | None) -> SlotGrant:
        loop = WaitLoop(should_stop, give_up_after)
        report = Reporter(on_wait)
        backoff = Backoff(*self._retry, rng=self._rng)
        while True:
            wait = None
            if not self._background.settle():
                wait = SlotWait("fleetlock", self.config.group, "unreachable",
                                detail=f"{'; '.join(self._background.owing)} still owed")
            else:
                try:
                    refusal = self._post("pre-reboot")
                except FleetUnreachable as error:
                    wait = SlotWait("fleetlock", self.config.group, "unreachable", detail=str(error))
                else:
                    if refusal is not None:
                        wait = SlotWait("fleetlock", self.config.group, "refused", detail=refusal)
            if wait is None:
                with self._lock:
                    self._held = True
                return SlotGrant(held=True, waited_s=loop.waited(), last_wait=report.last)
            report(wait)
            reason = loop.pause(backoff.next())
            if reason is not None:
                # A pre-reboot the server granted but whose answer was lost would hold a slot:
                # steady-state is harmless when nothing is held, so say it.
                self._background.owe("giving back the slot", lambda: self._post_or_raise("steady-state"))
                return SlotGrant(held=False, reason=reason, waited_s=loop.waited(), last_wait=report.last)

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._background.owe("giving back the slot", lambda: self._post_or_raise("steady-state"))

    def steady_state(self) -> None:
        with self._lock:
            self._held = False
        self._background.owe("giving back the slot", lambda: self._post_or_raise("steady-state"))

    def view(self) -> FleetView:
        with self._lock:
            held = self._held
        return FleetView(backend="fleetlock", group=self.config.group, this_host=self.host_id,
                         holders=(SlotHolder(self.host_id, None, instance_id=self.instance_id),) if held else (),
                         note="FleetLock gives slots only: no view of the other hosts, no halt")

    def close(self) -> None:
        self._background.close()
        if self._owns_http:
            self._http.close()

    def _post_or_raise(self, step: str) -> None:
        refusal = self._post(step)
        if refusal is not None:  # owed: tried again later, like an unreachable server
            raise FleetUnreachable(f"{self._url}/v1/{step} refused: {refusal}")

    def _post(self, step: str) -> str | None:
        """None when the server said yes, else its refusal as one line for the operator."""
        url = f"{self._url}/v1/{step}"
        body = {"client_params": {"id": self.host_id, "group": self.config.group}}
        try:
            response = self._http.post(url, json=body, headers={"fleet-lock-protocol": "true"})
        except httpx.UnsupportedProtocol as error:
            raise FleetUnavailable(f"fleet.fleetlock_url {self._url}: {one_line(error)}") from None
        except (httpx.TransportError, OSError) as error:
            raise FleetUnreachable(f"{url}: {_transport_problem(error)}") from None
        return None if response.status_code == 200 else _refusal(response)


def _refusal(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("kind"), str) and isinstance(body.get("value"), str):
        return one_line(f"{body['kind']}: {body['value']}", 300)
    text = one_line(response.text, 120)
    return f"HTTP {response.status_code}" + (f" {text}" if text else "")


def _transport_problem(error: BaseException) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "no answer in time"
    cause = error.__cause__ or error.__context__
    text = str(getattr(cause, "strerror", "") or cause or error)
    return f"cannot connect ({one_line(text, 120)})"
