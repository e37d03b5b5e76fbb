"""A forced security fix and a fleet slot that never frees (DESIGN.md §12): a real daemon waits
``critical_wait`` for the slot a host that is gone still holds, says so while it waits, then
deploys the fix without a slot, audited (``fleet-slot-skipped``) and alerted as a forced patch;
the gone host's slot is left alone."""

from __future__ import annotations

from agent.fleet.config import FleetConfig
from tests.daemon.site import Release, Site
from tests.fleet.fleet_site import etcd_table
from tests.fleet.helpers import holder_hosts
from tests.fleet.holder import Holder

CRITICAL_WAIT_S = 4


def test_a_forced_fix_waits_critical_wait_for_a_slot_then_goes_ahead_audited(etcd_cluster, group):
    site = Site()
    holder = None
    try:
        site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
        site.configure("frozen", extra=etcd_table("h1", group, etcd_cluster.endpoints, slots=1,
                                                    critical_wait=f"{CRITICAL_WAIT_S}s"))
        site.start()
        # Frozen, nothing installed: nothing deploys until an admin says so.
        site.ok("policy", "set", "auto-update", "--reason", "first install")
        site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")
        site.ok("policy", "set", "frozen", "--reason", "freeze")
        site.wait_for(lambda s: s["channel"] == "frozen", what="the freeze")

        holder = Holder("gone-host", FleetConfig(backend="etcd", group=group, etcd_endpoints=etcd_cluster.endpoints, slots=1))
        site.publish(2, {"1.0.0": Release(), "1.0.1": Release()}, {"1.0.0": "1.0.0"}, advisory="<1.0.1")
        checked = site.ok("check")  # answers once the deployment has ended: after the critical wait
        assert "deployed revision 2" in checked.out, checked.out

        status = site.status()
        [running] = status["capabilities"]
        assert running["version"] == "1.0.1" and site.unit_active() and site.answers_http() == 200
        [skipped] = site.audit("fleet-slot-skipped")
        assert skipped["actor"] == "agent"
        assert f"no slot of group {group} after {CRITICAL_WAIT_S} s" in skipped["why"], skipped
        assert "held by gone-host" in skipped["why"], skipped
        [deployment] = [d for d in site.get("/deployments").json() if d["id"] != "dep-1"]
        steps = [entry["state"] for entry in deployment["journal"]]
        assert steps.index("waiting-for-slot") < steps.index("slot-held") < steps.index("switching")
        waited = [entry for entry in deployment["journal"] if entry["state"] in ("waiting-for-slot", "slot-held")]
        assert "a forced security fix" in waited[0]["detail"] and "goes ahead without one" in waited[1]["detail"]
        log = site.log.read_text()
        assert f"waiting for a fleet slot (group {group}: 1/1 held by gone-host)" in log, log
        assert holder_hosts(etcd_cluster.endpoints, group) == ["gone-host"]  # not taken from the gone host
    finally:
        if holder is not None:
            holder.kill()
        site.close()
