"""Units a capability owns (DESIGN.md §6): the naming rule in the feed, what a release may carry,
and the engine enabling, reconciling and removing them, forward and on undo (real units run by
systemctl3; the same behaviour on real systemd is in tests/systemd)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from agent.deploy.services import ServiceController
from agent.deploy.units import MARKER, UnitFolder, owner_of, release_unit_files
from agent.errors import FeedInvalid, UnitError
from agent.feed.catalog import parse_feed
from agent.feed.units import unit_file_name, unit_name_problem
from agent.planning.manifest import Manifest
from agent.store import DeploymentStatus
from tests.builders import FeedBuilder
from tests.hosts.vendor import Release, Service, tarball
from tests.ports import free_port
from tests.test_engine import Host, host  # noqa: F401  (the fixture)

WEB, CLEANUP, WORKER = "id1-core-web.service", "id1-core-web-cleanup.service", "id1-core-web-worker.service"

# ── the naming rule ──────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("unit", ["id1-core-auth.service", "id1-core-auth-worker.timer", "id1-core-auth@blue.service",
                                  "id1-core-auth-db@main.socket", "id1-core-auth.target", "id1-core-auth.path"])
def test_units_named_for_their_capability_are_its_own(unit):
    assert unit_name_problem("core/auth", unit) is None


@pytest.mark.parametrize(("unit", "says"), [
    ("ssh.service", "not a unit core/auth may own"),
    ("id1-core-api.service", "not a unit core/auth may own"),
    ("id1-core-authx.service", "not a unit core/auth may own"),
    ("id1-core-auth.mount", "TYPE one of service, socket, timer, path, target"),
    ("id1-core-auth@.service", "is a template: list its instances"),
    ("-id1-core-auth.service", "not a unit core/auth may own"),
    ("id1-core-auth-" + "x" * 300 + ".service", "longer than 255"),
])
def test_other_units_are_not(unit, says):
    assert says in unit_name_problem("core/auth", unit)


def test_a_template_instance_is_loaded_from_its_template_file():
    assert unit_file_name("id1-core-api@blue.service") == "id1-core-api@.service"
    assert unit_file_name("id1-core-api.service") == "id1-core-api.service"


def test_a_feed_naming_units_a_capability_does_not_own_is_invalid():
    feed = (FeedBuilder().capability("core/auth", "1.0.0", units=["id1-core-auth.service", "ssh.service", "id1-core-auth.service"])
            .capability("core/auth-worker", "1.0.0", units=["id1-core-auth-worker.service"])
            .capability("core/auth", "1.1.0", units=["id1-core-auth-worker.service"])
            .suite("core", "1.0.0", {"auth": "1.0.0", "auth-worker": "1.0.0"}).platform("1.0.0", {"core": "1.0.0"}))
    with pytest.raises(FeedInvalid) as raised:
        parse_feed(feed.bytes())
    said = str(raised.value)
    assert "capabilities[0].units[1]: 'ssh.service' is not a unit core/auth may own" in said
    assert "capabilities[0].units[2]: id1-core-auth.service is listed twice" in said
    assert "capabilities[2].units[0]: id1-core-auth-worker.service is already a unit of core/auth-worker" in said


# ── what a release may carry ─────────────────────────────────────────────────────────────────


def release_folder(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    folder = tmp_path / "release"
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    (folder / "systemd").mkdir(parents=True, exist_ok=True)
    return folder


UNIT_TEXT = "[Service]\nExecStart=@CURRENT@/bin/run --state @STATE_DIR@\n[Install]\nWantedBy=multi-user.target\n"


def test_a_release_installs_exactly_the_units_it_lists(tmp_path):
    folder = release_folder(tmp_path, {f"systemd/{WEB}": UNIT_TEXT, "systemd/id1-core-web@.service": UNIT_TEXT})
    texts = release_unit_files(folder, "core/web", "1.0.0", [WEB, "id1-core-web@blue.service", "id1-core-web@green.service"])
    assert sorted(texts) == [WEB, "id1-core-web@.service"]


@pytest.mark.parametrize(("files", "units", "says"), [
    ({f"systemd/{WEB}": UNIT_TEXT, "systemd/ssh.service": UNIT_TEXT}, [WEB],
     "core/web 1.0.0 carries systemd/ssh.service, which its release does not list in units: refused"),
    ({f"systemd/{WEB}": UNIT_TEXT, f"systemd/{WEB}.d/override.conf": "[Service]\n"}, [WEB],
     f"carries systemd/{WEB}.d, which its release does not list"),
    ({}, [WEB], f"lists {WEB} in units but its artifact has no file systemd/{WEB}"),
    ({f"systemd/{WEB}": UNIT_TEXT + "Alias=ssh.service\n"}, [WEB], "has Alias=ssh.service, a unit that is not core/web's own"),
    ({f"systemd/{WEB}": UNIT_TEXT + "Also=getty@tty1.service\n"}, [WEB], "has Also=getty@tty1.service"),
    ({f"systemd/{WEB}": b"[Service]\nExecStart=/bin/\xff\n"}, [WEB], f"systemd/{WEB} is not UTF-8 text"),
    ({f"systemd/{WEB}": UNIT_TEXT}, ["ssh.service"], "'ssh.service' is not a unit core/web may own"),
])
def test_a_release_that_carries_or_lists_another_unit_is_refused(tmp_path, files, units, says):
    folder = release_folder(tmp_path, files)
    with pytest.raises(UnitError, match=None) as raised:
        release_unit_files(folder, "core/web", "1.0.0", units)
    assert says in str(raised.value)


def test_aliases_of_its_own_are_allowed_and_a_link_is_not_a_unit_file(tmp_path):
    folder = release_folder(tmp_path, {f"systemd/{WEB}": UNIT_TEXT + "Alias=id1-core-web-http.service\nAlso=id1-core-web@%i.service\n"})
    assert list(release_unit_files(folder, "core/web", "1.0.0", [WEB])) == [WEB]
    os.symlink("/etc/systemd/system/ssh.service", folder / "systemd" / CLEANUP)
    with pytest.raises(UnitError, match=f"no file systemd/{CLEANUP}"):
        release_unit_files(folder, "core/web", "1.0.0", [WEB, CLEANUP])


def test_a_release_from_before_the_rule_can_still_be_put_back(tmp_path):
    folder = release_folder(tmp_path, {f"systemd/{WEB}": UNIT_TEXT, "systemd/notes.txt": "old"})
    with pytest.raises(UnitError):
        release_unit_files(folder, "core/web", "1.0.0", [WEB])
    assert list(release_unit_files(folder, "core/web", "1.0.0", [WEB], strict=False)) == [WEB]


# ── the unit folder ──────────────────────────────────────────────────────────────────────────


def test_installed_files_say_whose_they_are_and_other_files_are_never_replaced_or_removed(tmp_path):
    units = UnitFolder(tmp_path / "units", tmp_path / "state")
    units.unit_dir.mkdir()
    admins = units.unit_dir / WEB
    admins.write_text("[Service]\nExecStart=/usr/local/bin/my-own-web\n")
    with pytest.raises(UnitError, match=f"{admins} exists and was not installed by id1-agent for core/web"):
        units.install("core/web", {WEB: UNIT_TEXT}, current=tmp_path / "current")
    assert units.remove("core/web", [WEB]) == []
    assert admins.read_text().startswith("[Service]\nExecStart=/usr/local/bin/my-own-web")

    admins.unlink()
    assert units.install("core/web", {WEB: UNIT_TEXT}, current=tmp_path / "current") == [WEB]
    text = admins.read_text()
    assert text.splitlines()[0] == MARKER.format(ref="core/web") and owner_of(admins) == "core/web"
    assert f"ExecStart={tmp_path / 'current'}/bin/run --state {tmp_path / 'state'}" in text
    assert units.install("core/web", {WEB: UNIT_TEXT}, current=tmp_path / "current") == []  # unchanged: not rewritten
    with pytest.raises(UnitError, match="was not installed by id1-agent for core/api"):
        units.check_free("core/api", [WEB])  # another capability's file


def test_a_file_the_running_revision_lists_is_its_own_even_without_the_line(tmp_path):
    """Units installed by an agent from before the first line existed are still upgraded and removed."""
    units = UnitFolder(tmp_path / "units", tmp_path / "state")
    units.unit_dir.mkdir()
    (units.unit_dir / WEB).write_text(UNIT_TEXT)
    assert units.install("core/web", {WEB: UNIT_TEXT}, current=tmp_path / "current", owned={WEB}) == [WEB]
    (units.unit_dir / CLEANUP).write_text(UNIT_TEXT)
    wants = units.unit_dir / "multi-user.target.wants"
    wants.mkdir()
    os.symlink(units.unit_dir / CLEANUP, wants / CLEANUP)
    os.symlink("/lib/systemd/system/ssh.service", wants / "ssh.service")
    assert units.remove("core/web", [CLEANUP], owned={CLEANUP}) == [CLEANUP]
    assert not os.path.lexists(wants / CLEANUP)  # the link left to it went with it
    assert os.path.lexists(wants / "ssh.service")


# ── systemctl gets -- before unit names ──────────────────────────────────────────────────────


def test_unit_names_follow_a_double_dash(tmp_path):
    log = tmp_path / "argv"
    fake = tmp_path / "systemctl"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\necho active\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    services = ServiceController([str(fake)])
    services.restart([WEB])
    services.enable([WEB, CLEANUP])
    services.disable([CLEANUP])
    services.stop([CLEANUP])
    services.reset_failed([WEB])
    assert services.state(WEB) == "active"
    assert log.read_text().splitlines() == [
        f"restart -- {WEB}", f"enable -- {WEB} {CLEANUP}", f"disable -- {CLEANUP}", f"stop -- {CLEANUP}",
        f"reset-failed -- {WEB}", f"is-active -- {WEB}",
    ]


# ── the engine, with systemctl3 ──────────────────────────────────────────────────────────────


def manifest(host: Host, releases: list[Release], platform: str = "1.0.0") -> Manifest:
    suites: dict = {}
    for release in releases:
        data = tarball(release.files)
        name = f"{release.ref.replace('/', '-')}-{release.version}-{hashlib.sha256(data).hexdigest()[:8]}.tar.gz"
        host.server.publish(name, data)
        suite, _, capability = release.ref.partition("/")
        suites.setdefault(suite, {"version": platform, "capabilities": {}})["capabilities"][capability] = {
            "version": release.version, "source": "latest",
            "artifact": {"url": host.server.url(name), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)},
            "units": release.units, "health": release.health,
        }
    return Manifest.model_validate({"platform": platform, "suites": suites})


def enabled(host: Host, unit: str) -> bool:
    return host.services.is_enabled(unit) == "enabled"


def test_units_are_enabled_dropped_ones_retired_and_an_undo_removes_what_only_the_failed_version_had(host):
    web = Service("core/web", port=free_port())
    first = host.engine().deploy(manifest(host, [web.release("1.0.0", extra_units=(CLEANUP,))]), feed_serial=1)
    assert first.status == DeploymentStatus.SUCCEEDED, first.error
    for unit in (WEB, CLEANUP):
        assert host.services.is_active(unit) and enabled(host, unit), unit

    second = host.engine().deploy(manifest(host, [web.release("1.1.0", extra_units=(WORKER,))]), feed_serial=2)
    assert second.status == DeploymentStatus.SUCCEEDED, second.error
    assert host.services.is_active(WORKER) and enabled(host, WORKER)
    assert not host.services.is_active(CLEANUP)
    assert not (host.unit_dir / CLEANUP).exists()
    assert not list(host.unit_dir.glob(f"*.wants/{CLEANUP}"))

    extra = "id1-core-web-extra.service"
    broken = host.engine().deploy(manifest(host, [web.release("1.2.0", broken=True, health_timeout_s=3, extra_units=(extra,))]),
                                  feed_serial=3)
    assert broken.status == DeploymentStatus.ROLLED_BACK
    assert not (host.unit_dir / extra).exists() and not list(host.unit_dir.glob(f"*.wants/{extra}"))
    for unit in (WEB, WORKER):  # the worker, which 1.2.0 dropped, is back
        assert host.services.is_active(unit) and enabled(host, unit), unit


def test_a_removed_capability_has_its_units_stopped_disabled_and_removed(host):
    web, api = Service("core/web", port=free_port()), Service("core/api", port=free_port())
    assert host.engine().deploy(manifest(host, [web.release("1.0.0"), api.release("1.0.0")]), feed_serial=1).revision == 1
    assert enabled(host, "id1-core-api.service")
    drop_in = host.unit_dir / "id1-core-api.service.d" / "override.conf"  # what `systemctl edit` writes
    drop_in.parent.mkdir()
    drop_in.write_text("[Service]\nEnvironment=LOG_LEVEL=debug\n")
    result = host.engine().deploy(manifest(host, [web.release("1.0.0")]), feed_serial=2)
    assert result.status == DeploymentStatus.SUCCEEDED, result.error
    assert not host.services.is_active("id1-core-api.service")
    assert not (host.unit_dir / "id1-core-api.service").exists()
    assert not list(host.unit_dir.glob("*.wants/id1-core-api.service"))
    assert host.services.is_active(WEB)
    assert drop_in.read_text() == "[Service]\nEnvironment=LOG_LEVEL=debug\n"  # the admin's, left alone


def test_an_artifact_carrying_a_unit_of_the_host_changes_nothing(host):
    web = Service("core/web", port=free_port())
    assert host.engine().deploy(manifest(host, [web.release("1.0.0")]), feed_serial=1).revision == 1
    ssh = host.unit_dir / "ssh.service"
    ssh.write_text("[Service]\nExecStart=/usr/sbin/sshd -D\n")
    hostile = web.release("1.0.1", unlisted={"ssh.service": "[Service]\nExecStart=/bin/sh -c 'echo owned'\n"})
    result = host.engine().deploy(manifest(host, [hostile]), feed_serial=2)
    assert result.status == DeploymentStatus.FAILED  # before anything changed: nothing to undo
    assert "core/web 1.0.1 carries systemd/ssh.service, which its release does not list in units: refused" in result.error
    assert ssh.read_text() == "[Service]\nExecStart=/usr/sbin/sshd -D\n"
    assert host.store.revisions.latest().number == 1 and host.services.is_active(WEB)


def test_a_unit_file_of_the_admins_with_a_capability_unit_name_is_not_replaced(host):
    web = Service("core/web", port=free_port())
    theirs = host.unit_dir / WEB
    theirs.write_text("[Service]\nExecStart=/bin/sleep 1\n")
    result = host.engine().deploy(manifest(host, [web.release("1.0.0")]), feed_serial=1)
    assert result.status == DeploymentStatus.FAILED
    assert f"{theirs} exists and was not installed by id1-agent for core/web" in result.error
    assert theirs.read_text() == "[Service]\nExecStart=/bin/sleep 1\n"


def test_units_of_the_running_revision_found_disabled_are_enabled_at_start(host):
    """An agent from before units were enabled left them disabled: they would not come back after a reboot."""
    web = Service("core/web", port=free_port())
    assert host.engine().deploy(manifest(host, [web.release("1.0.0", extra_units=(WORKER,))]), feed_serial=1).revision == 1
    host.services.disable([WEB, WORKER])
    assert host.engine().enable_running_units() == [WEB, WORKER]
    assert enabled(host, WEB) and enabled(host, WORKER)
    assert host.engine().enable_running_units() == []
