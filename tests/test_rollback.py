"""Rollback to a kept revision and retention, with the engine's real parts (systemctl3, loopback
artifacts, the real store): what an admin's `id1 rollback --to N` does on the host."""

from __future__ import annotations

import pytest

from agent.deploy.engine import RESTARTING, VERIFYING, Engine, RollbackRefused
from agent.deploy.releases import ReleaseLayout
from agent.deploy.retention import apply_retention
from agent.deploy.rollback import check_rollback
from agent.errors import StoreError
from agent.planning.manifest import Manifest
from agent.store import BlockSource, DeploymentStatus, RollbackStatus
from tests.builders import FeedBuilder
from tests.test_engine import Crash, host  # noqa: F401  (the fixture)


def catalog_of(*manifests: Manifest, advisories: tuple[tuple[str, str, str], ...] = ()):
    """A feed offering exactly the releases the manifests deploy (same artifacts)."""
    feed = FeedBuilder(serial=9)
    seen = set()
    for manifest in manifests:
        for ref, entry in manifest.capabilities().items():
            if (ref, entry.version) in seen:
                continue
            seen.add((ref, entry.version))
            suite, _, name = ref.partition("/")
            feed.data["capabilities"].append({"suite": suite, "name": name, "version": entry.version,
                                              "artifact": entry.artifact.model_dump(), "units": entry.units})
    for advisory_id, ref, affected in advisories:
        feed.advisory(advisory_id, ref, affected)
    return feed.catalog()


def deployed(host, versions, serial):
    result = host.engine().deploy(host.manifest(versions), feed_serial=serial)
    assert result.status == DeploymentStatus.SUCCEEDED, result.error
    return result.revision


def test_rollback_to_revision_1_restarts_only_what_changes_and_blocks_what_it_left(host):
    deployed(host, {"core/auth": "1.0.0", "core/api": "2.0.0"}, 1)
    deployed(host, {"core/auth": "1.1.0", "core/api": "2.0.0"}, 2)
    api_starts, auth_starts = host.starts("core/api"), host.starts("core/auth")

    result = host.engine().rollback(1, catalog=None, reason="1.1.0 logs people out", actor="alice")

    assert result.deployment.status == DeploymentStatus.SUCCEEDED and result.deployment.revision == 3
    assert ReleaseLayout(host.state_dir).current_version("core/auth") == "1.0.0"
    assert host.services.is_active("id1-core-auth.service")
    assert host.starts("core/auth") == auth_starts + 1 and host.starts("core/api") == api_starts
    assert host.store.revisions.get(3).manifest_sha256 == host.store.revisions.get(1).manifest_sha256
    operation = host.store.rollbacks.list()[0]
    assert (operation.status, operation.actor, operation.from_revision, operation.to_revision) == (RollbackStatus.SUCCEEDED, "alice", 2, 1)
    assert operation.completed_at is not None and operation.reason == "1.1.0 logs people out"
    blocked = {item.ref: item for item in host.store.blocked.list()}
    assert set(blocked) == {"core/auth@1.1.0"} and blocked["core/auth@1.1.0"].source == BlockSource.ROLLBACK
    assert "alice" in blocked["core/auth@1.1.0"].reason


def test_rolling_back_to_the_running_revision_or_one_not_kept_is_refused(host):
    deployed(host, {"core/auth": "1.0.0"}, 1)
    with pytest.raises(RollbackRefused, match="revision 1 is what is running already"):
        host.engine().rollback(1, catalog=None, reason="", actor="root")
    with pytest.raises(StoreError, match="revision 7 is not kept"):
        host.engine().rollback(7, catalog=None, reason="", actor="root")
    assert host.store.rollbacks.list() == []


