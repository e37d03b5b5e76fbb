"""The audit log: who changed what, when and why; every API change and every decision of the agent.
On disk, in ``<state_dir>/audit``::

    audit.jsonl                   the live file: one entry a line, canonical JSON, oldest first
    audit-<first>-<last>.jsonl    older entries, moved aside when the live file would pass max_bytes;
                                  the newest keep_files of them are kept
    anchor.json                   {"seq", "prev"}: where the kept history starts once old files are gone
    head.json                     {"seq", "hash"}: the last entry, rewritten atomically after each append

Each entry carries ``prev``, the ``hash`` of the entry before it (64 zeros for entry 1), and its
own ``hash``: sha256 of its canonical JSON without ``hash``. ``verify`` walks the chain from the
anchor to the head and names each entry that was edited, removed, reordered or cut off the end.
Sequence numbers are never reused, not across rotation nor across a repair, so a gap stays a gap.

Nothing keys the chain: whoever can write the folder can rewrite history from some entry on,
recomputing every later hash and head.json. Copy ``hash`` of recent entries somewhere else (the
journal) to catch that too.

Opening the log mends what a crash leaves (a line cut off mid-append) and notices what a crash
cannot explain (head.json ahead of the files); each such finding is listed in ``warnings`` and
recorded as an ``audit-repaired`` entry, so nothing is mended silently.

The package: ``entries`` (an entry's shape, canonical JSON and hash), ``files`` (the folder's
files, read and written safely), ``log`` (``AuditLog``: append, read, rotate, mend) and
``verify`` (walking the chain).
"""

from agent.audit.entries import (
    ANCHOR_NAME,
    DEFAULT_KEEP_FILES,
    DEFAULT_MAX_BYTES,
    HEAD_NAME,
    LIVE_NAME,
    REPAIR_ACTION,
    ZERO_HASH,
    AuditEntry,
    AuditError,
    AuditProblem,
    AuditVerification,
)
from agent.audit.log import AuditLog
from agent.audit.verify import verify_audit_folder

__all__ = [
    "ANCHOR_NAME", "DEFAULT_KEEP_FILES", "DEFAULT_MAX_BYTES", "HEAD_NAME", "LIVE_NAME", "REPAIR_ACTION", "ZERO_HASH",
    "AuditEntry", "AuditError", "AuditLog", "AuditProblem", "AuditVerification", "verify_audit_folder",
]
