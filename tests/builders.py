"""Small feeds written in a few lines, for planner tests: ``FeedBuilder().platform(...)…catalog()``."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

from agent.feed.catalog import Catalog, parse_feed

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def capability_release(ref: str, version: str, *, units: list[str] | None = None) -> dict:
    """A capability release with a made-up artifact (its digest derived from ref and version)."""
    suite, _, name = ref.partition("/")
    return {
        "suite": suite,
        "name": name,
        "version": version,
        "artifact": {
            "url": f"artifacts/{suite}-{name}-{version}.tar.gz",
            "sha256": hashlib.sha256(f"{ref}@{version}".encode()).hexdigest(),
            "size": 1000,
        },
        "units": units if units is not None else [f"id1-{suite}-{name}.service"],
    }


class FeedBuilder:
    def __init__(self, serial: int = 1, issued_at: datetime = NOW - timedelta(days=1), expires_at: datetime = NOW + timedelta(days=13)):
        self.data = {
            "format": 1,
            "serial": serial,
            "issued_at": iso(issued_at),
            "expires_at": iso(expires_at),
            "platforms": [],
            "suites": [],
            "capabilities": [],
            "advisories": [],
            "withdrawn": [],
        }

    def platform(self, version: str, suites: dict[str, str], *, rollout: tuple[datetime, float] | None = None, notes: str | None = None) -> FeedBuilder:
        release = {"version": version, "released_at": iso(NOW - timedelta(days=2)), "suites": suites}
        if rollout is not None:
            release["rollout"] = {"start": iso(rollout[0]), "hours": rollout[1]}
        if notes is not None:
            release["notes"] = notes
        self.data["platforms"].append(release)
        return self

    def suite(self, name: str, version: str, capabilities: dict[str, str]) -> FeedBuilder:
        self.data["suites"].append({"name": name, "version": version, "capabilities": capabilities})
        return self

    def capability(self, ref: str, version: str, *, requires: dict | None = None, units: list[str] | None = None,
                   health: dict | None = None, switch: dict | None = None) -> FeedBuilder:
        release = capability_release(ref, version, units=units)
        if requires is not None:
            release["requires"] = requires
        if health is not None:
            release["health"] = health
        if switch is not None:
            release["switch"] = switch
        self.data["capabilities"].append(release)
        return self

    def capabilities(self, ref: str, *versions: str) -> FeedBuilder:
        for version in versions:
            self.capability(ref, version)
        return self

    def advisory(self, id: str, capability: str, affected: str, severity: str = "critical") -> FeedBuilder:
        self.data["advisories"].append({
            "id": id,
            "severity": severity,
            "capability": capability,
            "affected": affected,
            "summary": f"{capability} {affected} is vulnerable",
            "published_at": iso(NOW - timedelta(hours=6)),
        })
        return self

    def withdraw(self, *refs: str) -> FeedBuilder:
        self.data["withdrawn"].extend(refs)
        return self

    def bytes(self) -> bytes:
        return json.dumps(self.data, indent=1).encode()

    def catalog(self) -> Catalog:
        return parse_feed(self.bytes())


def simple_feed() -> FeedBuilder:
    """Two platform releases of suites core (auth, api) and analytics (report)."""
    return (
        FeedBuilder()
        .capabilities("core/auth", "1.0.0", "1.0.1", "1.1.0")
        .capabilities("core/api", "2.0.0", "2.1.0")
        .capabilities("analytics/report", "1.0.0", "1.1.0")
        .suite("core", "1.2.0", {"auth": "1.0.0", "api": "2.0.0"})
        .suite("core", "1.3.0", {"auth": "1.1.0", "api": "2.1.0"})
        .suite("analytics", "1.0.0", {"report": "1.0.0"})
        .suite("analytics", "1.1.0", {"report": "1.1.0"})
        .platform("2.5.0", {"core": "1.2.0", "analytics": "1.0.0"})
        .platform("2.6.0", {"core": "1.3.0", "analytics": "1.1.0"})
    )
