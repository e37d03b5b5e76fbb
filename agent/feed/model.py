"""The release feed as data (DESIGN.md §4): pydantic models and parsing into a validated Feed.

Unknown fields are ignored so that older agents read newer feeds. Versions stay strings here,
checked once per distinct spelling (``agent.versions``); cross-references between releases are
checked by ``agent.feed.catalog`` when the feed is indexed.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from agent.errors import Issue
from agent.versions import MAX_SPECIFIER_LENGTH, MAX_VERSION_LENGTH, parse_specifier, parse_version

SEVERITIES = ("low", "medium", "high", "critical")
Severity = Literal["low", "medium", "high", "critical"]
SwitchMode = Literal["restart", "blue-green"]
SWITCH_MODES: tuple[str, ...] = ("restart", "blue-green")

# Names become folder names (releases/<suite>/<capability>/), so they are kept to a safe alphabet.
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_CAPABILITY_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_REF_PATTERN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(?:/[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?)@(?P<version>\S+)$")


def _check_version(text: str) -> str:
    parse_version(text)
    return text


def _check_specifier(text: str) -> str:
    parse_specifier(text)
    return text


def _check_capability_ref(text: str) -> str:
    if not re.match(_CAPABILITY_REF_PATTERN, text):
        raise ValueError(f"{text!r} is not a capability reference such as core/auth")
    return text


def check_release_ref(text: str) -> str:
    match = _REF_PATTERN.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a release reference such as core/auth@1.0.2 or platform@2.5.1")
    parse_version(match["version"])
    return text


# Checked when the model is validated: for manifests and configs, which are small.
VersionStr = Annotated[str, AfterValidator(_check_version)]
SpecifierStr = Annotated[str, AfterValidator(_check_specifier)]
Name = Annotated[str, Field(pattern=_NAME_PATTERN)]
CapabilityRef = Annotated[str, AfterValidator(_check_capability_ref)]
ReleaseRef = Annotated[str, AfterValidator(check_release_ref)]

# A feed repeats a few hundred version strings tens of thousands of times. Calling back into
# Python for each would cost more than the rest of validation, so in the feed models these are
# plain strings (patterns run inside pydantic-core) and ``agent.feed.catalog`` parses each while
# indexing, reporting a bad one by its path.
FeedVersion = Annotated[str, Field(min_length=1, max_length=MAX_VERSION_LENGTH)]
FeedSpecifier = Annotated[str, Field(min_length=1, max_length=MAX_SPECIFIER_LENGTH)]
FeedCapabilityRef = Annotated[str, Field(pattern=_CAPABILITY_REF_PATTERN)]
FeedReleaseRef = Annotated[str, Field(pattern=_REF_PATTERN.pattern)]


def split_release_ref(ref: str) -> tuple[str, str]:
    """``core/auth@1.0.2`` → (``core/auth``, ``1.0.2``); the ref was validated already."""
    name, _, version = ref.rpartition("@")
    return name, version


class _FeedPart(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Rollout(_FeedPart):
    """A staged rollout: hosts are reached in order of their wariness over ``hours`` from ``start``."""

    start: AwareDatetime
    hours: float = Field(ge=0)


class PlatformRelease(_FeedPart):
    version: FeedVersion
    released_at: AwareDatetime
    suites: dict[Name, FeedVersion]
    rollout: Rollout | None = None
    notes: str | None = None


class SuiteRelease(_FeedPart):
    name: Name
    version: FeedVersion
    capabilities: dict[Name, FeedVersion]


class Artifact(_FeedPart):
    url: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    size: int = Field(ge=0)


# An http(s) URL, or one relative to the feed's (no scheme: nothing before a ':' that comes
# before the first '/', '?' or '#'), without control characters. Not ``file:`` or any other
# scheme: a signed feed names what to download, never a file of the host to read.
_ARTIFACT_URL_PATTERN = r"^(?:[Hh][Tt][Tt][Pp][Ss]?://|[^:/?#\x00-\x1f\x7f]*(?:[/?#]|$))[^\x00-\x1f\x7f]*$"


class FeedArtifact(Artifact):
    """An artifact as a feed names it. A manifest holds a plain ``Artifact`` (its own tests and
    tools may name local files); only a feed is held to http(s)."""

    url: str = Field(min_length=1, pattern=_ARTIFACT_URL_PATTERN)


class HealthCheck(_FeedPart):
    """How to tell the capability works: an HTTP URL answering 2xx, a command exiting 0, or
    (neither given) its units being active; retried until ``timeout_s``."""

    http: str | None = None
    command: str | list[str] | None = None
    timeout_s: float = Field(default=60, gt=0)


class Switch(_FeedPart):
    """How a new version of the capability takes over (docs/feed-format.md, "Switch").

    ``restart`` (the default, and what a release without ``switch`` does): the old version's
    units are stopped and the new one's started. ``blue-green``: the units are templates run as
    two colours, ``@blue`` and ``@green``, each on a private port (``@PORT@``); nginx listens on
    the public ``port`` and passes requests to the live colour, so a new version starts beside
    the old one and takes the traffic over only once healthy. The rules that tie ``switch`` to
    a release's units and health are ``agent.feed.switch``'s."""

    mode: SwitchMode = "restart"
    port: int | None = Field(default=None, ge=1, le=65535)
    """blue-green: the public port nginx listens on for the capability (required); restart: none."""

    @property
    def blue_green(self) -> bool:
        return self.mode == "blue-green"


class Requires(_FeedPart):
    platform: FeedSpecifier | None = None
    capabilities: dict[FeedCapabilityRef, FeedSpecifier] = Field(default_factory=dict)


class CapabilityRelease(_FeedPart):
    suite: Name
    name: Name
    version: FeedVersion
    artifact: FeedArtifact
    units: list[str]
    health: HealthCheck | None = None
    requires: Requires | None = None
    switch: Switch | None = None
    """None: mode restart, as an explicit ``{"mode": "restart"}`` says."""

    @property
    def ref(self) -> str:
        return f"{self.suite}/{self.name}"

    @property
    def blue_green(self) -> bool:
        return self.switch is not None and self.switch.blue_green


class Advisory(_FeedPart):
    id: str = Field(min_length=1)
    severity: Severity
    capability: FeedCapabilityRef
    affected: FeedSpecifier
    summary: str
    published_at: AwareDatetime


MAX_SERIAL = 2**53 - 1
"""The largest serial: the largest integer every JSON reader holds exactly, so the vendor's
tools, the agent and anything reading ``feed.meta.json`` agree on it. A serial never goes down
(a lower one is a replay): after a feed with a serial far too high, the vendor continues above
it (docs/feed-format.md). A serial past the bound is refused."""


class Feed(_FeedPart):
    format: Literal[1]
    serial: int = Field(ge=0, le=MAX_SERIAL)
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    platforms: list[PlatformRelease]
    suites: list[SuiteRelease]
    capabilities: list[CapabilityRelease]
    advisories: list[Advisory] = Field(default_factory=list)
    withdrawn: list[FeedReleaseRef] = Field(default_factory=list)


def severity_at_least(severity: str, threshold: str) -> bool:
    return SEVERITIES.index(severity) >= SEVERITIES.index(threshold)


def format_location(loc: tuple[int | str, ...]) -> str:
    """pydantic's ``('platforms', 3, 'suites', 'core')`` → ``platforms[3].suites.core``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


_PATTERN_MEANING = {
    _NAME_PATTERN: "a name of up to 64 letters, digits, '_', '.' and '-', starting with a letter or digit",
    _CAPABILITY_REF_PATTERN: "a capability reference such as core/auth",
    _REF_PATTERN.pattern: "a release reference such as core/auth@1.0.2 or platform@2.5.1",
    _ARTIFACT_URL_PATTERN: "an http or https URL, or one relative to the feed's: a feed may not name a local "
                           "file (file:) or any other scheme",
}


def issues_from_validation_error(error: ValidationError) -> list[Issue]:
    issues = []
    for detail in error.errors(include_url=False):
        message = detail["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if detail["type"] == "extra_forbidden":
            message = "unknown key"
        meaning = _PATTERN_MEANING.get((detail.get("ctx") or {}).get("pattern"))
        if detail["type"] == "string_pattern_mismatch" and meaning:
            message = f"{detail['input']!r} is not {meaning}"
        issues.append(Issue(format_location(detail["loc"]), message))
    return issues
