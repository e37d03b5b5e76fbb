"""``id1 agent backups`` and ``id1 agent restore``: an operator puts a state backup back with the
agent stopped; with the agent running it is refused and nothing changes."""

from __future__ import annotations

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
