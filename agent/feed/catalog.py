"""A validated feed, indexed for the planner, with every cross-reference checked.

``parse_feed(bytes)`` is the one way from feed bytes to a ``Catalog``: it validates the shape
(pydantic), then that every reference names a release the feed contains, and reports every
problem by its path (``platforms[3].suites.core: no suite release core 9.9.9 in the feed``).

A key written twice in one JSON object is refused too, by its path: JSON parsers disagree on
which value counts (pydantic keeps the last, others the first), so a reviewer's tool and the
agent could read two different feeds from the same signed bytes. See "duplicate keys" below.
"""

from __future__ import annotations

import gc
import json
from typing import Any
from dataclasses import dataclass, field
from operator import attrgetter

from packaging.version import Version
from pydantic import ValidationError

from agent.errors import FeedInvalid, Issue
from agent.feed.switch import PORT, health_mentions_port, switch_problems
from agent.feed.units import unit_file_name, unit_name_problem
from agent.feed.model import (
    Advisory,
    CapabilityRelease,
    Feed,
    FeedArtifact,
    PlatformRelease,
    Rollout,
    SuiteRelease,
    issues_from_validation_error,
    split_release_ref,
)
from agent.versions import parse_specifier, parse_version

PLATFORM = "platform"


@dataclass(frozen=True, slots=True)
class Catalog:
    """The feed's releases by name and parsed version. Release lists are sorted newest first."""

    feed: Feed
    platforms: dict[Version, PlatformRelease]
    suites: dict[str, dict[Version, SuiteRelease]]
    capabilities: dict[str, dict[Version, CapabilityRelease]]
    advisories: dict[str, list[Advisory]]
    withdrawn: frozenset[tuple[str, Version]]
    _newest_first: dict[str, list[Version]] = field(default_factory=dict, repr=False)

    @property
    def serial(self) -> int:
        return self.feed.serial

    def versions(self, name: str) -> list[Version]:
        """Every version of ``platform``, a suite or a ``suite/capability``, newest first."""
        ordered = self._newest_first.get(name)
        if ordered is None:
            releases = self.platforms if name == PLATFORM else self.suites.get(name) or self.capabilities.get(name, {})
            ordered = self._newest_first[name] = sorted(releases, reverse=True)
        return ordered

    def is_withdrawn(self, name: str, version: Version) -> bool:
        return (name, version) in self.withdrawn


