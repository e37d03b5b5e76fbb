"""docs/configuration.md stays true: its TOML is a valid config, it names every key the agent
accepts, and the error it shows is the one the agent prints."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel

from agent.cli.main import main
from agent.config import AgentConfig, config_from_dict

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def toml_block() -> str:
    return re.search(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)[1]


def key_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        if name in ("id", "created_at", "updated_at"):  # stored pins only, never written in the file
            continue
        path = f"{prefix}{name}"
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        nested = next((t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if nested is not None and name != "suites":
            paths += key_paths(nested, f"{path}.")
        else:
            paths.append(path)
    return paths


def test_the_documented_config_is_valid_and_names_every_key():
    config = config_from_dict(tomllib.loads(toml_block()), "docs/configuration.md")
    assert config.policy.suites["analytics"].channel == "auto-update"
    text = toml_block()
    documented = set()
    table = ""
    for line in text.splitlines():
        if header := re.match(r"^\[\[?([a-z_.]+)\]\]?", line):
            table = header[1] + "."
            documented.add(header[1])
        elif key := re.match(r"^([a-z_]+)\s*=", line):
            documented.add(table + key[1])
    missing = [path for path in key_paths(AgentConfig) if path not in documented and not path.startswith("policy.suites")]
    assert missing == [], f"docs/configuration.md does not document {missing}"


def test_the_error_shown_is_the_one_printed(tmp_path, capsys):
    bad = tmp_path / "agent.toml"
    bad.write_text('[policy]\nchannel = "weekly"\n[feed]\npoll_interval = "15 minutes"\n')
    assert main(["agent", "run", "--once", "--config", str(bad)]) == 2
    printed = capsys.readouterr().err.replace(str(bad), "/etc/id1/agent.toml").strip()
    shown = re.search(r"example:\n\n```\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)[1].strip()
    assert printed == shown
