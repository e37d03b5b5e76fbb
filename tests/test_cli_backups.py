"""``id1 agent backups`` and ``id1 agent restore``: an operator puts a state backup back with the
agent stopped; with the agent running it is refused and nothing changes."""

from __future__ import annotations

import gzip

from agent.cli.main import main
from agent.store import Store


def test_list_and_restore_a_backup_with_the_agent_stopped(tmp_path, capsys):
    config = tmp_path / "agent.toml"
    state = tmp_path / "state"
    config.write_text(f'instance_id = "host-01"\nstate_dir = "{state}"\n')
    assert main(["agent", "backups", "--config", str(config)]) == 0
    assert "no backups in" in capsys.readouterr().out

    with Store.open(state) as store:
        store.pins.set("capability", "core/auth", "1.0.0", "before")
        first = store.backup()
        store.pins.set("capability", "core/auth", "2.0.0", "after")
        assert store.backup() is not None

        assert main(["agent", "restore", str(first), "--config", str(config)]) != 0  # the agent holds the store
        refused = capsys.readouterr().err
        assert refused.startswith("id1: another id1 agent") and len(refused.strip().splitlines()) == 1, refused

    assert main(["agent", "backups", "--config", str(config)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and str(first) in listed[1]

    assert main(["agent", "restore", str(first), "--config", str(config)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"restored {first}") and "state.json.before-restore-" in said
    with Store.open(state) as store:
        assert store.pins.find("capability", "core/auth").version == "1.0.0"


def test_old_uncompressed_and_new_compressed_backups_are_listed_and_restored(tmp_path, capsys):
    config = tmp_path / "agent.toml"
    state = tmp_path / "state"
    config.write_text(f'instance_id = "host-01"\nstate_dir = "{state}"\n')
    with Store.open(state) as store:
        store.pins.set("capability", "core/auth", "1.0.0", "old agent")
        compressed = store.backup()
        old = compressed.with_name(compressed.name.removesuffix(".gz"))  # as an agent before compression wrote it
        old.write_bytes(gzip.decompress(compressed.read_bytes()))
        compressed.unlink()
        store.pins.set("capability", "core/auth", "2.0.0", "new agent")
        new = store.backup()
    assert old.name.endswith(".json") and new.name.endswith(".json.gz")

    assert main(["agent", "backups", "--config", str(config)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in listed] == [str(new), str(old)]
    assert f"{new.stat().st_size:,} bytes" in listed[0] and f"{old.stat().st_size:,} bytes" in listed[1]

    for backup, version in ((old, "1.0.0"), (new, "2.0.0")):
        assert main(["agent", "restore", str(backup), "--config", str(config)]) == 0
        assert capsys.readouterr().out.startswith(f"restored {backup}")
        with Store.open(state) as store:
            assert store.pins.find("capability", "core/auth").version == version
