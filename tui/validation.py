"""Checking a pin before it is sent (DESIGN.md §5): the level, a name of that level, and a PEP 440
version or specifier, with ``packaging``; names and versions against the feed when it is known.
The agent checks again; this only saves a round trip and says what is wrong in place."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

LEVELS = ("platform", "suite", "capability")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class PinInput:
    level: str
    name: str
    version: str
    reason: str = ""


def pin_problems(pin: PinInput, available: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Every problem with ``pin``, worded for the admin; empty when it may be sent.

    ``available`` is the API's ``versions.available``: ``platform`` and ``suite/capability``
    to the versions in the feed (left out when there is no feed yet).
    """
    problems: list[str] = []
    level, name, version = pin.level, pin.name.strip(), pin.version.strip()
    if level not in LEVELS:
        problems.append(f"level must be one of {', '.join(LEVELS)}")
    if level == "platform" and name != "platform":
        problems.append('a platform pin is named "platform"')
    elif level == "suite" and not _NAME.match(name):
        problems.append("a suite name is lower-case letters, digits, - or _ (e.g. core)")
    elif level == "capability":
        suite, slash, capability = name.partition("/")
        if not slash or not _NAME.match(suite) or not _NAME.match(capability):
            problems.append("a capability is named suite/capability (e.g. core/auth)")
    if available and not problems:
        suites = {ref.partition("/")[0] for ref in available if ref != "platform"}
        if level == "suite" and name not in suites:
            problems.append(f"the feed has no suite {name} (it has {', '.join(sorted(suites))})")
        if level == "capability" and name not in available:
            problems.append(f"the feed has no capability {name}")
    if not version:
        problems.append("version: a version (1.2.0) or a specifier (~=1.2.0) is needed")
    else:
        exact = _exact(version)
        if exact is None and not _specifier(version):
            problems.append(f"version: {version!r} is neither a PEP 440 version nor a specifier such as ~=1.2.0")
        elif exact is not None and available and level != "suite" and name in available:
            known = available[name]
            if known and not any(_same(exact, other) for other in known):
                problems.append(f"version: the feed has no {name} {version} (it has {', '.join(known[:6])})")
    return problems


def _exact(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _specifier(text: str) -> bool:
    try:
        return bool(SpecifierSet(text))
    except InvalidSpecifier:
        return False


def _same(version: Version, other: str) -> bool:
    try:
        return Version(other) == version
    except InvalidVersion:
        return False
