"""The etcd backend: slots as a fair counting semaphore with lease-held keys, halt records and
the group's view (DESIGN.md §12). Key layout: ``agent.fleet.keys``.

Taking a slot (acquire) — every write is one txn, so every decision is made by etcd:

    enter ── txn: queue empty? slots ≥ `slots` absent? slots/k absent?  (k: a free one, guessed)
             ├ yes → put slots/k (our lease)                              held, 1 request
             └ no  → put queue/<µs>-<host> (our lease), read slots and how many queue before us
    examine what was read:
             ├ a slot of ours under our lease (handed to us) ─────────── held
             ├ a slot of ours under another lease (our earlier run) ─── txn: take it over
             ├ a free slot (freed without a hand-over) ──────────────── txn: take it if it is
             │                                                           still free, leave the queue
             └ all held ── on_wait(SlotWait), then wait for our queue entry to change (a watch
                           on that one key) or for the next poll (10 s, doubling to 60 s), and
                           read again (one txn: slots, our entry, the queue before us, failures)

Giving a slot back (release, steady_state) hands it to the first in line — the slot key is
rewritten for that host under that host's lease and its queue entry deleted, in one txn that
compares both — so a slot freed while hosts wait is never free: the waiter's watch fires, it
reads once and goes. With nobody in line (compared in the same txn) the slot key is deleted.

Never more than `slots` holders: a slot key is only created by a txn comparing it absent and
every key at or above `slots` absent, and a hand-over rewrites a key that exists. A host that
stops renewing its lease loses its slot (and its place in line) after `lease`; waiters then find
the free slot at their next poll.

Requests per slot taken and given back: enter 1 (+ take 1 when a slot is free), or enter 1 +
watch 1 + read 1 (+ a poll per 10-60 s of waiting); give back 1 (nobody waiting) or 2.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from agent.errors import FleetUnavailable, FleetUnreachable
from agent.fleet import gateway as etcd
from agent.fleet.background import Background
from agent.fleet.config import FleetConfig
from agent.fleet.coordinator import Coordinator
from agent.fleet.gateway import EtcdGateway, KeyValue, Txn, number
from agent.fleet.keys import GroupKeys, prefix_end
from agent.fleet.model import (FailedChange, FleetHost, FleetView, HostState, SlotGrant, SlotHolder, SlotWait,
                               check_ref, one_line, utc_text)
from agent.fleet.waiting import Backoff, Reporter, WaitLoop

log = logging.getLogger(__name__)

POLL_FIRST_S, POLL_CAP_S = 10.0, 60.0
"""A waiter reads the slots again this often (doubling) even without a hand-over: for a slot
freed by an expired lease, and to keep what ``id1 status`` shows current."""
WATCH_SILENCE_S = 60.0
"""A watch that heard nothing for this long is opened again (a dead connection is found)."""
VIEW_WAITING = 100
HAND_OVER_SPREAD = 16
"""A slot given back goes to one of the first this many hosts in line (see _give_back)."""
_EXISTS = "GREATER"


def exists(key: str) -> dict:
    return {"key": etcd.encode(key), "target": "CREATE", "result": _EXISTS, "create_revision": "0"}


@dataclass(frozen=True)
class _Held:
    key: str
    mod_revision: int


@dataclass(frozen=True)
class _Read:
    """The group's slots (and what else a txn read) at one revision."""

    revision: int
    slots: list[KeyValue]
    entry_present: bool = True
    ahead: int | None = None
    failed: list[KeyValue] | None = None


