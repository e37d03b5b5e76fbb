"""The ``[fleet]`` table (DESIGN.md §12), checked like every other table: bad values are refused
with their key path, and what a backend needs (etcd: endpoints; fleetlock: a URL) is checked
at start rather than found missing at the first deployment.

``default_fleet_id`` is pure: the caller reads /etc/machine-id and passes its text in.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from agent.safe_text import quoted

Backend = Literal["none", "fleetlock", "etcd"]
MAX_SLOTS = 9999
"""Slot keys are numbered with four digits (``slots/0000``) so that their order is their number."""
_GROUP = re.compile(r"^[a-zA-Z0-9.-]{1,64}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def default_fleet_id(machine_id: str) -> str:
    """This host's fleet id when ``fleet.id`` is empty: a hash of "id1-fleet" and the machine id,
    so the id is stable across restarts but does not disclose the machine id (as Zincati does)."""
    digest = hashlib.sha256(b"id1-fleet\0" + machine_id.strip().encode("utf-8")).hexdigest()
    return digest[:32]


def _check_group(text: str) -> str:
    if not _GROUP.match(text):
        raise ValueError(f"{quoted(text)} is not a group name: 1 to 64 letters, digits, '.' and '-'")
    return text


def _check_id(text: str) -> str:
    if text and not _ID.match(text):
        raise ValueError(f"{quoted(text)} is not a fleet id: up to 128 letters, digits, '_', '.', ':' and '-', "
                         "starting with a letter or digit (or empty: derived from /etc/machine-id)")
    return text


def _check_url(text: str) -> str:
    if not text:
        return text
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise ValueError(f"{quoted(text)} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{quoted(text)} is not an http or https URL such as http://10.0.0.5:2379")
    if parts.query or parts.fragment:
        raise ValueError(f"{quoted(text)}: a lock service URL has no query or fragment")
    return text


def _check_duration(text: str) -> str:
    from agent.config import _check_duration as check  # agent.config imports this module

    return check(text)


def _seconds(text: str) -> float:
    from agent.config import parse_duration

    return parse_duration(text).total_seconds()


class FleetConfig(BaseModel):
    """``[fleet]``: how this host takes turns with the other hosts of its group."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend = "none"
    """none: no coordination; fleetlock: a FleetLock server (a slot only); etcd: slots, halt and view."""
    group: Annotated[str, AfterValidator(_check_group)] = "default"
    """The hosts that take turns: one ID-1 instance, or one tier of it."""
    id: Annotated[str, AfterValidator(_check_id)] = ""
    """This host in the fleet (FleetLock's client_params.id); empty: derived from /etc/machine-id."""
    fleetlock_url: Annotated[str, AfterValidator(_check_url)] = Field(default="", validate_default=True)
    """backend fleetlock: the base URL; the agent POSTs {url}/v1/pre-reboot and {url}/v1/steady-state."""
    etcd_endpoints: list[Annotated[str, AfterValidator(_check_url)]] = Field(default_factory=list, validate_default=True)
    """backend etcd: client URLs of the cluster's members, tried in turn."""
    slots: int = Field(default=1, ge=1, le=MAX_SLOTS)
    """etcd: hosts of the group that may be changing their services at once."""
    lease: Annotated[str, AfterValidator(_check_duration)] = "15m"
    """etcd: the slot of a host that stops renewing (crashed, cut off) is freed after this."""
    halt_after: int = Field(default=1, ge=1, le=1_000_000)
    """etcd: hosts rolled back from one capability version that halt it for the whole group."""
    critical_wait: Annotated[str, AfterValidator(_check_duration)] = "30m"
    """A forced security fix waits this long for a slot, then goes ahead (audited, alerted)."""

    @field_validator("fleetlock_url")
    @classmethod
    def _url_for_fleetlock(cls, url: str, info: ValidationInfo) -> str:
        if info.data.get("backend") == "fleetlock" and not url:
            raise ValueError("empty, but fleet.backend is fleetlock: set the FleetLock server's base URL")
        return url

    @field_validator("etcd_endpoints")
    @classmethod
    def _endpoints_for_etcd(cls, endpoints: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("backend") == "etcd" and not endpoints:
            raise ValueError('empty, but fleet.backend is etcd: list the cluster\'s client URLs, '
                             'e.g. ["http://10.0.0.5:2379"]')
        return endpoints

    @property
    def lease_s(self) -> float:
        return _seconds(self.lease)

    @property
    def critical_wait_s(self) -> float:
        return _seconds(self.critical_wait)
