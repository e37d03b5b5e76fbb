"""``id1 fleet``, ``id1 fleet resume`` and ``id1 fleet release`` (DESIGN.md §12): what an admin
reads about the group in 80 columns, whatever the backend and whatever the hosts published, and
the two admin verbs against a real daemon in a real etcd group."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.cli.fleet_cmd import fleet_lines
from agent.cli.main import build_parser
from agent.fleet.config import FleetConfig
from agent.fleet.etcd import EtcdCoordinator
from tests.daemon.site import Site, poll_until
from tests.fleet.etcd_cluster import EtcdCluster
from tests.test_engine import SYSTEMCTL3

NOW = datetime(2026, 11, 21, 8, 10, tzinfo=timezone.utc)
DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
REF = "core/auth@2.0.1"
OBEYED = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def host(host_id: str, state: str = "idle", *, platform: str = "2.5.0", revision: int = 4, seen: str = "2026-11-21T08:09:48Z",
         instance: str | None = None) -> dict:
    return {"host_id": host_id, "instance_id": instance or host_id.replace("web", "host"), "platform": platform,
            "revision": revision, "agent_state": state, "updated_at": "2026-11-21T08:00:00Z", "last_seen": seen}


def etcd_view(**changes) -> dict:
    """``GET /fleet`` from web-02: web-01 deploys, web-02 waits behind it and web-09 (gone, still
    holding a slot), and core/auth 2.0.1 is halted after failing on web-05 and web-06."""
    view = {
        "backend": "etcd", "group": "web", "this_host": "web-02", "slots": 2, "halt_after": 2,
        "hosts": [host("web-01", "deploying", platform="2.6.0", revision=5, seen="2026-11-21T08:09:58Z"),
                  host("web-02", "waiting for a fleet slot (group web: 2/2 held by web-01, web-09)"),
                  host("web-03", seen="2026-11-21T08:09:20Z")],
        "holders": [{"host_id": "web-01", "since": "2026-11-21T08:03:00Z", "slot": 0, "instance_id": "host-01"},
                    {"host_id": "web-09", "since": "2026-11-21T06:00:00Z", "slot": 1, "instance_id": None}],
        "waiting": ["web-02", "web-03"], "waiting_total": 2,
        "failures": [{"ref": REF, "hosts": ["web-05", "web-06"], "halted": True},
                     {"ref": "core/api@2.2.0", "hosts": ["web-05"], "halted": False}],
        "note": None, "slot_wait": "waiting for a fleet slot (group web: 2/2 held by web-01, web-09)",
    }
    return {**view, **changes}


def text_of(view: dict) -> str:
    lines = fleet_lines(view, now=NOW)
    wide = [line for line in lines if len(line) > 80]
    assert not wide, "wider than 80 columns:\n" + "\n".join(wide)
    return "\n".join(lines)


# --- the command line ------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "verb", "fields"), [
    (["fleet"], "fleet", {"json": False}),
    (["fleet", "resume", REF, "--reason", "fixed in 2.0.2"], "resume", {"ref": REF, "reason": "fixed in 2.0.2"}),
    (["fleet", "release", "web-09"], "release", {"host_id": "web-09", "reason": None}),
])
def test_the_fleet_verbs_parse_with_the_socket_and_json_before_or_after(argv, verb, fields):
    parser = build_parser()
    for args in (parser.parse_args([*argv, "--json", "--socket", "/tmp/after.sock"]),
                 parser.parse_args(["--socket", "/tmp/before.sock", *argv, "--json"])):
        assert args.run.__name__ == {"fleet": "run_fleet", "resume": "run_fleet_resume", "release": "run_fleet_release"}[verb]
        assert args.json is True and args.socket.endswith(".sock")
        assert {name: getattr(args, name) for name in fields if name != "json"} == {k: v for k, v in fields.items() if k != "json"}
    assert parser.parse_args(["fleet", "--json", "resume", REF]).json is True  # the parent's --json is kept


@pytest.mark.parametrize("argv", [["fleet", "resume"], ["fleet", "release"], ["fleet", "halt", REF]])
def test_a_fleet_verb_without_what_it_acts_on_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2 and capsys.readouterr().err.count("\n") == 1


# --- what id1 fleet prints -------------------------------------------------------------------

def test_the_group_reads_in_80_columns_hosts_slots_line_and_failures():
    text = text_of(etcd_view())
    assert text.startswith("Fleet group web (etcd) · this host: web-02\n")
    for expected in (
        "Slots      2 of 2 held",
        "Waiting    web-02, web-03 (first in line first)",
        "Halt       a change is halted for the group once it failed on 2 hosts",
        "This host  waiting for a fleet slot (group web: 2/2 held by web-01, web-09)",
        "Hosts (3; * this host):",
        "id1 fleet release web-09 --reason TEXT",  # a holder that publishes nothing is likely gone
        "Resume     id1 fleet resume core/auth@2.0.1 --reason TEXT",
    ):
        assert expected in text, expected
    assert re.search(r"^  web-01 +host-01 +2\.6\.0 +5 +2 s ago +deploying$", text, re.M), text
    assert re.search(r"^  web-02\* +host-02 +2\.5\.0 +4 +12 s ago +waiting for a fleet slot", text, re.M), text
    assert re.search(r"^  web-01 +0 +2026-11-21 \d\d:03 \(7 min ago\) +2 s ago$", text, re.M), text
    assert re.search(r"^  web-09 +1 +2026-11-21 \d\d:00 \(2 h ago\) +no state$", text, re.M), text
    assert re.search(r"^  core/auth@2\.0\.1 +yes +web-05, web-06$", text, re.M) and re.search(r"^  core/api@2\.2\.0 +no +web-05$", text, re.M)
    assert "web-01 holds a slot" not in text  # it publishes its state: not suggested for release


def test_the_operations_guide_shows_what_id1_fleet_prints(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        view = etcd_view(failures=etcd_view()["failures"][:1])
        documented = re.search(r"^```text\n(Fleet group web \(etcd\).*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)
        assert documented and documented[1] == text_of(view) + "\n"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_more_hosts_in_line_than_shown_are_counted():
    waiting = [f"web-{n:02d}" for n in range(10, 40)]
    text = text_of(etcd_view(waiting=waiting, waiting_total=240))
    assert "web-19 and 230 more (first in line first)" in " ".join(text.split())
    assert "web-20" not in text


def test_default_fleet_ids_too_long_for_columns_are_laid_out_one_host_at_a_time():
    long_id = "9f86d081884c7d659a2feaa0c55ad015"  # a hash of /etc/machine-id, as fleet.id defaults to
    view = etcd_view(this_host=long_id, hosts=[host(long_id, "waiting for a fleet slot (group web: 2/2 held by web-01, web-09)",
                                                    instance="billing-02")])
    text = text_of(view)
    assert f"\n  {long_id}*\n      instance billing-02, platform 2.5.0, revision 4, seen 12 s ago\n" \
           f"      waiting for a fleet slot (group web: 2/2 held by web-01, web-09)\n" in text, text


def test_what_hosts_published_is_escaped_for_the_terminal():
    forged = "idle\x1b[2K\rOK all hosts healthy"
    view = etcd_view(hosts=[host("web-01", forged, instance="\u202ehost-01")], failures=[], slot_wait=None)
    text = text_of(view)
    assert "idle\\x1b[2K\\rOK all hosts healthy" in " ".join(text.split()) and "\\u202ehost-01" in text
    assert not OBEYED.findall(text)


def test_an_unreachable_lock_service_is_said_and_nothing_is_made_up():
    text = text_of(etcd_view(hosts=[], holders=[], waiting=[], waiting_total=0, failures=[], slot_wait=None,
                             note="the lock service is unreachable: http://10.0.0.5:2379: connection refused"))
    assert "Note       the lock service is unreachable: http://10.0.0.5:2379: connection" in text
    assert "held" not in text and "Hosts" not in text and "Failed" not in text


def test_fleetlock_shows_this_hosts_slot_and_says_what_it_cannot_show():
    view = {"backend": "fleetlock", "group": "web", "this_host": "9f86d081884c7d659a2feaa0c55ad015", "slots": None,
            "halt_after": None, "hosts": [], "waiting": [], "waiting_total": 0, "failures": [],
            "holders": [{"host_id": "9f86d081884c7d659a2feaa0c55ad015", "since": None, "slot": None, "instance_id": "host-01"}],
            "note": "FleetLock gives slots only: no view of the other hosts, no halt", "slot_wait": None}
    text = text_of(view)
    assert "Slots      this host holds its slot" in text
    assert "Note       FleetLock gives slots only: no view of the other hosts, no halt" in text
    assert "Hosts" not in text and "Waiting" not in text


def test_without_coordination_the_group_is_one_line_and_a_note():
    text = text_of({"backend": "none", "group": "default", "this_host": "", "slots": None, "halt_after": None, "hosts": [],
                    "holders": [], "waiting": [], "waiting_total": 0, "failures": [], "slot_wait": None,
                    "note": "fleet coordination is off (fleet.backend = none)"})
    assert text == ("Fleet group default (none) · this host: (no fleet id)\n\n"
                    "Note       fleet coordination is off (fleet.backend = none)")


# --- against a real daemon in a real etcd group ----------------------------------------------

@pytest.fixture
def etcd(tmp_path):
    cluster = EtcdCluster(tmp_path / "etcd", members=1)
    (tmp_path / "etcd").mkdir()
    try:
        yield cluster.start()
    finally:
        cluster.close()


def test_an_admin_reads_the_group_resumes_a_halted_change_and_frees_a_gone_hosts_slot(etcd):
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    [endpoint] = etcd.endpoints
    others = [EtcdCoordinator(FleetConfig(backend="etcd", group="web", etcd_endpoints=[endpoint], slots=1),
                              host_id=name, instance_id=f"instance-{name}") for name in ("host-b", "host-c")]
    site = Site()
    try:
        site.configure(extra=f'[fleet]\nbackend = "etcd"\ngroup = "web"\nid = "host-a"\n'
                             f'etcd_endpoints = ["{endpoint}"]\nslots = 1\nhalt_after = 1\n')
        site.start()
        holder, failed = others
        assert holder.acquire(should_stop=lambda: False, on_wait=lambda wait: None, give_up_after=10).held
        failed.record_failure(REF)  # host-c was rolled back from it: halted for the group
        view = poll_until(lambda: (v := site.ok("fleet", "--json").json())["hosts"] and v, what="host-a's state in etcd")
        assert [(h["host_id"], h["instance_id"], h["agent_state"]) for h in view["hosts"]] == [("host-a", "host-01", "idle")]
        assert [h["host_id"] for h in view["holders"]] == ["host-b"] and view["failures"] == [
            {"ref": REF, "hosts": ["host-c"], "halted": True}]

        shown = site.ok("fleet").out  # ok(): every line fits 80 columns
        assert "Fleet group web (etcd) · this host: host-a" in shown and "Slots      1 of 1 held" in shown
        assert re.search(r"^  host-a\* +host-01 +— +— +\d+ s ago +idle$", shown, re.M), shown
        assert "id1 fleet release host-b --reason TEXT" in shown and "id1 fleet resume core/auth@2.0.1 --reason TEXT" in shown

        resumed = site.ok("fleet", "resume", REF, "--reason", "2.0.1 fixed by the vendor's hotfix")
        assert resumed.out.strip() == f"{REF} resumed for the group (it had failed on host-c)"
        assert failed.halted() == {} and site.ok("fleet", "--json").json()["failures"] == []
        again = site.cli("fleet", "resume", REF)
        assert again.code == 5 and again.err.startswith(f"id1: {REF} is not halted for fleet group web"), again
        invalid = site.cli("fleet", "resume", "core/auth")
        assert invalid.code == 2 and invalid.out == "", invalid

        freed = site.ok("fleet", "release", "host-b", "--reason", "decommissioned")
        assert freed.out.strip() == "the slot of host-b is free"
        assert site.ok("fleet", "--json").json()["holders"] == []
        gone = site.cli("fleet", "release", "host-b")
        assert gone.code == 5 and gone.err.strip() == "id1: host host-b holds no slot of fleet group web", gone

        assert [(e["actor"], e["what"], e["why"]) for e in site.audit("fleet-resume")] == [
            ("root", REF, "2.0.1 fixed by the vendor's hotfix")]
        assert [(e["actor"], e["what"], e["why"]) for e in site.audit("fleet-release")] == [("root", "host-b", "decommissioned")]
    finally:
        site.close()
        for coordinator in others:
            coordinator.close()