class EtcdCoordinator(Coordinator):
    backend = "etcd"

    def __init__(self, config: FleetConfig, *, host_id: str, instance_id: str, gateway: EtcdGateway | None = None,
                 poll_first: float = POLL_FIRST_S, poll_cap: float = POLL_CAP_S,
                 watch_silence: float = WATCH_SILENCE_S, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time):
        super().__init__(config, host_id=host_id, instance_id=instance_id)
        self._keys = GroupKeys(config.group)
        self._gateway = gateway if gateway is not None else EtcdGateway(config.etcd_endpoints)
        self._owns_gateway = gateway is None
        self._poll = (poll_first, poll_cap)
        self._watch_silence = watch_silence
        self._rng = rng or random.Random()
        self._clock = clock
        self._lock = threading.RLock()
        self._acquiring = threading.Lock()
        self._lease = 0
        self._lease_ttl = 0
        self._held: _Held | None = None
        self._published: HostState | None = None
        self._publish_owed = False
        self._start_checked = False
        self._last_halted: dict[str, list[str]] = {}
        self._last_error = ""
        self._background = Background(f"id1-fleet-{config.group}")

    # -- the slot ---------------------------------------------------------------------------------

    def acquire(self, *, should_stop: Callable[[], bool], on_wait: Callable[[SlotWait], None],
                give_up_after: float | None) -> SlotGrant:
        with self._acquiring:
            loop = WaitLoop(should_stop, give_up_after)
            report = Reporter(on_wait)
            entry = self._keys.queue_entry(int(self._clock() * 1_000_000), self.host_id)
            attempt = _Attempt(self, entry, loop, report)
            return attempt.run()

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, None
        if held is not None:
            self._background.owe(f"giving back slot {held.key}", lambda: self._give_back(held.key, held.mod_revision))

    def steady_state(self) -> None:
        self.release()
        with self._lock:
            check = not self._start_checked
            self._start_checked = True
        if check:
            self._background.owe("giving back slots held by an earlier run", self._give_back_stale)

    # -- halt -------------------------------------------------------------------------------------

    def record_failure(self, ref: str) -> None:
        check_ref(ref)
        record = json.dumps({"host": self.host_id, "instance": self.instance_id, "at": self._now_text()})
        key = self._keys.failure(ref, self.host_id)
        self._background.owe(f"recording {ref} failed", lambda: self._gateway.call("kv/put", etcd.put(key, record)["request_put"]))

    def halted(self) -> dict[str, list[str]]:
        try:
            kvs, _, _ = self._gateway.range(self._keys.failed, prefix_end(self._keys.failed), keys_only=True)
        except FleetUnreachable as error:
            log.warning("fleet: halted changes not read (the last ones read are used): %s", error)
            with self._lock:
                return {ref: list(hosts) for ref, hosts in self._last_halted.items()}
        return self._halted_from(kvs)

    def resume(self, ref: str) -> None:
        check_ref(ref)
        prefix = self._keys.failed_ref(ref)
        self._gateway.call("kv/deleterange", {"key": etcd.encode(prefix), "range_end": etcd.encode(prefix_end(prefix))})
        with self._lock:
            self._last_halted.pop(ref, None)

    # -- view -------------------------------------------------------------------------------------

    def publish(self, state: HostState) -> None:
        with self._lock:
            self._published = state
            if self._publish_owed:
                return
            self._publish_owed = True
        self._background.owe("publishing this host's state", self._put_host_record, now=False)

    def view(self) -> FleetView:
        keys = self._keys
        try:
            txn = self._gateway.txn([], [
                etcd.get(keys.hosts, prefix_end(keys.hosts)),
                etcd.get(keys.slots, prefix_end(keys.slots)),
                etcd.get(keys.queue, prefix_end(keys.queue), keys_only=True, limit=str(VIEW_WAITING)),
                etcd.get(keys.failed, prefix_end(keys.failed), keys_only=True),
            ], [])
        except FleetUnreachable as error:
            return FleetView(backend="etcd", group=self.config.group, this_host=self.host_id, slots=self.config.slots,
                             halt_after=self.config.halt_after,
                             note=f"the lock service is unreachable: {one_line(str(error))}")
        hosts = tuple(sorted((_host_of(kv) for kv in txn.kvs(0)), key=lambda host: host.host_id))
        holders = tuple(self._holder_of(kv) for kv in txn.kvs(1))
        waiting = tuple(keys.queue_host(kv.key) for kv in txn.kvs(2))
        failures = self._failures_from(txn.kvs(3))
        return FleetView(backend="etcd", group=self.config.group, this_host=self.host_id, slots=self.config.slots,
                         halt_after=self.config.halt_after, hosts=hosts, holders=holders, waiting=waiting,
                         waiting_total=txn.count(2), failures=failures)

    def release_host(self, host_id: str) -> bool:
        keys = self._keys
        slots, _, _ = self._gateway.range(keys.slots, prefix_end(keys.slots))
        freed = False
        for kv in slots:
            if _value(kv).get("host") == host_id:
                self._give_back(kv.key, kv.mod_revision)
                freed = True
        entries, _, _ = self._gateway.range(keys.queue, prefix_end(keys.queue), keys_only=True)
        for kv in entries:
            if keys.queue_host(kv.key) == host_id:
                self._gateway.txn([etcd.created_at(kv.key, kv.create_revision)], [etcd.delete(kv.key)], [])
        return freed

    def close(self) -> None:
        self._background.close()
        with self._lock:
            lease, held = self._lease, self._held
            self._lease = 0
        # A slot held at stop is kept: the deployment is unfinished, and the next start takes the
        # slot over (acquire) or gives it back (steady_state); else it frees itself after `lease`.
        if lease and held is None:
            try:
                self._gateway.call("lease/revoke", {"ID": str(lease)}, missing_ok=True)
            except FleetUnavailable as error:
                log.info("fleet: lease not revoked (it expires by itself): %s", error)
        if self._owns_gateway:
            self._gateway.close()

    # -- internals: lease -------------------------------------------------------------------------

    def _ensure_lease(self) -> int:
        with self._lock:
            if self._lease:
                return self._lease
        answer = self._gateway.call("lease/grant", {"TTL": str(max(1, math.ceil(self.config.lease_s)))}) or {}
        lease, ttl = number(answer.get("ID")), number(answer.get("TTL"))
        if not lease:
            raise FleetUnreachable(f"etcd granted no lease: {one_line(json.dumps(answer), 120)}")
        with self._lock:
            if self._lease:  # another thread was faster: keep one lease
                extra, lease = lease, self._lease
            else:
                extra, self._lease, self._lease_ttl = 0, lease, ttl
        if extra:
            self._gateway.call("lease/revoke", {"ID": str(extra)}, missing_ok=True)
        else:
            self._background.every(self._renew, ttl / 3)
        return lease

    def _renew(self) -> float:
        with self._lock:
            lease, ttl = self._lease, self._lease_ttl
        if not lease:
            return 3600.0
        try:
            answer = self._gateway.call("lease/keepalive", {"ID": str(lease)}, missing_ok=True) or {}
        except FleetUnavailable as error:
            log.warning("fleet: lease not renewed: %s", error)
            return min(2.0, ttl / 6)
        remaining = number(answer.get("result", answer).get("TTL"))
        if remaining <= 0:
            self._lease_lost(lease)
            return 3600.0
        if self._published is not None:
            try:
                self._put_host_record()
            except FleetUnavailable as error:
                log.info("fleet: state not refreshed: %s", error)
        return ttl / 3

    def _lease_lost(self, lease: int) -> None:
        with self._lock:
            if self._lease != lease:
                return
            self._lease = 0
            held, self._held = self._held, None
            published = self._published is not None
        self._background.stop_task()
        if held is not None:
            log.warning("fleet: the lease of this host expired (etcd unreachable for longer than fleet.lease): "
                        "its slot %s is lost", held.key)
        if published:
            with self._lock:
                self._publish_owed = True
            self._background.owe("publishing this host's state", self._put_host_record, now=False)

    # -- internals: slots -------------------------------------------------------------------------

    def _slot_value(self, host: str, instance: str | None) -> str:
        return json.dumps({"host": host, "instance": instance, "since": self._now_text()})

    def _holding(self, key: str, revision: int) -> None:
        with self._lock:
            self._held = _Held(key, revision)
            self._start_checked = True

    def _give_back(self, key: str, mod_revision: int) -> None:
        """Hand slot ``key`` (as last written at ``mod_revision``) to a host near the head of the
        line, or delete it when nobody waits; nothing if it is no longer what we know.

        Slot k goes to waiter number k (mod the first HAND_OVER_SPREAD in line), not always to the
        first: slots given back at the same moment would otherwise all race for one waiter, and
        all but one txn fail and try again (measured: 35 txns per host at 100 slots instead of 2).
        One slot freed at a time (slots = 1, or a quiet group) still goes to the first in line."""
        keys = self._keys
        queue = (keys.queue, prefix_end(keys.queue))

        def give_or_read() -> Txn:
            return self._gateway.txn([etcd.absent(*queue), etcd.modified_at(key, mod_revision)], [etcd.delete(key)],
                                     [etcd.get(*queue, limit=str(HAND_OVER_SPREAD)), etcd.get(key)])

        txn = give_or_read()
        turn = keys.slot_index(key) or 0
        for _ in range(100):
            if txn.succeeded:
                return
            now = txn.kvs(1)
            if not now or now[0].mod_revision != mod_revision:
                return  # handed over, taken over or expired meanwhile: not ours to give
            line = txn.kvs(0)
            if not line:
                txn = give_or_read()
                continue
            stray = [kv for kv in line if not kv.lease]
            for kv in stray:  # not written by an agent: a slot under no lease would never free
                self._gateway.txn([etcd.created_at(kv.key, kv.create_revision)], [etcd.delete(kv.key)], [])
            waiters = [kv for kv in line if kv.lease]
            if not waiters:
                txn = give_or_read()
                continue
            waiter = waiters[turn % len(waiters)]
            turn += 1  # if that hand-over fails, another waiter next time
            host = keys.queue_host(waiter.key)
            txn = self._gateway.txn(
                [etcd.modified_at(key, mod_revision), etcd.created_at(waiter.key, waiter.create_revision)],
                [etcd.put(key, self._slot_value(host, _value(waiter).get("instance")), lease=waiter.lease),
                 etcd.delete(waiter.key)],
                [etcd.get(*queue, limit=str(HAND_OVER_SPREAD)), etcd.get(key)])
        raise FleetUnreachable(f"slot {key} could not be handed over: the queue changed 100 times in a row")

    def _give_back_stale(self) -> None:
        """At start: slots and places in line this host left behind in an earlier run."""
        keys = self._keys
        slots, _, _ = self._gateway.range(keys.slots, prefix_end(keys.slots))
        with self._lock:
            lease, held = self._lease, self._held
        for kv in slots:
            if _value(kv).get("host") == self.host_id and (kv.lease != lease or lease == 0) and (held is None or held.key != kv.key):
                log.info("fleet: giving back slot %s left by an earlier run", kv.key)
                self._give_back(kv.key, kv.mod_revision)
        entries, _, _ = self._gateway.range(keys.queue, prefix_end(keys.queue), keys_only=True)
        for kv in entries:
            if keys.queue_host(kv.key) == self.host_id and (kv.lease != lease or lease == 0):
                self._gateway.txn([etcd.created_at(kv.key, kv.create_revision)], [etcd.delete(kv.key)], [])

    # -- internals: view, halt --------------------------------------------------------------------

    def _put_host_record(self) -> None:
        with self._lock:
            state = self._published
            self._publish_owed = False
        if state is None:
            return
        record = json.dumps({**asdict(state), "host_id": self.host_id, "seen_at": self._now_text()})
        for _ in range(2):
            lease = self._ensure_lease()
            body = etcd.put(self._keys.host(self.host_id), record, lease=lease)["request_put"]
            if self._gateway.call("kv/put", body, missing_ok=True) is not None:
                return
            self._lease_lost(lease)  # the put named a lease etcd no longer has
        raise FleetUnreachable("etcd keeps losing this host's lease")

    def _halted_from(self, failed: list[KeyValue]) -> dict[str, list[str]]:
        halted = {failure.ref: list(failure.hosts) for failure in self._failures_from(failed) if failure.halted}
        with self._lock:
            self._last_halted = halted
        return {ref: list(hosts) for ref, hosts in halted.items()}

    def _failures_from(self, failed: list[KeyValue]) -> tuple[FailedChange, ...]:
        by_ref: dict[str, list[str]] = {}
        for kv in failed:
            ref, host = self._keys.failure_of(kv.key)
            by_ref.setdefault(ref, []).append(host)
        return tuple(FailedChange(ref, tuple(sorted(hosts)), len(hosts) >= self.config.halt_after)
                     for ref, hosts in sorted(by_ref.items()))

    def _holder_of(self, kv: KeyValue) -> SlotHolder:
        value = _value(kv)
        return SlotHolder(host_id=one_line(str(value.get("host", "?")), 128), since=value.get("since"),
                          slot=self._keys.slot_index(kv.key), instance_id=value.get("instance"))

    def _now_text(self) -> str:
        return utc_text(datetime.fromtimestamp(self._clock(), timezone.utc))


