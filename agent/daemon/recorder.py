"""How the agent records a decision: the audit log, the event bus, the log line, the alert.

    _decided()            one decision, now: audited, published, logged (and alerted)
    _audited()            an admin's change and its audit entry stored in one write, then audited
    settle_pending_audit  at start: audit what a run that stopped in between had stored
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from agent.store.records import PendingAudit

logger = logging.getLogger("id1.agent")
AGENT = "agent"
"""The actor of what the agent decides by itself."""


@dataclass
class _Entry:
    """An audit entry being written with the change it describes (``AgentService._audited``)."""

    what: str = ""
    why: str = ""
    details: dict[str, Any] = field(default_factory=dict)



class DecisionRecorder:
    """Part of ``AgentService`` (agent.daemon.service): its decisions recorded."""

    @contextmanager
    def _audited(self, actor: str, action: str, what: str = "", why: str = "") -> Iterator[_Entry]:
        """An admin's change and its audit entry, stored in one write (the block's store calls
        and the entry); then the entry goes to the audit log. The block may fill in the entry."""
        entry = _Entry(what, why)
        with self.store.batch():
            yield entry
            pending = self.store.pending_audit.add(actor=actor, action=action, what=entry.what, why=entry.why, details=entry.details)
        self._audit_pending(pending)

    def _audit_pending(self, pending: PendingAudit, *, late: bool = False) -> None:
        why = pending.why + (" (audited at start: the agent stopped before it wrote this entry)" if late else "")
        self._decided(pending.actor, pending.action, pending.what, why, details={**pending.details, "pending": pending.ref})
        self.store.pending_audit.remove(pending)

    def settle_pending_audit(self) -> None:
        """Audit the changes stored by a run that stopped before their entries reached the log."""
        pending = self.store.pending_audit.list()
        if not pending:
            return
        logged = {entry.details.get("pending") for entry in self.audit.entries(limit=500)}
        for entry in pending:
            if entry.ref in logged:
                self.store.pending_audit.remove(entry)
            else:
                self._audit_pending(entry, late=True)

    def _decided(self, actor: str, action: str, what: str, why: str, *, alert: str | None = None,
                 details: dict[str, Any] | None = None, audit_only: bool = False) -> None:
        entry = self.audit.record(actor=actor, action=action, what=what, why=why, details=details)
        self.events.publish("audit", {"seq": entry.seq, "action": action})
        if alert is not None and self.notifier is not None and not audit_only:
            self.notifier.notify(alert, f"{what}: {why}" if why else what, {"actor": actor, "action": action, **(details or {})})
        line = f"{action}: {what}" + (f" ({why})" if why else "")
        logger.info("%s", line)
        self.on_decision(line)

