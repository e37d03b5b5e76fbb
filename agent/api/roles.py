"""What an API caller may do: roles from the Unix groups named in the config (DESIGN.md §7).

    Id1Error
    └── Forbidden       the caller lacks the role an action needs (the API answers 403)

Roles are ordered, viewer < approver < admin, and each includes the ones below it: a viewer
reads, an approver also approves and rejects, an admin also pins, sets policy, rolls back,
enforces and unblocks. root is always admin; a user in none of the groups has no role. The
caller's uid comes from the kernel (see ``peer``); the user name and groups come from the
system's account database, so membership is whatever ``/etc/group`` (or NSS) says.
"""

from __future__ import annotations

import grp
import os
import pwd
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum

from agent.config import RolesConfig
from agent.errors import Id1Error

from agent.api.peer import PeerCredentials


class Role(IntEnum):
    viewer = 1
    approver = 2
    admin = 3

    def __str__(self) -> str:
        return self.name


_DEFAULT_ACTIONS = {
    Role.viewer: "read the agent's state",
    Role.approver: "approve or reject updates",
    Role.admin: "change the agent's settings",
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling and the highest role their groups give them (None: no role)."""

    user: str
    uid: int
    groups: tuple[str, ...]
    role: Role | None

    def may(self, needed: Role) -> bool:
        return self.role is not None and self.role >= needed


@dataclass(frozen=True, slots=True)
class Account:
    """A uid's name and group names, as the account database has them."""

    user: str
    groups: tuple[str, ...]


AccountLookup = Callable[[int, int], Account]
"""``lookup(uid, gid) -> Account``; tests pass a dict-backed one instead of pwd/grp."""


class Forbidden(Id1Error):
    """The caller lacks the role an action needs; the message names the groups that grant it."""

    def __init__(self, message: str, *, caller: Caller | None = None, needed: Role | None = None):
        super().__init__(message)
        self.caller = caller
        self.needed = needed


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def read_account(uid: int, gid: int) -> Account:
    """Name and groups of ``uid``, uncached.

    ``gid`` is the caller's effective gid from the kernel: a group the process really holds,
    so it counts even when the account database does not list the user in it.
    """
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:  # a uid without a passwd entry (a container's, a deleted user's)
        return Account(f"uid {uid}", (_group_name(gid),))
    gids = [*os.getgrouplist(entry.pw_name, entry.pw_gid), gid]
    return Account(entry.pw_name, tuple(dict.fromkeys(_group_name(g) for g in gids)))


class SystemAccounts:
    """``read_account`` behind a short cache: every request resolves its caller, and group
    membership changes rarely (a change shows within ``ttl`` seconds)."""

    def __init__(self, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[int, int], tuple[float, Account]] = {}

    def __call__(self, uid: int, gid: int) -> Account:
        now = self._clock()
        hit = self._cache.get((uid, gid))
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        account = read_account(uid, gid)
        # Drop expired entries so the cache never outgrows the set of recent callers.
        self._cache = {key: value for key, value in self._cache.items() if now - value[0] < self.ttl}
        self._cache[(uid, gid)] = (now, account)
        return account


# The process-wide default: a cache of the system's account database, not configuration.
system_accounts = SystemAccounts()


def role_of(uid: int, groups: Iterable[str], roles: RolesConfig) -> Role | None:
    """root is admin; otherwise the highest role any of the groups grants."""
    if uid == 0:
        return Role.admin
    held = set(groups)
    for role in sorted(Role, reverse=True):
        if held.intersection(getattr(roles, role.name)):
            return role
    return None


def identify(peer: PeerCredentials, roles: RolesConfig, *, lookup: AccountLookup = system_accounts) -> Caller:
    """The Caller behind a connection's kernel credentials."""
    account = lookup(peer.uid, peer.gid)
    return Caller(account.user, peer.uid, account.groups, role_of(peer.uid, account.groups, roles))


def granting_groups(needed: Role, roles: RolesConfig) -> tuple[str, ...]:
    """Every configured group whose members hold ``needed`` (its own and the higher roles')."""
    names = (name for role in Role if role >= needed for name in getattr(roles, role.name))
    return tuple(dict.fromkeys(names))


def _where(groups: tuple[str, ...]) -> str:
    if not groups:
        return "only root has it"
    if len(groups) == 1:
        return f"group {groups[0]}"
    return f"group {', '.join(groups[:-1])} or {groups[-1]}"


def require(caller: Caller, needed: Role, roles: RolesConfig, *, action: str | None = None) -> None:
    """Raise Forbidden unless the caller holds ``needed``.

    ``action`` completes "alice may not …", e.g. "approve updates".
    """
    if caller.may(needed):
        return
    action = action or _DEFAULT_ACTIONS[needed]
    message = (
        f"{caller.user} may not {action}: that needs the {needed} role "
        f"({_where(granting_groups(needed, roles))})"
    )
    raise Forbidden(message, caller=caller, needed=needed)
