"""PEP 440 versions and specifiers, parsed once per distinct string.

A large feed repeats the same few hundred version strings tens of thousands of times (every
platform release names a version of every suite), so parsing is memoised: the feed keeps plain
strings and the planner asks here for the parsed form.
"""

from __future__ import annotations

from functools import lru_cache

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version


@lru_cache(maxsize=65536)
def parse_version(text: str) -> Version:
    """The parsed version; raises ValueError with a readable message."""
    try:
        return Version(text)
    except InvalidVersion:
        raise ValueError(f"{text!r} is not a PEP 440 version") from None


@lru_cache(maxsize=16384)
def parse_specifier(text: str) -> SpecifierSet:
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise ValueError(f"{text!r} is not a PEP 440 version specifier") from None


def is_exact(text: str) -> bool:
    """A bare version (``1.2.0``) asks for exactly that release; anything else is a specifier."""
    try:
        parse_version(text)
    except ValueError:
        return False
    return True


def check_version_or_specifier(text: str) -> str:
    """Validate a pin's ``version``: a bare version or a PEP 440 specifier."""
    if not is_exact(text):
        try:
            parse_specifier(text)
        except ValueError:
            raise ValueError(f"{text!r} is neither a PEP 440 version nor a specifier such as ~=1.2.0") from None
    return text


@lru_cache(maxsize=16384)
def mentions_prerelease(text: str) -> bool:
    """Whether a specifier names a pre-release (``>=2.6.0rc1``), which lets it match pre-releases."""
    for clause in parse_specifier(text):
        try:
            if Version(clause.version).is_prerelease:
                return True
        except InvalidVersion:  # wildcards such as ==2.*
            continue
    return False


@lru_cache(maxsize=65536)
def matches(spec: str, version: str, *, prereleases: bool = True) -> bool:
    """Whether ``version`` satisfies ``spec``; pre-releases match when explicitly allowed."""
    return parse_specifier(spec).contains(parse_version(version), prereleases=prereleases)
