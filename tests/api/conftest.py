"""Throwaway Unix users and groups for the tests that call the API as someone other than root."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from agent.config import RolesConfig


@dataclass(frozen=True)
class ThrowawayAccounts:
    roles: RolesConfig
    nobody: str  # in none of the role groups
    viewer: str
    approver: str

    def roles_toml(self) -> str:
        """The ``[roles]`` table of an agent config that grants these accounts' roles."""
        return "[roles]\n" + "".join(f'{role} = ["{getattr(self.roles, role)[0]}"]\n' for role in ("viewer", "approver", "admin"))


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def accounts() -> Iterator[ThrowawayAccounts]:
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd to create throwaway users")
    tag = secrets.token_hex(3)
    groups = {role: f"id1t-{tag}-{role}" for role in ("viewer", "approver", "admin")}
    users = {"nobody": f"id1t-{tag}-none", "viewer": f"id1t-{tag}-view", "approver": f"id1t-{tag}-appr"}
    made_groups: list[str] = []
    made_users: list[str] = []
    try:
        for group in groups.values():
            _run("groupadd", group)
            made_groups.append(group)
        for kind, user in users.items():
            extra = ["--groups", groups[kind]] if kind in groups else []
            _run("useradd", "--no-create-home", "--no-user-group", "--shell", "/usr/sbin/nologin", *extra, user)
            made_users.append(user)
        roles = RolesConfig(viewer=[groups["viewer"]], approver=[groups["approver"]], admin=[groups["admin"]])
        yield ThrowawayAccounts(roles, users["nobody"], users["viewer"], users["approver"])
    finally:
        for user in made_users:
            subprocess.run(["userdel", user], capture_output=True, timeout=30)
        for group in made_groups:
            subprocess.run(["groupdel", group], capture_output=True, timeout=30)