def parse_feed(data: bytes | str, source: str = "feed.json") -> Catalog:
    """Validate feed bytes and index them; raises FeedInvalid naming every problem by path."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    keys_written = _keys_written(raw)  # while the bytes are fresh in the cache
    collecting = gc.isenabled()
    gc.disable()  # tens of thousands of small objects, none cyclic: collections would only cost
    try:
        try:
            feed = Feed.model_validate_json(data)
        except ValidationError as error:
            raise FeedInvalid(source, issues_from_validation_error(error)) from None
        issues = [] if keys_written == _keys_read(feed) else _find_duplicate_keys(raw)
        catalog, more = index_feed(feed)
    finally:
        if collecting:
            gc.enable()
    issues += more
    if issues:
        raise FeedInvalid(source, issues)
    return catalog


# ── duplicate keys ───────────────────────────────────────────────────────────────────────────
#
# Finding them means reading every key of the feed again, and a second JSON parse (json.loads
# with a hook) would cost more than the whole planner. So first a count: every key in the text
# ends with a quote, blanks, a colon; with the blanks taken out, each is one ``":``, and a
# ``":`` that is not a key's end can only come from inside a string (an escaped quote), so the
# count in the text is at least the number of keys written. The validated feed says how many
# keys it read (each model's fields set, each dict's entries). Equal counts prove that every
# key written was read once: no duplicate. A feed with more (a duplicate, a key this agent
# does not know, an escaped quote before a colon) is parsed again to know which it is.

_BLANKS = b" \t\r\n"
_FIELDS_SET = attrgetter("__pydantic_fields_set__")  # what ``model_fields_set`` returns, without a call


def _keys_written(data: bytes) -> int:
    """At least the number of keys in the JSON text (see above)."""
    return data.translate(None, _BLANKS).count(b'":')


def _keys_read(feed: Feed) -> int:
    """How many keys validation read: the fields set of every model, the entries of every dict.
    A model whose fields are all required (an artifact, an advisory, a suite release, a rollout)
    read as many keys as it has fields, or it would not have validated: those are not walked."""
    # map() and filter() rather than loops: this runs on every feed, over every release.
    fields, count = _FIELDS_SET, len(feed.model_fields_set)
    platforms, suites, capabilities = feed.platforms, feed.suites, feed.capabilities
    count += sum(map(len, map(fields, platforms))) + sum(map(len, map(_SUITES, platforms)))
    count += _ROLLOUT_KEYS * sum(1 for _ in filter(None, map(_ROLLOUT, platforms)))
    count += _SUITE_KEYS * len(suites) + sum(map(len, map(_CAPABILITIES, suites)))
    count += sum(map(len, map(fields, capabilities))) + _ARTIFACT_KEYS * len(capabilities)
    count += sum(map(len, map(fields, filter(None, map(_HEALTH, capabilities)))))
    count += sum(map(len, map(fields, filter(None, map(_SWITCH, capabilities)))))
    requires = list(filter(None, map(_REQUIRES, capabilities)))
    count += sum(map(len, map(fields, requires))) + sum(map(len, map(_CAPABILITIES, requires)))
    return count + _ADVISORY_KEYS * len(feed.advisories)


def _all_required(model: type) -> int:
    assert all(field.is_required() for field in model.model_fields.values()), model
    return len(model.model_fields)


_ROLLOUT_KEYS, _SUITE_KEYS = _all_required(Rollout), _all_required(SuiteRelease)
_ARTIFACT_KEYS, _ADVISORY_KEYS = _all_required(FeedArtifact), _all_required(Advisory)
_SUITES, _ROLLOUT, _CAPABILITIES = attrgetter("suites"), attrgetter("rollout"), attrgetter("capabilities")
_HEALTH, _REQUIRES, _SWITCH = attrgetter("health"), attrgetter("requires"), attrgetter("switch")
_HTTP, _COMMAND = attrgetter("http"), attrgetter("command")


class _Object(dict):
    """A JSON object as parsed, remembering the keys it was given more than once."""

    def __init__(self, pairs: list[tuple[str, Any]]):
        super().__init__(pairs)
        self.repeated: list[str] = []
        if len(self) < len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    self.repeated.append(key)
                seen.add(key)


def _find_duplicate_keys(data: bytes) -> list[Issue]:
    """Every key given twice in its object, by its path; run only when the counts differ."""
    repeated: list[_Object] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> _Object:
        parsed = _Object(pairs)
        if parsed.repeated:
            repeated.append(parsed)
        return parsed

    try:
        document = json.loads(data, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError) as error:  # pydantic read it; a stricter reader cannot
        return [Issue("", f"not JSON that every reader reads alike: {error}")]
    if not repeated:  # keys this agent does not know, or a quote escaped before a colon
        return []
    issues: list[Issue] = []
    pending: list[tuple[str, Any]] = [("", document)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, _Object):
            for key in dict.fromkeys(value.repeated):
                issues.append(Issue(_key_path(path, key), "this key is written twice in its object: JSON readers "
                                    "disagree on which value counts, so the feed is refused"))
            pending.extend((_key_path(path, key), item) for key, item in value.items())
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return sorted(issues, key=lambda issue: issue.path)


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Checker:
    """Parses versions and specifiers, recording a bad one by its path instead of raising."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.good_specifiers: set[str] = set()

    # ``where`` is the path in parts, joined only when something is wrong: most feeds are fine,
    # and building tens of thousands of path strings would be most of the indexing time.
    def version(self, where: tuple, text: str) -> Version | None:
        try:
            return parse_version(text)
        except ValueError as error:
            self.issues.append(Issue(_path(where), str(error)))
            return None

    def specifier(self, where: tuple, text: str | None) -> None:
        if text is None or text in self.good_specifiers:  # a feed repeats a few specifiers thousands of times
            return
        try:
            parse_specifier(text)
        except ValueError as error:
            self.issues.append(Issue(_path(where), str(error)))
        else:
            self.good_specifiers.add(text)


def _path(where: tuple) -> str:
    """("capabilities", 3, ".version") → capabilities[3].version"""
    section, index, *rest = where
    return f"{section}[{index}]" + "".join(map(str, rest))