class _Attempt:
    """One acquire: the queue entry it may hold, and how it waits."""

    def __init__(self, owner: EtcdCoordinator, entry: str, loop: WaitLoop, report: Reporter):
        self.owner = owner
        self.keys = owner._keys
        self.gateway = owner._gateway
        self.entry = entry
        self.loop = loop
        self.report = report
        self.queued = False
        self.lease = 0
        self.poll = Backoff(*owner._poll, rng=owner._rng)
        self.changed = threading.Event()
        self.watching: threading.Thread | None = None
        self.watch_from = 0
        self.read_now = False
        self.done = False

    def run(self) -> SlotGrant:
        retry = Backoff(1.0, 15.0, rng=self.owner._rng)
        try:
            while True:
                try:
                    grant = self._step()
                    if grant is not None:
                        return grant
                    retry.reset()
                except FleetUnreachable as error:
                    self.report(SlotWait("etcd", self.owner.config.group, "unreachable", slots=self.owner.config.slots,
                                         detail=one_line(str(error))))
                    reason = self.loop.pause(retry.next())
                    if reason is not None:
                        return self._give_up(reason)
        finally:
            self.done = True

    # Each step reads or writes once or twice and returns a grant, or None to go on.
    def _step(self) -> SlotGrant | None:
        owner = self.owner
        if not owner._background.settle():
            raise FleetUnreachable("; ".join(owner._background.owing) + " still owed")
        with owner._lock:
            if owner._held is not None:
                return SlotGrant(held=True, halted=owner.halted())
        self.lease = owner._ensure_lease()
        if not self.queued:
            read = self._enter()
            if isinstance(read, SlotGrant):
                return read
        else:
            if not self.read_now:
                reason = self._wait()
                if reason is not None:
                    return self._give_up(reason)
            self.read_now = False
            read = self._read()
            self.watch_from = read.revision + 1
        if not read.entry_present and not self._mine(read.slots):
            self.queued = False  # our place in line is gone (lease expired, admin): queue again
            return None
        return self._examine(read)

    def _enter(self) -> SlotGrant | _Read:
        keys, slots = self.keys, self.owner.config.slots
        guess = self.owner._rng.randrange(slots)
        value = self.owner._slot_value(self.owner.host_id, self.owner.instance_id)
        txn = self.gateway.txn(
            [etcd.absent(keys.queue, prefix_end(keys.queue)), etcd.absent(*keys.slots_from(slots)),
             etcd.absent(keys.slot(guess))],
            [etcd.put(keys.slot(guess), value, lease=self.lease), etcd.get(keys.slots, prefix_end(keys.slots)),
             etcd.get(keys.failed, prefix_end(keys.failed), keys_only=True)],
            [etcd.put(self.entry, value, lease=self.lease), etcd.get(keys.slots, prefix_end(keys.slots)),
             etcd.get(keys.queue, self.entry, count_only=True)])
        if txn.succeeded:
            self.owner._holding(keys.slot(guess), txn.revision)
            self._give_back_extra(txn.kvs(1), keep=keys.slot(guess))
            return self._granted(txn.kvs(2))
        self.queued = True
        self.watch_from = txn.revision + 1
        return _Read(txn.revision, txn.kvs(1), True, txn.count(2))

    def _read(self) -> _Read:
        keys = self.keys
        txn = self.gateway.txn([], [etcd.get(keys.slots, prefix_end(keys.slots)), etcd.get(self.entry, keys_only=True),
                                    etcd.get(keys.queue, self.entry, count_only=True),
                                    etcd.get(keys.failed, prefix_end(keys.failed), keys_only=True)], [])
        return _Read(txn.revision, txn.kvs(0), bool(txn.kvs(1)), txn.count(2), txn.kvs(3))

    def _examine(self, read: _Read) -> SlotGrant | None:
        keys, owner, slots = self.keys, self.owner, self.owner.config.slots
        mine = self._mine(read.slots)
        if mine is not None:
            owner._holding(mine.key, mine.mod_revision)
            if read.entry_present:
                self.gateway.txn([exists(self.entry)], [etcd.delete(self.entry)], [])
            self.queued = False
            self._give_back_extra(read.slots, keep=mine.key)
            return self._granted(read.failed)
        earlier = next((kv for kv in read.slots if _value(kv).get("host") == owner.host_id), None)
        if earlier is not None:  # left by an earlier run of this agent: take it over
            return self._take(earlier.key, [etcd.modified_at(earlier.key, earlier.mod_revision)])
        indexes = {keys.slot_index(kv.key) for kv in read.slots}
        free = [index for index in range(slots) if index not in indexes]
        if free and not any(index is not None and index >= slots for index in indexes):
            key = keys.slot(owner._rng.choice(free))
            return self._take(key, [etcd.absent(key), etcd.absent(*keys.slots_from(slots))])
        self.report(SlotWait("etcd", owner.config.group, "full", slots=slots,
                             holders=tuple(owner._holder_of(kv).host_id for kv in read.slots), ahead=read.ahead))
        return None

    def _take(self, key: str, compare: list[dict]) -> SlotGrant | None:
        keys, owner = self.keys, self.owner
        txn = self.gateway.txn([*compare, exists(self.entry)],
                               [etcd.put(key, owner._slot_value(owner.host_id, owner.instance_id), lease=self.lease),
                                etcd.delete(self.entry), etcd.get(keys.failed, prefix_end(keys.failed), keys_only=True)],
                               [])
        if not txn.succeeded:
            self.read_now = True  # somebody else was faster, or our entry is gone: read again at once
            return None
        owner._holding(key, txn.revision)
        self.queued = False
        return self._granted(txn.kvs(2))

    def _mine(self, slots: list[KeyValue]) -> KeyValue | None:
        return next((kv for kv in slots if kv.lease == self.lease and _value(kv).get("host") == self.owner.host_id), None)

    def _give_back_extra(self, slots: list[KeyValue], keep: str) -> None:
        for kv in slots:
            if kv.key != keep and _value(kv).get("host") == self.owner.host_id:
                self.owner._give_back(kv.key, kv.mod_revision)

    def _granted(self, failed: list[KeyValue] | None) -> SlotGrant:
        halted = self.owner._halted_from(failed) if failed is not None else self.owner.halted()
        return SlotGrant(held=True, waited_s=self.loop.waited(), last_wait=self.report.last, halted=halted)

    def _wait(self) -> str | None:
        """Until our entry changes (a hand-over), the next poll, or a reason to stop."""
        if self.watching is None or not self.watching.is_alive():
            self.changed.clear()
            self.watching = threading.Thread(target=self._watch, name="id1-fleet-watch", daemon=True)
            self.watching.start()
        return self.loop.pause(self.poll.next(), wake=self.changed)

    def _watch(self) -> None:
        start = self.watch_from
        retry = Backoff(1.0, 15.0, rng=self.owner._rng)
        while not self.done:
            try:
                outcome = self.gateway.watch(self.entry, start_revision=start, read_timeout=self.owner._watch_silence)
            except FleetUnavailable:
                time.sleep(retry.next())
                continue
            except RuntimeError:  # httpx: the client was closed (the coordinator is closing)
                return
            if outcome.events:
                self.changed.set()
                return
            start = max(start, outcome.revision + 1)

    def _give_up(self, reason: str) -> SlotGrant:
        """Leave the line (SIGTERM, or the critical wait is over); give back a slot handed to us meanwhile."""
        owner, keys, entry, lease = self.owner, self.keys, self.entry, self.lease

        def leave() -> None:
            txn = self.gateway.txn([exists(entry)], [etcd.delete(entry)], [etcd.get(keys.slots, prefix_end(keys.slots))])
            for kv in txn.kvs(0) if not txn.succeeded else []:
                if kv.lease == lease and _value(kv).get("host") == owner.host_id:
                    with owner._lock:
                        if owner._held is not None and owner._held.key == kv.key:
                            continue
                    owner._give_back(kv.key, kv.mod_revision)

        if self.queued:
            owner._background.owe("leaving the line for a slot", leave)
        self.queued = False
        return SlotGrant(held=False, reason=reason, waited_s=self.loop.waited(), last_wait=self.report.last)


def _value(kv: KeyValue) -> dict:
    try:
        value = json.loads(kv.value)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _host_of(kv: KeyValue) -> FleetHost:
    value = _value(kv)

    def text(name: str, default: str = "") -> str:
        item = value.get(name)
        return one_line(str(item), 200) if item is not None else default

    revision = value.get("revision")
    platform = value.get("platform")
    return FleetHost(host_id=text("host_id", kv.key.rpartition("/")[2]), instance_id=text("instance_id"),
                     platform=one_line(str(platform), 64) if platform is not None else None,
                     revision=revision if isinstance(revision, int) else None, agent_state=text("agent_state", "?"),
                     updated_at=text("updated_at"), last_seen=text("seen_at"))
