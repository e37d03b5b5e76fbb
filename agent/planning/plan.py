"""The planner: feed + policy + pins + installed manifest + clock → plan. Pure: no I/O, no globals.

    target   what should run: pins and latest (``resolve``), then security fixes (``security``),
             then compatibility checked (``compat``)
    next     the installed manifest with every ``apply`` change made: what the agent deploys now
    changes  installed → next (action ``apply``), then next → target (action from the channel)

Forced security fixes of the installed versions are ``apply`` whatever the channel, window or
pins. A change its channel would apply but that needs a change still waiting (or that would break
a capability staying put) is held back and reported ``deferred``, so ``next`` is always a
compatible manifest. A channel never moves a capability from a version that no enforced advisory
affects onto one that is affected (an exposed target); such a change is held. An approval binds
to the target's ``content_hash()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from packaging.version import Version

from agent.config import PolicyConfig, VersionPin
from agent.feed.catalog import PLATFORM, Catalog
from agent.feed.model import check_release_ref, split_release_ref
from agent.planning.compat import unmet_requirements
from agent.planning.manifest import DeployedCapability, DeployedSuite, Manifest
from agent.planning.model import ACTION_OF_CHANNEL, APPLY, AWAIT_APPROVAL, HOLD, INVALIDATING, Change, Plan, Problem
from agent.planning.resolve import Resolution, resolve_target
from agent.planning.rollout import wariness
from agent.planning.security import Enforcement, enforce_advisories, enforced_advisories
from agent.planning.selection import Selection
from agent.versions import parse_version


def make_plan(
    catalog: Catalog,
    policy: PolicyConfig,
    pins: Sequence[VersionPin],
    installed: Manifest | None,
    *,
    now: datetime,
    instance_id: str,
    blocked: Iterable[str] = (),
    approved_target: str | None = None,
    halted: Mapping[str, Sequence[str]] | None = None,
) -> Plan:
    """Plan this host. ``blocked`` holds release refs (``core/auth@1.0.2``, ``platform@2.6.0``)
    not to be chosen automatically; ``approved_target`` is the ``content_hash()`` of an approved
    target: its ``await-approval`` changes become ``apply``. ``halted`` holds the capability
    versions the host's fleet group stopped (``core/auth@1.1.0`` → the hosts it failed on): a
    change onto one is held whatever its action, a forced fix included, with problem
    ``fleet-halted``."""
    selection = Selection(
        catalog=catalog,
        allow_prerelease=policy.allow_prerelease,
        blocked=parse_blocked(blocked),
        now=now,
        host_wariness=wariness(instance_id),
    )
    resolution = resolve_target(selection, pins)
    problems = list(resolution.problems)
    target = resolution.target
    if target is not None and installed is not None:
        target, republished = _keep_deployed_bytes(target, installed)
        problems += republished
    if target is not None:
        target, _, exposed = enforce_advisories(
            target,
            selection,
            policy.enforce_severity,
            platform=target.platform,
            describe_override=lambda ref, entry: _describe_choice(resolution, ref, entry),
        )
        problems += exposed
        problems += _withdrawn_in(target, catalog)
        problems += _incompatibilities(target)

    forced: dict[str, Enforcement] = {}
    if installed is not None:
        _, enforcements, exposed = enforce_advisories(
            installed, selection, policy.enforce_severity, platform=installed.platform
        )
        problems += exposed
        forced = {enforcement.capability: enforcement for enforcement in enforcements}

    valid = target is not None and not any(problem.code in INVALIDATING for problem in problems)
    approved = valid and approved_target is not None and approved_target == target.content_hash()
    next_manifest, changes, deferred = _next_and_changes(
        installed, target, valid, approved, forced, policy, resolution,
        affected=lambda ref, entry: bool(enforced_advisories(catalog, ref, entry.version, policy.enforce_severity)),
        halted=halted or {},
    )
    problems += deferred
    return Plan(
        installed=installed,
        target=target,
        next=next_manifest,
        changes=tuple(changes),
        problems=tuple(dict.fromkeys(problems)),
    )


def parse_blocked(refs: Iterable[str]) -> frozenset[tuple[str, Version]]:
    blocked = set()
    for ref in refs:
        check_release_ref(ref)
        name, version = split_release_ref(ref)
        blocked.add((name, parse_version(version)))
    return frozenset(blocked)


def _describe_choice(resolution: Resolution, ref: str, entry: DeployedCapability) -> str | None:
    """The pin a security fix overrides, e.g. ``suite pin core ~=1.2.0 chose 1.0.0``."""
    suite = ref.partition("/")[0]
    pin_key = {
        "pin:capability": ("capability", ref),
        "pin:suite": ("suite", suite),
        "pin:platform": ("platform", PLATFORM),
    }.get(entry.source)
    if pin_key is None:
        return None
    return f"{resolution.pins[pin_key].describe()} chose {entry.version}"


def _keep_deployed_bytes(target: Manifest, installed: Manifest) -> tuple[Manifest, list[Problem]]:
    """A version's bytes never change on a host: where the feed gives a version this host runs
    another artifact (a republished release), the target keeps the installed entry and the
    problem says so. The vendor publishes a new version to change what runs."""
    have = installed.capabilities()
    problems = []
    suites = {}
    for suite_name, suite in target.suites.items():
        entries = {}
        for name, entry in suite.capabilities.items():
            ref = f"{suite_name}/{name}"
            running = have.get(ref)
            if running is not None and running.artifact.sha256 != entry.artifact.sha256 \
                    and parse_version(running.version) == parse_version(entry.version):
                problems.append(Problem("republished", f"{ref} {entry.version} was republished with other bytes (sha256 "
                                        f"{entry.artifact.sha256[:12]}…; this host runs {running.artifact.sha256[:12]}…): "
                                        "the host keeps what it runs; a changed release needs a new version"))
                entry = running.model_copy(update={"source": entry.source, "overrides": entry.overrides})
            entries[name] = entry
        suites[suite_name] = suite.model_copy(update={"capabilities": entries})
    if not problems:
        return target, []
    return target.model_copy(update={"suites": suites}), problems


def _withdrawn_in(target: Manifest, catalog: Catalog) -> list[Problem]:
    """Withdrawn releases that an exact platform or suite pin brought in."""
    problems = []
    for suite_name, suite in target.suites.items():
        if suite.version is not None and catalog.is_withdrawn(suite_name, parse_version(suite.version)):
            problems.append(Problem("withdrawn", f"suite {suite_name} {suite.version} is withdrawn by the vendor"))
    for ref, entry in target.capabilities().items():
        if catalog.is_withdrawn(ref, parse_version(entry.version)):
            problems.append(Problem("withdrawn", f"{ref} {entry.version} ({entry.source}) is withdrawn by the vendor"))
    return problems


def _incompatibilities(target: Manifest) -> list[Problem]:
    versions = target.versions()
    problems = []
    for ref, entry in target.capabilities().items():
        for unmet in unmet_requirements(ref, entry.version, entry.requires, target.platform, versions):
            problems.append(Problem("incompatible", f"{unmet.text}; {ref} comes from {entry.source}"))
    return problems


def _differs(have: DeployedCapability | None, want: DeployedCapability | None) -> bool:
    if have is None or want is None:
        return have is not want
    # ``1.0`` and ``1.0.0`` are one version: a feed that spells it otherwise than the one it was
    # deployed from changes nothing (and makes no second release folder).
    return have.artifact.sha256 != want.artifact.sha256 or (
        have.version != want.version and parse_version(have.version) != parse_version(want.version))


def _version(entry: DeployedCapability | None) -> str | None:
    return entry.version if entry is not None else None


def _next_and_changes(
    installed: Manifest | None,
    target: Manifest | None,
    valid: bool,
    approved: bool,
    forced: dict[str, Enforcement],
    policy: PolicyConfig,
    resolution: Resolution,
    affected: Callable[[str, DeployedCapability], bool],
    halted: Mapping[str, Sequence[str]],
) -> tuple[Manifest | None, list[Change], list[Problem]]:
    have_all = installed.capabilities() if installed is not None else {}
    stopped: dict[str, Problem] = {}

    def halts(ref: str, entry: DeployedCapability | None) -> bool:
        """``entry`` is a version the fleet group halted (noted as a problem)."""
        if entry is None:
            return False
        hosts = halted.get(f"{ref}@{entry.version}")
        if hosts is None:
            return False
        stopped.setdefault(ref, Problem("fleet-halted", f"{ref} {entry.version} is halted for this host's fleet group: it failed "
                                        f"on {', '.join(hosts) or 'another host'} (id1 fleet resume {ref}@{entry.version} lifts it)"))
        return True
    want_all = target.capabilities() if target is not None else {}
    refs = sorted(have_all.keys() | want_all.keys()) if target is not None else sorted(have_all)

    def channel_action(ref: str) -> str:
        if not valid:
            return HOLD
        action = ACTION_OF_CHANNEL[policy.channel_for(ref.partition("/")[0])]
        return APPLY if action == AWAIT_APPROVAL and approved else action

    def source_of(ref: str, entry: DeployedCapability | None) -> str:
        if entry is not None:
            return entry.source
        suite = ref.partition("/")[0]  # a removal: the suite (or platform) choice dropped it
        return resolution.suite_sources.get(suite, resolution.platform_source)

    def forced_entry(ref: str) -> DeployedCapability | None:
        enforcement = forced.get(ref)
        if enforcement is None:
            return have_all.get(ref)
        fix = DeployedCapability.from_release(enforcement.fix, enforcement.source)
        return have_all.get(ref) if halts(ref, fix) else fix

    def worsens(stays: DeployedCapability | None, want: DeployedCapability | None, ref: str) -> bool:
        """Moving onto an affected version (the target is exposed) from one that is not."""
        return want is not None and stays is not None and affected(ref, want) and not affected(ref, stays)

    # Channel applies go straight to the target; everything else stays (or takes its forced fix).
    next_all = {ref: forced_entry(ref) for ref in have_all}
    channel_applied: set[str] = set()
    for ref in refs:
        want = want_all.get(ref) if target is not None else have_all.get(ref)
        stays = next_all.get(ref)
        if valid and channel_action(ref) == APPLY and _differs(stays, want) and not worsens(stays, want, ref) \
                and not halts(ref, want):
            next_all[ref] = want
            channel_applied.add(ref)

    deferred = _defer_breaking_applies(next_all, channel_applied, want_all, target, installed, forced_entry)

    first: list[Change] = []
    second: list[Change] = []
    for ref in refs:
        have, now_entry = have_all.get(ref), next_all.get(ref)
        want = want_all.get(ref) if target is not None else now_entry
        if _differs(have, now_entry):
            first.append(Change(ref, _version(have), _version(now_entry), source_of(ref, now_entry), APPLY, now_entry.overrides if now_entry else None))
        if _differs(now_entry, want):
            # What the channel would apply and is still different was held back: deferred, or
            # it would land on an affected version.
            action = channel_action(ref)
            action = HOLD if action == APPLY or halts(ref, want) else action
            second.append(Change(ref, _version(now_entry), _version(want), source_of(ref, want), action, want.overrides if want else None))

    next_manifest = _assemble_next(next_all, installed, target, valid)
    return next_manifest, first + second, [*deferred.values(), *stopped.values()]


def _defer_breaking_applies(next_all, channel_applied, want_all, target, installed, forced_entry) -> dict[str, Problem]:
    """Undo channel applies that would leave ``next`` incompatible, until it is compatible.

    Returns the ``deferred`` problem of every capability held back, by ``suite/capability``."""
    deferred: dict[str, Problem] = {}
    while channel_applied:
        platform = _next_platform(next_all, want_all, target, installed, valid=True)
        versions = {ref: entry.version for ref, entry in next_all.items() if entry is not None}
        culprits: dict[str, str] = {}
        for ref, entry in next_all.items():
            if entry is None:
                continue
            for unmet in unmet_requirements(ref, entry.version, entry.requires, platform, versions):
                culprit = ref if ref in channel_applied else unmet.needed if unmet.needed in channel_applied else None
                if culprit is not None:
                    culprits.setdefault(culprit, unmet.text)
        if not culprits:
            break
        for ref, line in culprits.items():
            channel_applied.discard(ref)
            next_all[ref] = forced_entry(ref)
            if next_all[ref] is None:
                del next_all[ref]
            deferred[ref] = Problem("deferred", f"{ref} {_version(want_all.get(ref)) or '(removal)'} waits: {line}")
    return deferred


def _next_platform(next_all, want_all, target, installed, valid) -> str | None:
    complete = valid and target is not None and all(
        not _differs(next_all.get(ref), want_all.get(ref)) for ref in next_all.keys() | want_all.keys()
    )
    if complete:
        return target.platform
    return installed.platform if installed is not None else None


def _assemble_next(next_all, installed, target, valid) -> Manifest | None:
    entries = {ref: entry for ref, entry in next_all.items() if entry is not None}
    if installed is None and not entries:
        return None
    want_all = target.capabilities() if target is not None else {}
    by_suite: dict[str, dict[str, DeployedCapability]] = {}
    for ref in sorted(entries):
        suite, _, name = ref.partition("/")
        by_suite.setdefault(suite, {})[name] = entries[ref]
    suites = {}
    for suite_name, capabilities in by_suite.items():
        suites[suite_name] = DeployedSuite(
            version=_suite_version(suite_name, capabilities, installed, target), capabilities=capabilities
        )
    return Manifest(platform=_next_platform(next_all, want_all, target, installed, valid), suites=suites)


def _suite_version(suite_name, capabilities, installed, target) -> str | None:
    """The suite release the next suite is: the target's once fully applied, else the installed one's."""
    for manifest in (target, installed):
        suite = manifest.suites.get(suite_name) if manifest is not None else None
        if suite is not None and not any(
            _differs(suite.capabilities.get(name), capabilities.get(name))
            for name in suite.capabilities.keys() | capabilities.keys()
        ):
            return suite.version
    installed_suite = installed.suites.get(suite_name) if installed is not None else None
    return installed_suite.version if installed_suite is not None else None