def index_feed(feed: Feed) -> tuple[Catalog, list[Issue]]:
    check = _Checker()
    issues = check.issues
    if feed.expires_at <= feed.issued_at:
        issues.append(Issue("expires_at", f"{feed.expires_at.isoformat()} is not after issued_at"))

    refs = [f"{release.suite}/{release.name}" for release in feed.capabilities]
    capabilities = _index_releases(check, "capabilities", feed.capabilities, refs)
    _check_units(feed.capabilities, refs, issues)
    switched = any(map(_SWITCH, feed.capabilities))  # most feeds have no ``switch`` at all
    if switched or _any_health_names_port(feed.capabilities):
        _check_switches(feed.capabilities, refs, issues)
    # Most releases repeat what others say (the same specifiers, the same references): each is
    # first checked as a whole against what is known to be good (set operations, in C), and
    # only one that is not is gone through entry by entry, naming what is wrong.
    good = check.good_specifiers
    for index, release in enumerate(feed.capabilities):
        requires = release.requires
        if requires is None:
            continue
        needs = requires.capabilities
        if (requires.platform is None or requires.platform in good) and good.issuperset(needs.values()) \
                and capabilities.keys() >= needs.keys():
            continue
        check.specifier(("capabilities", index, ".requires.platform"), requires.platform)
        for needed, spec in needs.items():
            check.specifier(("capabilities", index, ".requires.capabilities.", needed), spec)
            if needed not in capabilities:
                issues.append(Issue(f"capabilities[{index}].requires.capabilities.{needed}", f"no capability {needed} in the feed"))

    # References are checked by their exact spelling first (the common case, no parsing), then
    # as PEP 440 versions, so ``1.2`` still finds a release written ``1.2.0``.
    capability_spellings = _spellings_by_suite(capabilities)
    suites = _index_releases(check, "suites", feed.suites, [release.name for release in feed.suites])
    for index, release in enumerate(feed.suites):
        if release.name == PLATFORM:
            issues.append(Issue(f"suites[{index}].name", '"platform" is reserved and cannot name a suite'))
        if capability_spellings.get(release.name, _NONE).issuperset(release.capabilities.items()):
            continue
        prefix = release.name + "/"
        for name, text in release.capabilities.items():
            ref = prefix + name
            if (name, text) not in capability_spellings.get(release.name, _NONE):
                _check_reference(check, ("suites", index, ".capabilities.", name), text, capabilities.get(ref),
                                 f"no capability release {ref} {text} in the feed")

    suite_spellings = {(name, release.version) for name, releases in suites.items() for release in releases.values()}
    platforms = _index_releases(check, "platforms", feed.platforms, [PLATFORM] * len(feed.platforms)).get(PLATFORM, {})
    for index, release in enumerate(feed.platforms):
        if suite_spellings.issuperset(release.suites.items()):
            continue
        for suite, text in release.suites.items():
            if (suite, text) not in suite_spellings:
                _check_reference(check, ("platforms", index, ".suites.", suite), text, suites.get(suite),
                                 f"no suite release {suite} {text} in the feed")

    advisories: dict[str, list[Advisory]] = {}
    for index, advisory in enumerate(feed.advisories):
        if advisory.capability not in capabilities:
            issues.append(Issue(f"advisories[{index}].capability", f"no capability {advisory.capability} in the feed"))
        check.specifier(("advisories", index, ".affected"), advisory.affected)
        advisories.setdefault(advisory.capability, []).append(advisory)

    if switched:
        _check_public_ports(feed.platforms, suites, capabilities, issues)

    withdrawn = set()
    for index, ref in enumerate(feed.withdrawn):
        name, text = split_release_ref(ref)
        version = check.version(("withdrawn", index), text)
        if version is None:
            continue
        releases = platforms if name == PLATFORM else (capabilities if "/" in name else suites).get(name, {})
        if version not in releases:
            issues.append(Issue(f"withdrawn[{index}]", f"no release {name} {text} in the feed"))
        withdrawn.add((name, version))

    catalog = Catalog(
        feed=feed,
        platforms=platforms,
        suites=suites,
        capabilities=capabilities,
        advisories=advisories,
        withdrawn=frozenset(withdrawn),
    )
    return catalog, issues


def _check_units(releases: list[CapabilityRelease], refs: list[str], issues: list[Issue]) -> None:
    """Every unit is named for its capability (agent.feed.units), listed once per release, and
    its file is owned by one capability only, across the feed. A blue-green release lists
    templates instead, whose names ``_check_switches`` checks."""
    owners: dict[str, str] = {}  # unit file → capability
    checked: set[tuple[str, str]] = set()  # most releases repeat their units: check each pair once
    sound: set[tuple] = set()  # (ref, blue-green, *units) of releases found without a problem
    for index, release in enumerate(releases):
        ref = refs[index]
        templates = release.blue_green
        listed = (ref, templates, *release.units)
        if listed in sound:  # the same units as an earlier release of this capability, all fine
            continue
        problems = len(issues)
        seen: set[str] = set()
        for position, unit in enumerate(release.units):
            if unit in seen:
                issues.append(Issue(f"capabilities[{index}].units[{position}]", f"{unit} is listed twice"))
                continue
            seen.add(unit)
            if not templates and (ref, unit) not in checked:
                problem = unit_name_problem(ref, unit)
                if problem:
                    issues.append(Issue(f"capabilities[{index}].units[{position}]", problem))
                    continue
                checked.add((ref, unit))
            owner = owners.setdefault(unit_file_name(unit), ref)
            if owner != ref:
                issues.append(Issue(f"capabilities[{index}].units[{position}]", f"{unit_file_name(unit)} is already a unit of {owner}"))
        if len(issues) == problems:
            sound.add(listed)


