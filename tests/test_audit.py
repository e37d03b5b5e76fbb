"""The audit log: a verifiable chain that names every edited, removed or reordered entry.

Everything runs on real files in a temp folder. Tampering is done the way a person would: rewrite
a file with one JSON value changed, delete a line, delete a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.audit import (
    ZERO_HASH,
    AuditEntry,
    AuditError,
    AuditLog,
    AuditProblem,
    verify_audit_folder,
)
from agent.errors import StoreError

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)
# Each example writes real files with an fsync per entry, so fewer than the planner's 150.
PROPERTY = settings(
    max_examples=int(os.environ.get("ID1_PROPERTY_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class TickingClock:
    """One second later on every call."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def open_log(folder: Path, **options: Any) -> AuditLog:
    options.setdefault("clock", TickingClock())
    return AuditLog(folder, **options)


def record_many(log: AuditLog, count: int, **fields: Any) -> list[AuditEntry]:
    return [
        log.record(actor=fields.get("actor", "alice"), action=fields.get("action", "pin"), what=f"pin core/auth@1.0.{n}", why=f"ticket {n}")
        for n in range(count)
    ]


def live(folder: Path) -> Path:
    return folder / "audit.jsonl"


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rewrite_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))  # in place, as an editor that keeps the file would


def edit_entry(path: Path, seq: int, change) -> None:
    """Rewrite ``path`` with entry ``seq`` changed by ``change(record)``; every other byte stays."""
    lines = lines_of(path)
    for index, line in enumerate(lines):
        record = json.loads(line)
        if record["seq"] == seq:
            change(record)
            lines[index] = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
            rewrite_lines(path, lines)
            return
    raise AssertionError(f"no entry {seq} in {path}")


