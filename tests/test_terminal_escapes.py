"""Control characters never reach an admin's terminal (issue 12, item 3).

A reason, a comment, a feed's release notes end up on the terminal of whoever runs ``id1
audit`` or ``id1 approve``; ESC in them is a command to that terminal (here: erase the line and
print a fake "audit log intact"). The API refuses such text (422 naming the field), and the CLI
escapes what is already stored, or comes from the feed, or is quoted in an error. Against a real
daemon (``tests.daemon.site``), with an audit entry written before the refusal existed.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from agent.audit import AuditLog
from tests.daemon.site import Release, Site

FORGED = "\x1b[2K\raudit log intact: 9 entries checked"
"""Erase the line, back to its start, and print what `id1 audit verify` prints when all is well."""
BIDI = "1.0.0 \u202e0.0.9"
NOTES = f"Fixes the login.\n{FORGED}\nAlso \x9b31m (a C1 CSI) and {BIDI}."

OBEYED = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def raw_controls(text: str) -> set[str]:
    """The characters a terminal would obey (line breaks are the CLI's own layout)."""
    return set(OBEYED.findall(text))


@pytest.fixture(scope="module")
def site():
    site = Site()
    try:
        site.configure("manual-approval")
        # An entry from before reasons were checked: stored as it was given.
        with AuditLog(site.state / "audit") as log:
            log.record(actor="mallory", action="reject", what="rejected approval-0", why=FORGED)
            log.record(actor="mallory", action="pin", what="pinned suite core to 1.0.0", why=f"\x9b2J {BIDI}")
        site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"}, notes={"1.0.0": NOTES})
        site.start()
        site.ok("check")
        site.wait_for(lambda status: status.get("pending_approval"), what="a pending approval")
        yield site
    finally:
        site.close()


def test_stored_reasons_are_shown_escaped_by_id1_audit(site):
    result = site.ok("audit")
    assert "\\x1b[2K\\raudit log intact: 9 entries checked" in result.out
    assert not raw_controls(result.out), result.out


def test_the_json_of_id1_audit_keeps_the_text_but_not_raw_controls(site):
    result = site.ok("audit", "--json")
    assert not raw_controls(result.out), result.out  # json.dumps escapes C0 itself, not C1 nor bidi
    reasons = {entry["why"] for entry in json.loads(result.out)}
    assert {FORGED, f"\x9b2J {BIDI}"} <= reasons  # the same data, escaped as JSON escapes it


def test_release_notes_from_the_feed_are_escaped_in_the_approval_prompt(site):
    result = site.cli("approve", stdin="n\n")
    assert result.code == 1, result.err
    assert "Fixes the login." in result.out and "\\x1b[2K\\raudit log intact" in result.out
    assert "\\x9b31m" in result.out and "\\u202e" in result.out
    assert not raw_controls(result.out + result.err), result.out


@pytest.mark.parametrize("text", [FORGED, "ok\nid1: approved", "tab\there", "ordering " + BIDI, "del\x7f", "c1\x85"])
def test_the_api_refuses_control_characters_in_a_reason_naming_the_field(site, text):
    result = site.cli("reject", "--reason", text)
    assert result.code == 2, result.out + result.err
    assert result.err.startswith("id1: reason: has U+") and result.err.count("\n") == 1, result.err
    assert not raw_controls(result.err)
    assert site.status()["pending_approval"] is not None  # nothing was rejected


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/versions/pin", {"level": "suite", "name": "core", "version": "1.0.0", "reason": "x\x1by"}, "reason"),
    ("/policy", {"channel": "frozen", "reason": "\u2066isolated"}, "reason"),
    ("/policies", {"name": "night\x00", "channel": "frozen"}, "name"),
    ("/security/enforce", {"advisory_id": "ID1\x1b"}, "advisory_id"),
])
def test_every_free_text_field_of_the_api_is_checked(site, path, body, field):
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(site.socket)), base_url="http://id1", timeout=30) as client:
        answer = client.request("PUT" if path == "/policy" else "POST", path, json=body)
    assert answer.status_code == 422, answer.text
    assert [problem["field"] for problem in answer.json()["fields"]] == [field]


def test_an_approval_id_cannot_walk_the_api_paths(site):
    result = site.cli("approve", "../audit", "--yes")
    assert result.code in (4, 2), result.out + result.err
    assert result.err.startswith("id1: ") and result.err.count("\n") == 1 and "Traceback" not in result.err


def test_a_control_character_in_an_error_is_escaped_on_stderr(site):
    result = site.cli("approve", "approval-\x1b]0;owned\x07", "--yes")
    assert result.code == 4 and "approval-\\x1b]0;owned\\x07" in result.err, result.err
    assert not raw_controls(result.err)


# --- the pieces, without a daemon --------------------------------------------------------------

def test_escape_writes_each_unsafe_character_as_python_would():
    from agent.safe_text import escape_unsafe

    assert escape_unsafe("a\x1bb\x9bc\u202ed\x7f\te") == "a\\x1bb\\x9bc\\u202ed\\x7f\\te"
    assert escape_unsafe("two\nlines", keep="\n") == "two\nlines"
    assert escape_unsafe("undecodable \udcff byte") == "undecodable \\xff byte"
    assert escape_unsafe("ünïcödé → fine") == "ünïcödé → fine"


def test_tables_and_notes_escape_before_they_measure():
    from agent.cli.render import indented, table

    lines = table([("core/auth", "1.0.0\x1b[8m")], ("CAPABILITY", "VERSION"))
    assert lines[1].endswith("1.0.0\\x1b[8m") and not raw_controls("".join(lines))
    assert indented("one\r\ntwo\x1b") == ["  one", "  two\\x1b"]


def test_json_output_escapes_what_json_dumps_leaves_raw():
    from agent.cli.render import json_text

    text = json_text({"why": "a\x1b b\x9b c\u202e d\udcff"})
    assert not raw_controls(text) and "\udcff" not in text
    assert json.loads(text)["why"] == "a\x1b b\x9b c\u202e d\udcff"