def test_an_artifact_gone_from_the_host_must_still_be_in_the_feed(host):
    deployed(host, {"core/auth": "1.0.0"}, 1)
    first = host.manifest({"core/auth": "1.0.0"})
    deployed(host, {"core/auth": "1.1.0"}, 2)
    layout = ReleaseLayout(host.state_dir)
    layout.remove_release("core/auth", "1.0.0")
    host.cache.remove_except([host.store.revisions.latest().manifest["suites"]["core"]["capabilities"]["auth"]["artifact"]["sha256"]])

    check = host.engine().check_rollback(1, catalog=None)
    assert check.problems == ("core/auth 1.0.0: its artifact is not on this host and no feed has been accepted yet",)
    with pytest.raises(RollbackRefused, match="not on this host"):
        host.engine().rollback(1, catalog=None, reason="", actor="root")

    feed = catalog_of(first)
    assert host.engine().check_rollback(1, catalog=feed).problems == ()
    result = host.engine().rollback(1, catalog=feed, reason="back", actor="root")  # downloaded again
    assert result.operation.status == RollbackStatus.SUCCEEDED
    assert layout.current_version("core/auth") == "1.0.0"


def test_a_revision_affected_by_an_enforced_advisory_needs_force_which_is_recorded(host):
    deployed(host, {"core/auth": "1.0.0"}, 1)
    deployed(host, {"core/auth": "1.0.1"}, 2)
    feed = catalog_of(host.manifest({"core/auth": "1.0.0"}), host.manifest({"core/auth": "1.0.1"}),
                      advisories=(("ID1-SA-2026-0001", "core/auth", "<1.0.1"),))

    with pytest.raises(RollbackRefused, match=r"ID1-SA-2026-0001 \(core/auth 1.0.0, critical\).*force") as refused:
        host.engine().rollback(1, catalog=feed, reason="regression", actor="root")
    assert refused.value.check.advisories == ("ID1-SA-2026-0001 (core/auth 1.0.0, critical)",)
    assert host.store.rollbacks.list() == [] and ReleaseLayout(host.state_dir).current_version("core/auth") == "1.0.1"
    # A lower threshold than the advisory's severity does not count it as enforced... a higher one does not either:
    assert host.engine().check_rollback(1, catalog=feed, enforce_severity="critical").advisories

    result = host.engine().rollback(1, catalog=feed, reason="regression", actor="root", force=True)
    assert result.operation.status == RollbackStatus.SUCCEEDED
    assert "forced past ID1-SA-2026-0001" in result.operation.reason
    assert "core/auth@1.0.1" in host.store.blocked.refs()


def test_a_rollback_that_fails_leaves_the_running_revision_and_says_why(host):
    deployed(host, {"core/auth": "1.0.0"}, 1)
    deployed(host, {"core/auth": "1.1.0"}, 2)
    old = host.store.revisions.get(1).manifest["suites"]["core"]["capabilities"]["auth"]["artifact"]["sha256"]
    ReleaseLayout(host.state_dir).remove_release("core/auth", "1.0.0")
    host.cache.path_for(old).write_bytes(b"not a tarball")  # damaged in the cache: fetched again…
    host.server.publish("core-auth-1.0.0.tar.gz", b"tampered")  # …from a mirror that now serves other bytes

    result = host.engine().rollback(1, catalog=None, reason="try", actor="root")

    assert result.deployment.status in (DeploymentStatus.FAILED, DeploymentStatus.ROLLED_BACK)
    assert result.operation.status == RollbackStatus.FAILED and "failed:" in result.operation.reason
    assert ReleaseLayout(host.state_dir).current_version("core/auth") == "1.1.0"
    assert host.services.is_active("id1-core-auth.service")
    assert host.store.revisions.latest().number == 2
    assert "core/auth@1.1.0" not in host.store.blocked.refs()


@pytest.mark.parametrize("step", [RESTARTING, VERIFYING])
def test_an_agent_killed_during_a_rollback_settles_it_on_the_next_start(host, step):
    deployed(host, {"core/auth": "1.0.0"}, 1)
    deployed(host, {"core/auth": "1.1.0"}, 2)

    def crash(state):
        if state == step:
            raise Crash(state)

    with pytest.raises(Crash):
        host.engine(crash).rollback(1, catalog=None, reason="try", actor="root")
    assert host.store.rollbacks.list()[0].status == RollbackStatus.IN_PROGRESS

    host.engine().resume()

    # The rollback's deployment is run again after the crash (a crash is not a bad release), so
    # the rollback is carried out: the host runs revision 1's manifest as revision 3.
    operation = host.store.rollbacks.list()[0]
    assert operation.status == RollbackStatus.SUCCEEDED, operation.reason
    assert ReleaseLayout(host.state_dir).current_version("core/auth") == "1.0.0"
    assert host.store.revisions.latest().number == 3
    assert "core/auth@1.1.0" in host.store.blocked.refs()  # rolled back from
    assert host.services.is_active("id1-core-auth.service")