def rehash(record: dict[str, Any]) -> None:
    """What a careful forger does after an edit: recompute the entry's own hash."""
    body = {key: value for key, value in record.items() if key != "hash"}
    record["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def named(problems: list[AuditProblem]) -> list[tuple[str, int | None]]:
    return [(problem.file, problem.seq) for problem in problems]


def rotated_names(folder: Path) -> list[str]:
    return sorted((path.name for path in folder.glob("audit-*.jsonl")), key=lambda name: int(name.split("-")[1]))


# -- the chain ---------------------------------------------------------------------------------


def test_a_chain_of_entries_verifies_and_each_line_is_canonical_json(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        recorded = [
            log.record(actor="root", action="approve", what="deployment 7: platform 2.6.0", why="change window CHG-12"),
            log.record(actor="agent", action="feed-rejected", what="feed serial 41", details={"reason": "signature", "serial": 41}),
            log.record(actor="bob", action="pin", what="core/auth@1.0.2", why="Grüße — naïve “quotes”"),
        ]
        verification = log.verify()

    assert verification.ok and verification.problems == []
    assert (verification.checked, verification.first_seq, verification.last_seq) == (3, 1, 3)
    assert [entry.seq for entry in recorded] == [1, 2, 3]
    assert recorded[0].prev == ZERO_HASH
    assert [entry.prev for entry in recorded[1:]] == [entry.hash for entry in recorded[:-1]]
    assert recorded[0].at == START + timedelta(seconds=1)
    for line, entry in zip(lines_of(live(folder)), recorded, strict=True):
        record = json.loads(line)
        assert line == json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        assert record["at"] == f"2026-01-31T12:00:0{entry.seq}Z", "UTC, to the second; seq orders within one"
        assert AuditEntry.model_validate(record) == entry
    assert "Grüße" in live(folder).read_text(encoding="utf-8"), "UTF-8 as is, not \\u escapes"
    assert json.loads((folder / "head.json").read_text()) == {"seq": 3, "hash": recorded[-1].hash}


def test_numbering_and_the_chain_go_on_after_a_restart(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        first = record_many(log, 2)
    with open_log(folder) as log:
        again = log.record(actor="carol", action="unpin", what="core/auth")
        assert log.warnings == []
        assert log.verify().ok
    assert (again.seq, again.prev) == (3, first[-1].hash)


def entry_text() -> st.SearchStrategy[str]:
    # Line and paragraph separators, CR, NUL and astral characters must not split or bend a line.
    return st.text(alphabet=st.characters(blacklist_categories=["Cs"]) | st.sampled_from("\n\r\u2028\u2029\x85\x00😀"), max_size=30)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | entry_text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(entry_text(), inner, max_size=3),
    max_leaves=8,
)


@PROPERTY
@given(
    st.lists(
        st.tuples(entry_text().filter(bool), entry_text(), entry_text(), st.dictionaries(entry_text(), json_values, max_size=3)),
        min_size=1,
        max_size=6,
    )
)
def test_any_text_and_details_read_back_exactly_and_the_chain_verifies(records):
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "audit"
        with open_log(folder) as log:
            written = [log.record(actor=actor, action="approve", what=what, why=why, details=details) for actor, what, why, details in records]
            assert log.entries() == written[::-1]
            assert log.verify().ok
        # What the API hands out is enough to check a hash without the file.
        for entry in written:
            assert AuditEntry.model_validate_json(entry.model_dump_json()) == entry
            body = {key: value for key, value in entry.model_dump(mode="json").items() if key != "hash"}
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            assert hashlib.sha256(canonical).hexdigest() == entry.hash


def test_details_that_are_not_plain_json_are_refused_and_nothing_is_written(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        with pytest.raises(ValueError, match="details must be plain JSON"):
            log.record(actor="root", action="pin", what="x", details={"when": datetime.now()})
        with pytest.raises(ValueError, match="details must be plain JSON"):
            log.record(actor="root", action="pin", what="x", details={"ratio": float("nan")})
        with pytest.raises(ValueError, match="action must be"):
            log.record(actor="root", action="Pin It", what="x")
        with pytest.raises(ValueError, match="actor must be"):
            log.record(actor="", action="pin", what="x")
        # Tuples and int keys are stored as they read back, so the hash still checks out.
        entry = log.record(actor="root", action="pin", what="x", details={"versions": ("1.0.0", "1.0.1"), "n": {1: "one"}})
        assert entry.details == {"versions": ["1.0.0", "1.0.1"], "n": {"1": "one"}}
        assert (entry.seq, log.verify().ok) == (1, True)


def test_a_closed_log_refuses_to_record(tmp_path):
    log = open_log(tmp_path / "audit")
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.record(actor="root", action="pin", what="x")


# -- tampering, named ----------------------------------------------------------------------------

EDITS = {
    "seq": lambda record: record.update(seq=99),
    "seq as text": lambda record: record.update(seq="3"),
    "at": lambda record: record.update(at="2025-12-24T18:00:00Z"),
    "at as prose": lambda record: record.update(at="yesterday"),
    "actor": lambda record: record.update(actor="mallory"),
    "action": lambda record: record.update(action="unpin"),
    "what": lambda record: record.update(what="nothing to see"),
    "why": lambda record: record.update(why=""),
    "details": lambda record: record.update(details={"approved": True}),
    "details as list": lambda record: record.update(details=[]),
    "prev": lambda record: record.update(prev="f" * 64),
    "hash": lambda record: record.update(hash="e" * 64),
    "hash removed": lambda record: record.pop("hash"),
    "field added": lambda record: record.update(approved_by="root"),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_editing_one_value_of_one_entry_names_that_entry(tmp_path, edit):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 5)
        edit_entry(live(folder), 3, edit)
        verification = log.verify()

    assert not verification.ok
    assert [(p.file, p.seq, p.line) for p in verification.problems] == [("audit.jsonl", 3, 3)], verification.problems
    assert verification.problems[0].message.startswith("entry 3 was edited: its hash does not match its content")


def test_an_edit_with_a_recomputed_hash_breaks_the_link_to_the_next_entry(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 5)
        edit_entry(live(folder), 3, lambda record: (record.update(what="nothing to see"), rehash(record)))
        [problem] = log.verify().problems

    assert (problem.seq, problem.line) == (4, 4)
    assert problem.message == "entry 4's prev does not match entry 3's hash: entry 3 or 4 was rewritten"


def test_rewriting_the_last_entry_with_a_recomputed_hash_is_caught_by_the_head(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 4)
        edit_entry(live(folder), 4, lambda record: (record.update(why="routine"), rehash(record)))
        [problem] = log.verify().problems

    assert (problem.file, problem.seq) == ("head.json", 4)
    assert "entry 4 does not match head.json" in problem.message


def test_removing_a_middle_line_names_the_missing_entry(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 5)
        lines = lines_of(live(folder))
        rewrite_lines(live(folder), lines[:2] + lines[3:])
        [problem] = log.verify().problems

    assert (problem.file, problem.seq, problem.line) == ("audit.jsonl", 3, 3)
    assert problem.message == "entry 3 is missing: after 2 comes 4"


def test_removing_the_last_line_is_named_thanks_to_the_head(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 5)
        rewrite_lines(live(folder), lines_of(live(folder))[:-1])
        [problem] = log.verify().problems

    assert (problem.file, problem.seq) == ("audit.jsonl", 5)
    assert problem.message == "entry 5 is missing: head.json says the log ends at entry 5"


def test_a_tail_cut_while_the_agent_was_down_stays_visible_after_it_starts(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 5)
    rewrite_lines(live(folder), lines_of(live(folder))[:-2])

    with open_log(folder) as log:
        assert len(log.warnings) == 1 and "entries 4–5 are missing" in log.warnings[0]
        later = log.record(actor="root", action="pin", what="core/api@2.1.0")
        verification = log.verify()
        repaired = log.entries(action="audit-repaired")

    assert later.seq == 7, "numbers 4 and 5 are never given out again; 6 records the finding"
    assert [p.message for p in verification.problems] == ["entries 4–5 are missing: after 3 comes 6"]
    assert [entry.what for entry in repaired] == log.warnings and repaired[0].actor == "agent"


def test_swapping_two_lines_names_the_entry_out_of_order(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 5)
        lines = lines_of(live(folder))
        lines[1], lines[2] = lines[2], lines[1]
        rewrite_lines(live(folder), lines)
        problems = log.verify().problems

    assert [(p.seq, p.line, p.message) for p in problems] == [(2, 3, "entry 2 is out of order: it comes after entry 3")]


def test_a_copied_line_is_named(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 4)
        lines = lines_of(live(folder))
        rewrite_lines(live(folder), lines + [lines[1]])
        problems = log.verify().problems

    assert [(p.seq, p.line, p.message) for p in problems] == [(2, 5, "entry 2 is out of order or a copy: it comes after entry 4")]


def test_a_line_that_is_not_json_is_named_by_its_line_and_the_check_goes_on(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 6)
        edit_entry(live(folder), 5, lambda record: record.update(actor="mallory"))
        lines = lines_of(live(folder))
        lines[2] = b"{ this is not json\n"
        rewrite_lines(live(folder), lines)
        problems = log.verify().problems

    assert [(p.seq, p.line, p.message) for p in problems] == [
        (None, 3, "line 3 is not JSON"),
        (5, 5, "entry 5 was edited: its hash does not match its content"),
    ]


def test_a_file_overwritten_or_edited_throughout_is_one_problem_not_a_flood(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder, max_bytes=2000, keep_files=100) as log:
        record_many(log, 30)
        older, newer = rotated_names(folder)[:2]
        (folder / older).write_bytes(b"\x00garbage\n" * len(lines_of(folder / older)))
        for line in lines_of(folder / newer):
            edit_entry(folder / newer, json.loads(line)["seq"], lambda record: record.update(actor="mallory"))
        problems = log.verify().problems

    count = len(lines_of(folder / older))
    first, last = (int(part) for part in newer.removeprefix("audit-").removesuffix(".jsonl").split("-"))
    assert [(p.file, p.seq, p.line, p.message) for p in problems] == [
        (older, None, 1, f"lines 1–{count} are not entries"),
        (newer, first, 1, f"entries {first}–{last} were edited: their hashes do not match their content"),
    ]


def test_a_deleted_head_is_reported_and_noted_at_the_next_start(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 3)
        (folder / "head.json").unlink()
        assert [p.file for p in log.verify().problems] == ["head.json"]

    with open_log(folder) as log:
        assert len(log.warnings) == 1 and "head.json was missing" in log.warnings[0]
        assert log.verify().ok
        assert log.entries(limit=1)[0].action == "audit-repaired"


def test_the_moment_between_an_append_and_its_head_write_is_not_a_problem(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        entries = record_many(log, 3)
    # A crash after entry 3 was fsynced but before head.json was replaced.
    (folder / "head.json").write_text(json.dumps({"seq": 2, "hash": entries[1].hash}))

    assert verify_audit_folder(folder).ok
    with open_log(folder) as log:
        assert log.warnings == []
        assert log.record(actor="root", action="pin", what="x").seq == 4


@PROPERTY
@given(st.integers(min_value=3, max_value=25), st.data())
def test_any_one_removed_or_edited_entry_of_a_rotated_log_is_named_and_nothing_else(count, data):
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "audit"
        with open_log(folder, max_bytes=1200) as log:
            record_many(log, count)
            target = data.draw(st.integers(min_value=1, max_value=count), label="entry")
            path = next(path for path in folder.glob("audit*.jsonl") if any(json.loads(line)["seq"] == target for line in lines_of(path)))
            if data.draw(st.booleans(), label="remove (else edit)"):
                rewrite_lines(path, [line for line in lines_of(path) if json.loads(line)["seq"] != target])
            else:
                edit = data.draw(st.sampled_from(sorted(EDITS)), label="edit")
                edit_entry(path, target, EDITS[edit])
            verification = log.verify()

        assert [problem.seq for problem in verification.problems] == [target], verification.problems


# -- rotation ----------------------------------------------------------------------------------


def test_rotation_across_several_files_keeps_one_chain(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder, max_bytes=1000) as log:
        written = record_many(log, 20)
        verification = log.verify()
        newest_first = log.entries()

    names = rotated_names(folder)
    assert len(names) >= 3
    assert all(path.stat().st_size <= 1000 for path in folder.glob("audit*.jsonl"))
    spans = [tuple(map(int, name.removeprefix("audit-").removesuffix(".jsonl").split("-"))) for name in names]
    assert spans[0][0] == 1 and all(later[0] == earlier[1] + 1 for earlier, later in zip(spans, spans[1:]))
    assert json.loads(lines_of(live(folder))[0])["seq"] == spans[-1][1] + 1
    assert verification.ok and (verification.checked, verification.first_seq, verification.last_seq) == (20, 1, 20)
    assert newest_first == written[::-1]
    assert not (folder / "anchor.json").exists(), "nothing deleted yet"


def test_deleting_beyond_keep_files_moves_the_anchor_and_the_rest_still_verifies(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder, max_bytes=1000, keep_files=2) as log:
        written = record_many(log, 30)
        verification = log.verify()
        kept = log.entries()

    names = rotated_names(folder)
    assert len(names) == 2
    first_kept = int(names[0].split("-")[1])
    assert first_kept > 1
    assert json.loads((folder / "anchor.json").read_text()) == {"seq": first_kept, "prev": written[first_kept - 2].hash}
    assert verification.ok and (verification.first_seq, verification.last_seq) == (first_kept, 30)
    assert [entry.seq for entry in kept] == list(range(30, first_kept - 1, -1))
    with open_log(folder, max_bytes=1000, keep_files=2) as log:
        assert log.record(actor="root", action="pin", what="x").seq == 31


def test_deleting_an_old_file_that_should_be_kept_is_named(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder, max_bytes=1000, keep_files=3) as log:
        record_many(log, 40)
        oldest, middle = rotated_names(folder)[:2]
        (folder / oldest).unlink()
        start = log.verify().problems
        (folder / middle).unlink()
        both = log.verify().problems

    anchor = json.loads((folder / "anchor.json").read_text())["seq"]
    first, last = (int(part) for part in oldest.removeprefix("audit-").removesuffix(".jsonl").split("-"))
    assert first == anchor
    assert [(p.seq, p.message) for p in start] == [
        (anchor, f"entries {first}–{last} are missing: anchor.json says the kept history starts at entry {anchor}")
    ]
    assert [p.seq for p in both] == [anchor], "one spot, one problem: the two files are one gap"


def test_without_an_anchor_the_log_must_start_at_entry_one(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder, max_bytes=1000) as log:
        record_many(log, 12)
        oldest = rotated_names(folder)[0]
        (folder / oldest).unlink()
        [problem] = log.verify().problems

    last = int(oldest.removesuffix(".jsonl").split("-")[2])
    assert problem.seq == 1 and problem.message == f"entries 1–{last} are missing: the log starts at entry {last + 1}"


def test_a_file_left_by_an_interrupted_deletion_is_fine_and_removed_at_the_next_start(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder, max_bytes=1000, keep_files=3) as log:
        record_many(log, 12)
    names = rotated_names(folder)
    # The crash came after anchor.json moved past the oldest file but before that file was deleted.
    second_first = int(names[1].split("-")[1])
    previous = json.loads(lines_of(folder / names[0])[-1])["hash"]
    (folder / "anchor.json").write_text(json.dumps({"seq": second_first, "prev": previous}))

    assert verify_audit_folder(folder).ok
    with open_log(folder, max_bytes=1000, keep_files=2) as log:
        assert rotated_names(folder) == names[1:]
        assert log.verify().ok


def test_entries_with_a_limit_reads_no_older_file_than_it_needs(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder, max_bytes=1000) as log:
        record_many(log, 20)
        oldest = rotated_names(folder)[0]
        (folder / oldest).unlink()
        (folder / oldest).mkdir()  # reading it would fail loudly

        assert [entry.seq for entry in log.entries(limit=3)] == [20, 19, 18]
        with pytest.raises(AuditError, match=oldest):
            log.entries()


# -- crashes -----------------------------------------------------------------------------------


def test_a_line_torn_by_a_crash_is_removed_on_open_with_a_warning_and_kept_in_the_log(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 3)
    whole = live(folder).read_bytes()
    torn = b'{"action":"approve","actor":"root","at":"2026-01-31T12:00:'
    with live(folder).open("ab") as file:
        file.write(torn)

    with open_log(folder) as log:
        assert len(log.warnings) == 1 and "cut off by a crash" in log.warnings[0]
        assert live(folder).read_bytes().startswith(whole)
        after = log.record(actor="root", action="approve", what="deployment 9")
        verification = log.verify()
        [repair] = log.entries(action="audit-repaired")

    assert verification.ok and verification.last_seq == after.seq == 5
    assert repair.seq == 4 and repair.details == {"removed": torn.decode()}


def test_an_entry_written_whole_but_for_its_line_end_is_kept(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        written = record_many(log, 3)
    live(folder).write_bytes(live(folder).read_bytes()[:-1])

    with open_log(folder) as log:
        assert len(log.warnings) == 1 and "entry 3 was written whole" in log.warnings[0]
        assert log.verify().ok
        assert [entry.seq for entry in log.entries(action="pin")] == [3, 2, 1]
        assert log.entries(action="pin")[0] == written[-1]


def test_an_offline_check_names_a_torn_line_that_no_agent_has_mended_yet(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 2)
    with live(folder).open("ab") as file:
        file.write(b'{"seq":3,')

    [problem] = verify_audit_folder(folder).problems
    assert (problem.seq, problem.line) == (None, 3) and "cut off" in problem.message


# -- threads, filters --------------------------------------------------------------------------


def test_records_from_eight_threads_get_unique_consecutive_numbers_and_one_chain(tmp_path):
    folder = tmp_path / "audit"
    barrier = threading.Barrier(8)
    seqs: list[int] = []
    errors: list[BaseException] = []

    with open_log(folder, clock=lambda: datetime.now(timezone.utc), max_bytes=4000, keep_files=100) as log:

        def work(worker: int) -> None:
            try:
                barrier.wait()
                for n in range(25):
                    seqs.append(log.record(actor=f"user{worker}", action="approve", what=f"{worker}/{n}").seq)
            except BaseException as error:  # noqa: BLE001 - handed to the main thread
                errors.append(error)

        threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        verification = log.verify()
        per_worker = {worker: [entry.what for entry in log.entries(actor=f"user{worker}")] for worker in range(8)}

    assert errors == []
    assert sorted(seqs) == list(range(1, 201))
    assert verification.ok and verification.checked == 200
    assert all(whats == [f"{worker}/{n}" for n in reversed(range(25))] for worker, whats in per_worker.items())


def test_entries_filter_by_actor_action_and_page_with_before_seq(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder, max_bytes=900) as log:
        for n in range(1, 13):
            log.record(actor="alice" if n % 2 else "bob", action="pin" if n % 3 else "rollback", what=f"change {n}")

        def seqs(**filters: Any) -> list[int]:
            return [entry.seq for entry in log.entries(**filters)]

        assert seqs() == list(range(12, 0, -1))
        assert seqs(actor="bob") == [12, 10, 8, 6, 4, 2]
        assert seqs(action="rollback") == [12, 9, 6, 3]
        assert seqs(actor="alice", action="rollback") == [9, 3]
        assert seqs(limit=4) == [12, 11, 10, 9]
        assert seqs(before_seq=9, limit=3) == [8, 7, 6]
        assert seqs(actor="bob", before_seq=6) == [4, 2]
        assert seqs(actor="nobody") == [] and seqs(limit=0) == []
        assert len(rotated_names(folder)) >= 2, "the pages cross files"


# -- errors ------------------------------------------------------------------------------------


def test_a_folder_that_cannot_be_made_is_one_clear_error_naming_the_path(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")

    with pytest.raises(AuditError) as raised:
        AuditLog(blocker / "audit")

    assert isinstance(raised.value, StoreError)
    assert str(raised.value) == f"cannot create {blocker / 'audit'}: {blocker} is a file, not a folder: move it, or set another state_dir"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_one_clear_error_and_the_next_record_tries_again(tmp_path):
    folder = tmp_path / "audit"
    folder.mkdir()
    live(folder).symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk

    with open_log(folder) as log:
        for _ in range(2):
            with pytest.raises(AuditError, match=f"cannot append to {live(folder)}: no space left on its device"):
                log.record(actor="root", action="pin", what="x")
        assert not (folder / "head.json").exists()


def test_an_empty_log_opens_again_without_findings(tmp_path):
    folder = tmp_path / "audit"
    open_log(folder).close()
    with open_log(folder) as log:
        assert log.warnings == [] and log.entries() == []
        verification = log.verify()
    assert verification.ok and (verification.checked, verification.first_seq, verification.last_seq) == (0, None, None)


def test_importing_the_audit_log_loads_no_web_store_or_dashboard_library():
    script = "import sys, json, agent.audit; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & {"fastapi", "textual", "tinydb", "httpx", "uvicorn", "apscheduler"}
    assert "agent.store" not in json.loads(done.stdout)


def test_the_audit_files_are_private_to_the_agent(tmp_path):
    folder = tmp_path / "audit"
    with open_log(folder) as log:
        record_many(log, 1)
    assert {path.name: os.stat(path).st_mode & 0o777 for path in folder.iterdir()} == {"audit.jsonl": 0o600, "head.json": 0o600}