def _any_health_names_port(releases: list[CapabilityRelease]) -> bool:
    """Whether a health check names ``@PORT@``, looked for in all of them joined at once (in C:
    this runs on every feed). NUL cannot be part of ``@PORT@``, so no match spans two."""
    healths = list(filter(None, map(_HEALTH, releases)))
    if PORT in "\0".join(filter(None, map(_HTTP, healths))):
        return True
    commands = list(filter(None, map(_COMMAND, healths)))
    return PORT in "\0".join(command if isinstance(command, str) else "\0".join(command) for command in commands)


def _check_switches(releases: list[CapabilityRelease], refs: list[str], issues: list[Issue]) -> None:
    """agent.feed.switch's rules, for the releases they concern: those with a ``switch`` and
    those whose health names ``@PORT@`` (most releases have neither)."""
    for index, release in enumerate(releases):
        if release.switch is None and not health_mentions_port(release.health):
            continue
        for where, problem in switch_problems(refs[index], release.switch, release.units, release.health):
            issues.append(Issue(f"capabilities[{index}].{where}", problem))


def _check_public_ports(
    platforms: list[PlatformRelease],
    suites: dict[str, dict[Version, SuiteRelease]],
    capabilities: dict[str, dict[Version, CapabilityRelease]],
    issues: list[Issue],
) -> None:
    """No two blue-green capabilities of one platform release claim one public port: nginx can
    listen there for one of them only."""
    ports: dict[str, dict[Version, int]] = {}  # ref → version → public port, blue-green releases only
    for ref, releases in capabilities.items():
        for version, release in releases.items():
            if release.blue_green and release.switch.port is not None:
                ports.setdefault(ref, {})[version] = release.switch.port
    if len(ports) < 2:  # the common case: one capability alone cannot clash with itself
        return
    versions: dict[str, Version | None] = {}  # spelling → parsed (bad ones were reported already)

    def parsed(text: str) -> Version | None:
        if text not in versions:
            try:
                versions[text] = parse_version(text)
            except ValueError:
                versions[text] = None
        return versions[text]

    for index, platform in enumerate(platforms):
        claimed: dict[int, tuple[str, str]] = {}  # public port → (capability, version)
        for suite, suite_text in platform.suites.items():
            suite_release = suites.get(suite, {}).get(parsed(suite_text))
            if suite_release is None:
                continue
            for name, text in sorted(suite_release.capabilities.items()):
                ref, version = f"{suite}/{name}", parsed(text)
                port = ports.get(ref, {}).get(version)
                if port is None:
                    continue
                other = claimed.setdefault(port, (ref, text))
                if other[0] != ref:
                    issues.append(Issue(f"platforms[{index}]", f"{other[0]} {other[1]} and {ref} {text} both "
                                        f"declare public port {port} (switch.port): each blue-green capability of a "
                                        f"platform release needs a port of its own"))


def _index_releases(check: _Checker, section: str, releases: list, names: list[str]) -> dict[str, dict[Version, Any]]:
    """Releases by name (``names[i]`` is release i's) and parsed version; a release listed twice
    is reported, the first kept."""
    indexed: dict[str, dict[Version, Any]] = {}
    parsed: dict[str, Version] = {}  # many releases share a spelling (1.2.0 of many capabilities)
    for index, release in enumerate(releases):
        version = parsed.get(release.version)
        if version is None:
            version = check.version((section, index, ".version"), release.version)
            if version is None:
                continue
            parsed[release.version] = version
        kept = indexed.setdefault(names[index], {}).setdefault(version, release)  # one hash of the Version
        if kept is not release:
            earlier = releases.index(kept)
            check.issues.append(Issue(f"{section}[{index}]", f"{names[index]} {release.version} is already listed at {section}[{earlier}]"))
    return indexed


_NONE: frozenset = frozenset()


def _spellings_by_suite(capabilities: dict[str, dict[Version, CapabilityRelease]]) -> dict[str, set[tuple[str, str]]]:
    """Suite → every (capability name, version as written) the feed has a release of."""
    spelled: dict[str, set[tuple[str, str]]] = {}
    for ref, releases in capabilities.items():
        suite, _, name = ref.partition("/")
        spelled.setdefault(suite, set()).update({(name, release.version) for release in releases.values()})
    return spelled


def _check_reference(check: _Checker, where: tuple, text: str, releases: dict | None, missing: str) -> None:
    wanted = check.version(where, text)
    if wanted is not None and wanted not in (releases or ()):
        check.issues.append(Issue(_path(where), missing))
