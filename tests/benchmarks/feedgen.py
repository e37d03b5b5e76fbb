"""A deterministic generator of large, valid release feeds (DESIGN.md §4) for the planner benchmark.

``generate_feed(scale=1.0, seed=0)`` returns the bytes of a feed.json as ``id1 feed build``
writes it (UTF-8, ``indent=2``). Same ``scale`` and ``seed`` → the same bytes, on every machine.

At ``scale=1``:

    platform releases     500   (the newest one a pre-release, the newest few in a staged rollout,
                                 one rollout not started yet, every one with release notes)
    suites                 20   × 15 capabilities each = 300 capabilities
    suite releases        500   (25 per suite; every platform release names one of each suite)
    capability releases 5,000   (16 or 17 versions per capability, every version in some suite
                                 release except a few standalone security hotfixes)
    advisories            500   (low, medium, high and critical; ``affected`` such as ``<1.4.2``
                                 or ``>=1.2.0,<1.4.2``; two critical ones with no fix in the feed)
    withdrawn               a few (platform, suite and capability releases)

How ``scale`` scales (the choice the benchmark's "linear growth" figure rests on): it multiplies
the number of **suites** (20 → 2 at 0.1), the number of **platform releases** (500 → 50) and of
**advisories** (500 → 50). Capabilities per suite (15), versions per capability (~17) and
releases per suite (25) stay the same, so capability releases (5,000 → 500), suite releases
(500 → 50), capabilities per host manifest (300 → 30) and advisories all scale by exactly the
factor: both the feed and the planner's per-host work shrink tenfold. The one part that shrinks
faster is the platforms section (fewer releases *and* one entry per suite in each), a small
share of the bytes; ``describe(data)`` prints the counts so the table can show them.

The feed is self-consistent by construction: suite releases take capability versions in order,
platform releases take suite releases in order, and every ``requires`` (a platform floor, the
suite's ``api`` capability, and for some the first suite's ``api``) holds in the release that
introduced the version and in every later one, so latest and pins give compatible targets.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime, timedelta, timezone

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)

SUITE_NAMES = (
    "core", "analytics", "billing", "identity", "storage", "messaging", "search", "reporting",
    "audit", "gateway", "workflow", "notify", "media", "catalog", "ledger", "crm", "docs",
    "scheduler", "mail", "insight",
)
CAPABILITY_NAMES = (
    "api", "auth", "worker", "web", "migrate", "cache", "indexer", "exporter", "importer",
    "notifier", "metrics", "backup", "admin", "sync", "gc",
)
FULL_SUITES = len(SUITE_NAMES)          # 20
FULL_PLATFORMS = 500
FULL_ADVISORIES = 500
RELEASES_PER_SUITE = 25
SEVERITY_WEIGHTS = (("low", 35), ("medium", 30), ("high", 25), ("critical", 10))


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def counts(scale: float) -> dict[str, int]:
    """How many suites, platform releases and advisories a feed of this scale has."""
    suites = max(1, round(FULL_SUITES * scale))
    if suites > FULL_SUITES:
        raise ValueError(f"scale {scale} asks for {suites} suites; at most {FULL_SUITES} are named")
    return {
        "suites": suites,
        "platforms": max(2, round(FULL_PLATFORMS * scale)),
        "advisories": max(1, round(FULL_ADVISORIES * scale)),
    }


def suite_names(scale: float = 1.0) -> tuple[str, ...]:
    return SUITE_NAMES[: counts(scale)["suites"]]


def _version_sequence(rng: random.Random, count: int, start: tuple[int, int, int], major_rate: float = 0.06) -> list[str]:
    """``count`` increasing X.Y.Z versions: mostly patch bumps, some minor, a few major."""
    major, minor, patch = start
    versions = [f"{major}.{minor}.{patch}"]
    while len(versions) < count:
        roll = rng.random()
        if roll < major_rate:
            major, minor, patch = major + 1, 0, 0
        elif roll < 0.36:
            minor, patch = minor + 1, 0
        else:
            patch += 1
        versions.append(f"{major}.{minor}.{patch}")
    return versions


def _spread(index: int, count: int, buckets: int) -> int:
    """Map index in 0..count-1 onto 0..buckets-1, non-decreasing, first to first and last to last."""
    if count <= 1:
        return buckets - 1
    return (index * (buckets - 1) + (count - 1) // 2) // (count - 1)


def generate_feed(scale: float = 1.0, seed: int = 0) -> bytes:
    """The bytes of a valid feed of the given scale (see the module docstring)."""
    return (json.dumps(generate_feed_dict(scale, seed), indent=2) + "\n").encode("utf-8")


def generate_feed_dict(scale: float = 1.0, seed: int = 0) -> dict:
    rng = random.Random(f"id1-feedgen-{seed}")
    n = counts(scale)
    suites = SUITE_NAMES[: n["suites"]]
    n_platforms = n["platforms"]

    # ── capability versions ─────────────────────────────────────────────────────────────────
    # 16 or 17 versions per capability (100 × 16 + 200 × 17 = 5,000 for 300 capabilities); about
    # one capability in 20 has its last version as a standalone hotfix that no suite release has.
    cap_versions: dict[str, list[str]] = {}
    hotfix: dict[str, str] = {}
    ordinal = 0
    for suite in suites:
        for name in CAPABILITY_NAMES:
            ref = f"{suite}/{name}"
            count = 16 if ordinal % 3 == 0 else 17
            cap_versions[ref] = _version_sequence(rng, count, (1, rng.randrange(0, 3), 0))
            if ordinal % 20 == 7:
                hotfix[ref] = cap_versions[ref][-1]
            ordinal += 1

    # ── suite releases: release j takes each capability's versions in order ────────────────
    suite_versions: dict[str, list[str]] = {}
    suite_contents: dict[str, list[dict[str, str]]] = {}
    for suite in suites:
        suite_versions[suite] = _version_sequence(rng, RELEASES_PER_SUITE, (1, 0, 0))
        contents = []
        for j in range(RELEASES_PER_SUITE):
            release = {}
            for name in CAPABILITY_NAMES:
                ref = f"{suite}/{name}"
                in_suites = cap_versions[ref][:-1] if ref in hotfix else cap_versions[ref]
                release[name] = in_suites[_spread(j, RELEASES_PER_SUITE, len(in_suites))]
            contents.append(release)
        suite_contents[suite] = contents

    # ── platform releases: release p takes each suite's releases in order ───────────────────
    platform_versions = _version_sequence(rng, n_platforms, (1, 0, 0), major_rate=0.01)
    # The newest platform release is a release candidate of the next minor version.
    last_major, last_minor, _ = (int(part) for part in platform_versions[-2].split("."))
    platform_versions[-1] = f"{last_major}.{last_minor + 1}.0rc1"
    offsets = {suite: rng.randrange(0, 3) for suite in suites}
    platform_suites: list[dict[str, int]] = []
    for p in range(n_platforms):
        platform_suites.append({
            suite: min(RELEASES_PER_SUITE - 1, _spread(p, n_platforms, RELEASES_PER_SUITE) + (offsets[suite] if p > 0 else 0))
            for suite in suites
        })
    released = [NOW - timedelta(hours=17 * (n_platforms - 1 - p) + 6) for p in range(n_platforms)]

    # Where each capability version first appears: its platform floor and its suite's api then.
    first_platform_of_suite_release: dict[tuple[str, int], int] = {}
    for p, chosen in enumerate(platform_suites):
        for suite, j in chosen.items():
            first_platform_of_suite_release.setdefault((suite, j), p)
    first_suite_release_of_cap: dict[tuple[str, str], int] = {}
    for suite in suites:
        for j, release in enumerate(suite_contents[suite]):
            for name, version in release.items():
                first_suite_release_of_cap.setdefault((f"{suite}/{name}", version), j)

    platforms = []
    for p in range(n_platforms):
        release = {
            "version": platform_versions[p],
            "released_at": iso(released[p]),
            "suites": {suite: suite_versions[suite][j] for suite, j in platform_suites[p].items()},
        }
        from_newest = n_platforms - 1 - p
        if from_newest < max(3, n_platforms // 50):
            # Staged rollouts on the newest releases: the newest started 12 h ago over 48 h (it
            # has reached a quarter of the fleet), the older ones are complete.
            release["rollout"] = {"start": iso(released[p]), "hours": 48}
        if from_newest == 1:
            release["rollout"] = {"start": iso(NOW + timedelta(hours=6)), "hours": 24}  # not started
        release["notes"] = (
            f"ID-1 {platform_versions[p]}: {rng.choice(('maintenance', 'feature', 'security'))} release; "
            f"updates {rng.randrange(1, len(suites) + 1)} suites. See https://example.com/id1/notes/{platform_versions[p]}"
        )
        platforms.append(release)

    suite_releases = []
    for suite in suites:
        for j in range(RELEASES_PER_SUITE):
            suite_releases.append({"name": suite, "version": suite_versions[suite][j], "capabilities": suite_contents[suite][j]})

    # ── capability releases ────────────────────────────────────────────────────────────────
    api_of_first = f"{suites[0]}/api"
    next_major = int(platform_versions[-1].split(".")[0]) + 1  # "tested up to the next major"
    capabilities = []
    for index, (ref, versions) in enumerate(cap_versions.items()):
        suite, _, name = ref.partition("/")
        port = 8000 + index
        for k, version in enumerate(versions):
            release = {
                "suite": suite,
                "name": name,
                "version": version,
                "artifact": {
                    "url": f"artifacts/{suite}-{name}-{version}.tar.gz",
                    "sha256": hashlib.sha256(f"{seed}:{ref}@{version}".encode()).hexdigest(),
                    "size": rng.randrange(200_000, 80_000_000),
                },
                "units": [f"id1-{suite}-{name}.service"] + ([f"id1-{suite}-{name}-worker.service"] if index % 4 == 0 else []),
            }
            if index % 5 != 4:
                if index % 5 == 3:
                    release["health"] = {"http": None, "command": [f"/opt/id1/{suite}/{name}/bin/check", "--quick"], "timeout_s": 30}
                else:
                    release["health"] = {"http": f"http://127.0.0.1:{port}/healthz", "command": None, "timeout_s": 60}
            first_j = first_suite_release_of_cap.get((ref, version))
            if first_j is not None and index % 3 != 2:
                requires: dict = {}
                first_p = first_platform_of_suite_release.get((suite, first_j))
                if first_p is not None and k % 2 == 0:
                    floor = platform_versions[first_p].split(".")
                    requires["platform"] = f">={floor[0]}.{floor[1]},<{next_major}"
                needs = {}
                if name != "api":
                    needs[f"{suite}/api"] = f">={suite_contents[suite][first_j]['api']}"
                if suite != suites[0] and index % 3 == 0:
                    # The first suite's api as it was in the first platform that has this version.
                    core_j = platform_suites[first_p][suites[0]] if first_p is not None else 0
                    needs[api_of_first] = f">={suite_contents[suites[0]][core_j]['api']}"
                if needs:
                    requires["capabilities"] = needs
                if requires:
                    release["requires"] = requires
            capabilities.append(release)

    # ── advisories ────────────────────────────────────────────────────────────────────────
    refs = list(cap_versions)
    severities = [s for s, weight in SEVERITY_WEIGHTS for _ in range(weight)]
    advisories = []
    year = NOW.year
    for a in range(n["advisories"]):
        ref = refs[(a * 7919) % len(refs)]
        versions = cap_versions[ref]
        severity = severities[rng.randrange(len(severities))]
        if ref in hotfix and a < len(refs):
            severity = "critical"
            fixed = versions[-1]  # fixed only by the standalone hotfix
            affected = f"<{fixed}"
        elif a in (11, 23):
            severity = "critical"
            affected = f">={versions[-3]}"  # no fix in the feed: the capability is exposed
        else:
            fixed_at = rng.randrange(1, len(versions))
            fixed = versions[fixed_at]
            if rng.random() < 0.3 and fixed_at >= 3:
                affected = f">={versions[fixed_at - rng.randrange(1, 3)]},<{fixed}"
            else:
                affected = f"<{fixed}"
        advisories.append({
            "id": f"ID1-SA-{year}-{a + 1:04d}",
            "severity": severity,
            "capability": ref,
            "affected": affected,
            "summary": f"{ref} {affected}: {rng.choice(('privilege escalation', 'denial of service', 'information disclosure', 'request smuggling', 'path traversal'))} in {ref.partition('/')[2]}",
            "published_at": iso(NOW - timedelta(hours=rng.randrange(1, 24 * 300))),
        })

    # ── withdrawn: old releases only, so the newest platforms stay usable ─────────────────
    withdrawn = [f"platform@{platform_versions[n_platforms // 3]}"]
    withdrawn.append(f"{suites[-1]}@{suite_versions[suites[-1]][2]}")
    for ref in refs[1 : len(refs) : max(1, len(refs) // 4)]:
        withdrawn.append(f"{ref}@{cap_versions[ref][1]}")

    return {
        "format": 1,
        "serial": 1000 + seed,
        "issued_at": iso(NOW - timedelta(hours=6)),
        "expires_at": iso(NOW + timedelta(days=14)),
        "platforms": platforms,
        "suites": suite_releases,
        "capabilities": capabilities,
        "advisories": advisories,
        "withdrawn": withdrawn,
    }


def describe(data: bytes) -> dict[str, int]:
    """Counts of every section of a feed, for the benchmark's table."""
    feed = json.loads(data)
    return {
        "bytes": len(data),
        "platforms": len(feed["platforms"]),
        "suites": len({release["name"] for release in feed["suites"]}),
        "suite_releases": len(feed["suites"]),
        "capabilities": len({(c["suite"], c["name"]) for c in feed["capabilities"]}),
        "capability_releases": len(feed["capabilities"]),
        "advisories": len(feed["advisories"]),
        "critical": sum(1 for a in feed["advisories"] if a["severity"] == "critical"),
        "withdrawn": len(feed["withdrawn"]),
    }
