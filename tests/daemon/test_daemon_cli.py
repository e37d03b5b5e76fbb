"""The ``id1`` verbs against the real daemon (DESIGN.md §7, §9): a subprocess serving a temp
socket, a signed feed from a loopback server, units run as real processes by systemctl3.

Each test drives the host as an admin would over SSH and asserts what the admin relies on:
what the verbs print, their exit statuses, what runs afterwards, and what the audit log says.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.daemon.site import REPO, Release, Site, poll_until, run_cli
from tests.test_engine import SYSTEMCTL3

ADVISORY = "ID1-SA-2026-0001"


@pytest.fixture
def site():
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    box = Site()
    try:
        yield box
    finally:
        box.stop()
        print(f"--- agent log ---\n{box.log.read_text()[-6000:] if box.log.exists() else '(none)'}")  # shown if it failed
        box.close()


def start_manual_host_with_revision_1(site: Site) -> None:
    """manual-approval host running revision 1 (core/auth 1.0.0), approved with `id1 approve --yes`."""
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    site.configure("manual-approval")
    site.start()
    site.wait_for(lambda s: s["pending_approval"], what="the first approval")
    site.ok("approve", "--yes")
    site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")


# --- approvals -------------------------------------------------------------------------------

def test_approve_at_the_prompt_deploys_and_no_does_nothing(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"}, notes={"1.0.0": "First release: sign-in for everyone."})
    site.configure("manual-approval")
    site.start()
    status = site.wait_for(lambda s: s["pending_approval"], what="a pending approval")
    approval = status["pending_approval"]["id"]

    shown = site.ok("updates")
    assert re.search(r"core/auth\s+\(none\)\s+1\.0\.0\s+latest\s+await-approval", shown.out), shown.out
    assert f"id1 approve {approval}" in shown.out
    assert site.ok("updates", "--json").json()["approval"]["id"] == approval
    human = site.ok("status").out
    assert f"{approval}: 1 change awaits approval" in human and f"id1 approve {approval}" in human

    refused = site.cli("approve", stdin="n\n")
    assert refused.code == 1, refused
    assert re.search(r"core/auth\s+\(none\)\s+1\.0\.0\s+latest", refused.out), refused.out
    assert "First release: sign-in for everyone." in refused.out
    assert refused.out.rstrip().endswith(f"Approve {approval}? [y/N]")
    assert refused.err.strip() == f"id1: {approval} not approved; nothing was changed"
    assert site.cli("approve", stdin="").code == 1  # no answer at all (EOF) is a no
    assert site.status()["pending_approval"]["id"] == approval
    assert not site.audit("approve")

    accepted = site.cli("approve", "--comment", "change CHG-1", stdin="y\n")
    assert accepted.code == 0, accepted
    assert f"{approval} approved by root" in accepted.out
    status = site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None and not s["changes"], what="revision 1 to run")
    assert [(c["capability"], c["version"]) for c in status["capabilities"]] == [("core/auth", "1.0.0")]
    assert status["pending_approval"] is None and status["changes"] == []
    assert site.unit_active() and site.answers_http() == 200
    [entry] = site.audit("approve")
    assert (entry["actor"], entry["what"], entry["why"]) == ("root", approval, "change CHG-1")


def test_reject_is_audited_and_a_newer_target_supersedes_the_pending_one(site):
    start_manual_host_with_revision_1(site)

    site.publish(2, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
    assert "1 change(s) await approval" in site.ok("check").out
    pending = site.status()["pending_approval"]["id"]
    no_reason = site.cli("reject")
    assert no_reason.code == 2 and "--reason" in no_reason.err
    rejected = site.ok("reject", "--reason", "not during the audit week")
    assert f"{pending} rejected by root" in rejected.out
    [entry] = site.audit("reject")
    assert (entry["actor"], entry["what"], entry["why"]) == ("root", pending, "not during the audit week")
    site.ok("check")
    assert site.status()["pending_approval"] is None  # a rejected target is not asked for again
    again = site.cli("approve", "--yes")
    assert again.code == 4 and "nothing awaits approval" in again.err
    unknown = site.cli("approve", "approval-99", "--yes")
    assert unknown.code == 4 and "approval-99" in unknown.err

    site.publish(3, {"1.0.0": Release(), "1.1.0": Release(), "1.2.0": Release()}, {"1.0.0": "1.0.0", "1.2.0": "1.2.0"})
    site.ok("check")
    older = site.status()["pending_approval"]["id"]
    site.publish(4, {"1.0.0": Release(), "1.3.0": Release()}, {"1.0.0": "1.0.0", "1.3.0": "1.3.0"})
    site.ok("check")
    newer = site.status()["pending_approval"]["id"]
    assert newer != older
    assert re.search(r"core/auth\s+1\.0\.0\s+1\.3\.0", site.ok("updates").out)
    superseded = [e for e in site.audit("approval-superseded") if e["what"] == older]
    assert superseded and newer in superseded[0]["why"], site.audit("approval-superseded")
    stale = site.cli("approve", older, "--yes")
    assert stale.code == 5 and older in stale.err and "superseded" in stale.err, stale
    assert site.status()["revision"] == 1


# --- pins ------------------------------------------------------------------------------------

def test_pins_steer_the_plan_and_config_pins_are_not_the_apis(site):
    site.publish(1, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
    site.configure("manual-approval", extra='[[pins]]\nlevel = "platform"\nname = "platform"\nversion = ">=1.0"\nreason = "certified"\n')
    site.start()
    site.wait_for(lambda s: s["pending_approval"], what="a pending approval")
    assert re.search(r"core/auth\s+\(none\)\s+1\.1\.0\s+pin:platform", site.ok("updates").out)

    pinned = site.ok("pin", "capability", "core/auth", "1.0.0", "--reason", "SSO certified on 1.0 only")
    assert "pinned capability core/auth to 1.0.0" in pinned.out

    def shows_pin():
        out = site.ok("updates").out
        return re.search(r"core/auth\s+\(none\)\s+1\.0\.0\s+pin:capability\s+await-approval", out) and out
    out = poll_until(shows_pin, timeout=20, what="id1 updates to follow the pin")
    assert "capability core/auth 1.0.0 (api): SSO certified on 1.0 only" in out
    assert "platform platform >=1.0 (config): certified" in out
    [entry] = site.audit("pin")
    assert entry["why"] == "SSO certified on 1.0 only" and "core/auth" in entry["what"]

    invalid = site.cli("pin", "capability", "core/auth", "1.x")
    assert invalid.code == 2 and invalid.out == "", invalid
    assert invalid.err.count("\n") == 1 and invalid.err.startswith("id1: ") and "version" in invalid.err, invalid.err
    bad_level = site.cli("pin", "cluster", "core", "1.0.0")
    assert bad_level.code == 2 and "cluster" in bad_level.err

    config_pin = site.cli("pin", "platform", "platform", "1.0.0")
    assert config_pin.code == 5, config_pin
    assert "pinned in the config file" in config_pin.err and str(site.config) in config_pin.err
    assert site.cli("unpin", "platform", "platform").code == 5

    assert "unpinned capability core/auth" in site.ok("unpin", "capability", "core/auth").out
    poll_until(lambda: re.search(r"core/auth\s+\(none\)\s+1\.1\.0\s+pin:platform", site.ok("updates").out), timeout=20,
               what="id1 updates to follow policy again")
    missing = site.cli("unpin", "capability", "core/auth")
    assert missing.code == 4 and "not pinned" in missing.err
    assert site.ok("history").out.startswith("No revision yet")


# --- policy ----------------------------------------------------------------------------------

def test_switching_to_auto_update_deploys_what_waited_for_approval(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    site.configure("manual-approval")
    site.start()
    approval = site.wait_for(lambda s: s["pending_approval"], what="a pending approval")["pending_approval"]["id"]
    shown = site.ok("policy", "show").out
    assert re.search(r"^Channel\s+manual-approval$", shown, re.M), shown

    changed = site.ok("policy", "set", "auto-update", "--reason", "lab host")
    assert "set to auto-update" in changed.out
    status = site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="the update to deploy by itself")
    assert status["channel"] == "auto-update" and status["pending_approval"] is None
    assert site.unit_active()
    assert not site.audit("approve")  # nobody approved it
    assert any(e["what"] == approval for e in site.audit("approval-superseded"))
    [entry] = site.audit("policy")
    assert "manual-approval → auto-update" in entry["what"] and entry["why"] == "lab host"
    policy = site.ok("policy", "--json").json()
    assert policy["channel"] == "auto-update" and policy["policies"][0]["channel"] == "auto-update"
    assert re.search(r"^Channel\s+auto-update$", site.ok("policy").out, re.M)
    suite = site.ok("policy", "set", "frozen", "--suite", "core", "--json").json()
    assert suite["suites"] == {"core": "frozen"}
    assert site.cli("policy", "set", "sometimes").code == 2


# --- rollback --------------------------------------------------------------------------------

def test_rollback_to_revision_1_runs_its_manifest_and_blocks_what_it_left(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    site.configure("auto-update")
    site.start()
    site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")
    site.publish(2, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
    assert "deployed revision 2" in site.ok("check").out

    declined = site.cli("rollback", "--to", "1", stdin="n\n")
    assert declined.code == 1 and "not rolled back" in declined.err, declined
    assert re.search(r"core/auth\s+1\.1\.0\s+1\.0\.0", declined.out) and "Roll back to revision 1? [y/N]" in declined.out
    assert site.status()["revision"] == 2

    done = site.ok("rollback", "--to", "1", "--yes", "--reason", "1.1.0 breaks SSO")
    assert "revision 3 is running" in done.out
    status = site.status()
    assert status["revision"] == 3 and status["capabilities"][0]["version"] == "1.0.0"
    assert site.unit_active() and site.answers_http() == 200
    history = site.ok("history", "--json").json()
    manifests = {r["number"]: r["manifest_sha256"] for r in history["revisions"]}
    assert manifests[3] == manifests[1] != manifests[2]
    assert history["rollbacks"][0]["reason"] == "1.1.0 breaks SSO"
    human = site.ok("history").out
    assert re.search(r"^3\*\s+1\.0\.0 .*rollback to 1 by root: 1\.1\.0 breaks\s+SSO$", human, re.M), human
    assert re.search(r"^2\s+1\.1\.0", human, re.M) and re.search(r"^1\s+1\.0\.0", human, re.M)
    assert "core/auth@1.1.0" in site.ok("updates").out  # listed as blocked
    assert site.ok("check") and site.status()["revision"] == 3  # not taken again automatically
    [entry] = site.audit("rollback")
    assert entry["why"] == "1.1.0 breaks SSO" and "2 → 1" in entry["what"]
    same = site.cli("rollback", "--to", "3", "--yes")
    assert same.code == 5 and "running already" in same.err
    assert site.cli("rollback", "--to", "9", "--yes").code == 4


# --- security --------------------------------------------------------------------------------

def test_a_critical_advisory_is_fixed_on_a_frozen_host_without_approval(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    site.configure("auto-update")
    site.start()
    site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")
    site.ok("policy", "set", "frozen", "--reason", "quarter-end freeze")
    site.wait_for(lambda s: s["channel"] == "frozen", what="the freeze")

    site.publish(2, {"1.0.0": Release(), "1.0.1": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"},
                 advisory="<1.0.1")
    checked = site.ok("check")
    assert "deployed revision 2" in checked.out, checked.out
    status = site.status()
    assert status["revision"] == 2 and status["pending_approval"] is None
    [running] = status["capabilities"]
    assert (running["version"], running["source"]) == ("1.0.1", f"security:{ADVISORY}")
    assert [c["to"] for c in status["changes"]] == ["1.1.0"] and status["changes"][0]["action"] == "hold"
    assert site.unit_active() and site.answers_http() == 200
    [forced] = site.audit("forced-patch")
    assert forced["actor"] == "agent" and "1.0.0 → 1.0.1" in forced["what"] and ADVISORY in forced["why"]
    assert not site.audit("approve")

    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})  # an old feed replayed by a hostile mirror
    replayed = site.cli("check")
    assert replayed.code == 3 and replayed.err.startswith("id1: ") and "lower than the accepted 2" in replayed.err, replayed
    assert site.audit("feed-rejected") and site.status()["revision"] == 2


# --- stopping and reloading ------------------------------------------------------------------

def test_sigterm_during_a_slow_health_check_stops_safely_and_the_next_start_converges(site):
    start_manual_host_with_revision_1(site)
    site.publish(2, {"1.0.0": Release(), "1.1.0": Release(start_delay_s=6, timeout_s=600)}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
    site.ok("check")
    site.ok("approve", "--yes")
    site.wait_for(lambda s: (s["deployment"] or {}).get("state") == "verifying", timeout=90, what="the health check to start")

    asked = time.monotonic()
    site.send(signal.SIGTERM)
    assert site.process.wait(120) == 0
    stopped_in = time.monotonic() - asked
    print(f"SIGTERM during the health check: the agent exited 0 after {stopped_in:.1f} s")
    # The health check would last 600 s; stopping undoes the deployment instead (a few seconds
    # here, 24 s seen on a loaded 2-core CI machine): the bound tells the two apart, not speed.
    assert stopped_in < 120, "SIGTERM waited for the 600 s health check"
    assert not site.socket.exists()
    down = site.cli("status")
    assert down.code == 69 and "not running" in down.err
    log = site.log.read_text()
    assert "Traceback" not in log and "deployment-interrupted" in log, log

    site.start()  # finishes what was approved: the slow release, this time waited for
    # A deadline, not a measurement: generous for a loaded 2-core machine (the release starts in 6 s)
    status = site.wait_for(lambda s: s["revision"] == 2 and s["deployment"] is None, timeout=150, what="the approved release")
    assert status["capabilities"][0]["version"] == "1.1.0" and site.unit_active() and site.answers_http() == 200
    assert not site.ok("updates", "--json").json()["problems"]
    assert "core/auth@1.1.0" not in site.ok("updates").out  # an interrupted release is not blocked
    approvals = {a["id"]: a["status"] for a in site.get("/approvals").json()}
    assert approvals["approval-2"] == "deployed", approvals  # the approval survived the stop and was carried out
    [interrupted] = site.audit("deployment-interrupted")
    assert "1.0.0 → 1.1.0" in interrupted["what"]
    assert site.ok("audit", "verify")


def test_sighup_refuses_a_bad_config_and_applies_a_good_one(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    site.configure("manual-approval")
    site.start()
    site.wait_for(lambda s: s["pending_approval"], what="a pending approval")

    good = site.config.read_text()
    site.config.write_text(good + "[policy\n")  # not TOML
    site.send(signal.SIGHUP)
    poll_until(lambda: site.audit("config-rejected"), timeout=20, what="the reload to be refused")
    status = site.status()
    assert status["channel"] == "manual-approval"
    assert any("config reload refused" in w and "not valid TOML" in w for w in status["warnings"]), status["warnings"]
    assert "config reload refused" in site.log.read_text()

    site.config.write_text(good.replace('channel = "manual-approval"', 'chanel = "auto-update"'))
    site.send(signal.SIGHUP)
    poll_until(lambda: len(site.audit("config-rejected")) == 2, timeout=20, what="the second refusal")
    assert "policy.chanel" in site.audit("config-rejected")[0]["why"]
    assert site.status()["channel"] == "manual-approval" and site.status()["revision"] is None

    site.config.write_text(site.config_text("auto-update"))
    site.send(signal.SIGHUP)
    poll_until(lambda: site.audit("config-reloaded"), timeout=20, what="the good config to be applied")
    status = site.status()
    assert status["channel"] == "auto-update"
    assert not any("config reload refused" in w for w in status["warnings"]), status["warnings"]
    site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="auto-update to deploy")
    assert site.process.poll() is None


# --- the agent down --------------------------------------------------------------------------

def test_without_the_agent_every_verb_says_so_in_one_line(tmp_path):
    missing = tmp_path / "run" / "agent.sock"
    env = {**os.environ, "PYTHONPATH": str(REPO), "ID1_SOCKET": str(missing)}
    done = subprocess.run([sys.executable, "-m", "agent.cli.main", "status"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert done.returncode == 69 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("id1: the agent is not running") and str(missing) in done.stderr

    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as left_over:
        left_over.bind(str(stale))  # a socket file nobody listens on: an agent that died
    for argv in (["status"], ["approve", "--yes"], ["rollback", "--to", "1", "--yes"], ["audit", "verify"], ["updates", "--json"]):
        result = run_cli([*argv, "--socket", str(stale)])
        assert result.code == 69 and result.out == "", (argv, result)
        assert result.err.count("\n") == 1 and "not running" in result.err and str(stale) in result.err, result.err
    before_verb = run_cli(["--socket", str(missing), "history"])
    assert before_verb.code == 69 and str(missing) in before_verb.err


# --- the audit log ---------------------------------------------------------------------------

def test_audit_verify_names_an_edited_entry(site):
    site.publish(1, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
    site.configure("manual-approval")
    site.start()
    site.wait_for(lambda s: s["pending_approval"], what="a pending approval")
    site.ok("pin", "capability", "core/auth", "1.0.0", "--reason", "certified")
    site.ok("policy", "set", "frozen", "--reason", "freeze")
    site.ok("unpin", "capability", "core/auth", "--reason", "done")

    intact = site.ok("audit", "verify")
    assert intact.out.startswith("audit log intact:"), intact.out
    listed = site.ok("audit", "--actor", "root").out
    assert listed.index("pin:") < listed.index("unpin:") and "why: freeze" in listed
    assert len(site.ok("audit", "--limit", "1", "--json").json()) == 1

    log = site.state / "audit" / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines) if '"action":"pin"' in line or '"action": "pin"' in line)
    edited = lines[number].replace('"certified"', '"approved by the CISO"')
    assert edited != lines[number]
    with open(log, "r+") as file:  # in place, as an intruder with a text editor would
        file.write("".join([*lines[:number], edited, *lines[number + 1:]]))
        file.truncate()

    broken = site.cli("audit", "verify")
    assert broken.code == 1, broken
    assert f"audit.jsonl line {number + 1}:" in broken.out, broken.out
    assert broken.err.startswith("id1: the audit log is broken") and broken.err.count("\n") == 1
    as_json = site.cli("audit", "verify", "--json")
    assert as_json.code == 1 and as_json.json()["ok"] is False and as_json.json()["problems"]
    report = site.ok("report")
    assert "Audit log: DAMAGED" in report.out
    written = site.root / "report.json"
    site.ok("report", "--format", "json", "--output", str(written))
    assert '"ok": false' in written.read_text()
