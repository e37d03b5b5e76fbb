"""The test host platform itself (tests/hosts): hosts boot with systemd as PID 1, several at once,
keep what they wrote across a reboot, and start their enabled units again."""

from __future__ import annotations

import threading

from tests.hosts.image import base_image, image_key


def test_two_hosts_boot_at_once_and_a_reboot_starts_enabled_units_again(make_host):
    hosts = [make_host(name, boot=False) for name in ("plat1", "plat2")]
    errors = []

    def boot(host):
        try:
            host.boot()
        except Exception as error:  # reported below, with the host's console
            errors.append(error)

    threads = [threading.Thread(target=boot, args=(host,)) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    first, second = hosts
    assert first.run("cat", "/proc/1/comm").stdout.strip() == "systemd"
    assert first.run("hostname").stdout.strip() == "plat1" and second.run("hostname").stdout.strip() == "plat2"
    ids = {host.run("cat", "/etc/machine-id").stdout.strip() for host in hosts}
    assert len(ids) == 2 and "" not in ids

    first.write("/etc/systemd/system/plat-sleeper.service",
                "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n")
    first.run("systemctl", "daemon-reload")
    first.run("systemctl", "enable", "--now", "plat-sleeper.service")
    first.write("/var/lib/kept", "before the reboot")
    boots_before = first.run("journalctl", "--list-boots", "--no-pager").stdout.count("\n")

    first.reboot()
    assert first.run("systemctl", "is-active", "plat-sleeper.service").stdout.strip() == "active"
    assert first.path("/var/lib/kept").read_text() == "before the reboot"
    assert first.run("journalctl", "--list-boots", "--no-pager").stdout.count("\n") == boots_before + 1
    # The other host was not touched by the first one's reboot.
    assert second.run("systemctl", "is-system-running").stdout.strip() == "running"
    assert second.run("systemctl", "is-active", "plat-sleeper.service", check=False).stdout.strip() != "active"


def test_the_base_root_is_cached_by_its_recipe():
    image = base_image()
    assert image.name == image_key()
    assert (image / ".complete").exists() and (image / "usr" / "lib" / "systemd" / "systemd").exists()
    assert base_image() == image  # built once
