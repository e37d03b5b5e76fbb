"""PEP 440 versions and specifiers, parsed once per distinct string.

A large feed repeats the same few hundred version strings tens of thousands of times (every
platform release names a version of every suite), so parsing is memoised: the feed keeps plain
strings and the planner asks here for the parsed form.

Lengths are bounded before anything is parsed (``MAX_VERSION_LENGTH``, ``MAX_SPECIFIER_LENGTH``):
a version of ten thousand digits is not a version, and its refusal must not cost more than its
reading. Where a version becomes a name (a release folder, a manifest's value, a blocked ref),
``canonical_version`` gives one spelling per version: ``v1.0.0``, `` 1.0.0`` and ``1.0.0`` are
the same release and must not become three folders.
"""

from __future__ import annotations

import re
from functools import lru_cache

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from agent.safe_text import quoted

MAX_VERSION_LENGTH = 128
"""Characters in a version: room for any real one (``2.6.0rc1.post3.dev4+build.20261127.abcdef``)."""
MAX_SPECIFIER_LENGTH = 512
"""Characters in a specifier, which may list several clauses (``>=1.2,<2,!=1.4.1``)."""


@lru_cache(maxsize=65536)
def parse_version(text: str) -> Version:
    """The parsed version; raises ValueError with a readable message."""
    if len(text) > MAX_VERSION_LENGTH:
        raise ValueError(f"{quoted(text)} is not a version: longer than {MAX_VERSION_LENGTH} characters")
    try:
        return Version(text)
    except (InvalidVersion, ValueError):  # ValueError: a number part too long for int()
        raise ValueError(f"{quoted(text)} is not a PEP 440 version") from None


def canonical_version(text: str) -> str:
    """The one spelling of the version ``text`` names (PEP 440 normal form): ``v1.0.0`` and
    `` 1.0.0\\n`` give ``1.0.0``, ``01.2`` gives ``1.2``, ``2.6.0-RC1`` gives ``2.6.0rc1``."""
    if _NORMAL_FORM.fullmatch(text):  # already it, as nearly every version is: no str(Version)
        return text
    return str(parse_version(text))


_NUMBER = r"(?:0|[1-9][0-9]*)"
_NORMAL_FORM = re.compile(rf"{_NUMBER}(?:\.{_NUMBER})*(?:(?:a|b|rc){_NUMBER})?(?:\.post{_NUMBER})?(?:\.dev{_NUMBER})?")
"""What ``str(Version(text))`` gives back unchanged (no epoch, no local part: those take the long way)."""


@lru_cache(maxsize=16384)
def parse_specifier(text: str) -> SpecifierSet:
    if len(text) > MAX_SPECIFIER_LENGTH:
        raise ValueError(f"{quoted(text)} is not a version specifier: longer than {MAX_SPECIFIER_LENGTH} characters")
    try:
        return SpecifierSet(text)
    except (InvalidSpecifier, ValueError):
        raise ValueError(f"{quoted(text)} is not a PEP 440 version specifier") from None


def is_exact(text: str) -> bool:
    """A bare version (``1.2.0``) asks for exactly that release; anything else is a specifier."""
    try:
        parse_version(text)
    except ValueError:
        return False
    return True


def check_version_or_specifier(text: str) -> str:
    """Validate a pin's ``version``: a bare version or a PEP 440 specifier."""
    if len(text) > MAX_SPECIFIER_LENGTH:
        raise ValueError(f"{quoted(text)} is not a version or specifier: longer than {MAX_SPECIFIER_LENGTH} characters")
    if not is_exact(text):
        try:
            parse_specifier(text)
        except ValueError:
            raise ValueError(f"{quoted(text)} is neither a PEP 440 version nor a specifier such as ~=1.2.0") from None
    return text


@lru_cache(maxsize=16384)
def mentions_prerelease(text: str) -> bool:
    """Whether a specifier names a pre-release (``>=2.6.0rc1``), which lets it match pre-releases."""
    for clause in parse_specifier(text):
        try:
            if Version(clause.version).is_prerelease:
                return True
        except (InvalidVersion, ValueError):  # wildcards such as ==2.*
            continue
    return False


@lru_cache(maxsize=65536)
def matches(spec: str, version: str, *, prereleases: bool = True) -> bool:
    """Whether ``version`` satisfies ``spec``; pre-releases match when explicitly allowed."""
    return parse_specifier(spec).contains(parse_version(version), prereleases=prereleases)