def test_a_rollback_whose_deployment_committed_before_a_crash_is_settled_as_succeeded(host):
    deployed(host, {"core/auth": "1.0.0"}, 1)
    deployed(host, {"core/auth": "1.1.0"}, 2)
    engine = host.engine()
    operation = host.store.rollbacks.add(instance_id="host-01", from_version="1.0.0", to_version="1.0.0",
                                         from_revision=2, to_revision=1, reason="crash test", actor="root")
    engine.deploy(Manifest.model_validate(host.store.revisions.get(1).manifest), feed_serial=1)  # …and then the agent died

    engine.resume()

    settled = host.store.rollbacks.get(operation.id)
    assert settled.status == RollbackStatus.SUCCEEDED
    assert "core/auth@1.1.0" in host.store.blocked.refs()


def test_retention_keeps_the_newest_revisions_and_only_what_they_use(host):
    for serial, version in enumerate(["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"], start=1):
        deployed(host, {"core/auth": version, "core/api": "2.0.0"}, serial)
    layout = ReleaseLayout(host.state_dir)
    assert layout.kept_versions("core/auth") == ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"]
    cached = len(list(host.cache.cache_dir.iterdir()))

    report = apply_retention(host.store, layout, host.cache, keep=2)

    assert report.revisions == (1, 2, 3)
    assert [revision.number for revision in host.store.revisions.list()] == [5, 4]
    assert layout.kept_versions("core/auth") == ["1.3.0", "1.4.0"] and layout.kept_versions("core/api") == ["2.0.0"]
    assert sorted(report.releases) == ["core/auth@1.0.0", "core/auth@1.1.0", "core/auth@1.2.0"]
    assert len(report.artifacts) == 3 and len(list(host.cache.cache_dir.iterdir())) == cached - 3
    # Manifest files stay while finished deployments (kept for history) still refer to them.
    assert host.services.is_active("id1-core-auth.service")
    with pytest.raises(StoreError, match="revision 1 is not kept"):
        host.engine().check_rollback(1, catalog=None)
    assert host.engine().rollback(4, catalog=None, reason="", actor="root").operation.status == RollbackStatus.SUCCEEDED
    assert apply_retention(host.store, layout, host.cache, keep=2).releases == ()  # 1.3.0 and 1.4.0 both still kept


def test_check_rollback_reports_a_requirement_the_old_revision_no_longer_meets():
    def manifest(auth, api, requires=None):
        entry = lambda version, req=None: {"version": version, "source": "latest", "units": [], "requires": req,
                                           "artifact": {"url": "a", "sha256": "0" * 64, "size": 1}}
        return Manifest.model_validate({"platform": "1.0.0", "suites": {"core": {"version": "1.0.0", "capabilities": {
            "auth": entry(auth, requires), "api": entry(api)}}}})

    target = manifest("1.0.0", "2.0.0", {"capabilities": {"core/api": ">=3"}})
    check = check_rollback(target, manifest("1.1.0", "2.0.0"), to_revision=1, from_revision=2,
                           has_release=lambda ref, entry: True, catalog=None, enforce_severity="critical")
    assert check.problems == ("core/auth 1.0.0 requires core/api >=3 (has 2.0.0)",)
    assert check.refusal(force=True).startswith("cannot roll back to revision 1: core/auth 1.0.0 requires")


def test_drift_between_the_host_and_the_running_revision_is_found(host):
    deployed(host, {"core/auth": "1.0.0", "core/api": "2.0.0"}, 1)
    deployed(host, {"core/auth": "1.1.0", "core/api": "2.0.0"}, 2)
    assert host.engine().drift() == {}
    ReleaseLayout(host.state_dir).switch_current("core/auth", "1.0.0")  # as a restored older state would leave it
    assert host.engine().drift() == {"core/auth": ("1.0.0", "1.1.0")}
