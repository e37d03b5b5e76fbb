"""Deployment manifests: which version of every capability runs (or should run) on the host.

``{"platform": "2.5.0", "suites": {"core": {"version": "1.2.0", "capabilities": {"auth":
{"version": "1.0.0", "source": "latest", "artifact": {…}, "units": […], "health": {…}}}}}}``;
the stored form adds ``revision``, ``feed_serial`` and ``created_at`` (DESIGN.md §5).

A blue-green capability's entry adds ``"switch": {"mode": "blue-green", "port": 8080}``; a
restart one has no ``switch`` (an explicit ``{"mode": "restart"}`` is dropped), so the manifests,
their JSON and their ``content_hash`` are what they were before blue-green existed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, ValidationError, field_validator, model_serializer, model_validator

from agent.errors import Issue, ManifestInvalid
from agent.versions import canonical_version, parse_specifier
from agent.feed.model import Artifact, CapabilityRelease, HealthCheck, Requires, Switch, VersionStr, issues_from_validation_error
from agent.feed.switch import switch_problems


class DeployedCapability(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: VersionStr
    source: str
    """Why this version: pin:capability, pin:suite, pin:platform, latest or security:<advisory id>."""
    artifact: Artifact
    units: list[str]
    health: HealthCheck | None = None
    requires: Requires | None = None
    overrides: str | None = None
    """The choice a security fix replaced, e.g. ``pin:suite ~=1.2.0`` or ``latest 1.0.0``."""
    switch: Switch | None = None
    """blue-green: its public port (agent.feed.switch); None: restart."""

    @field_validator("switch")
    @classmethod
    def _restart_is_no_switch(cls, switch: Switch | None) -> Switch | None:
        return switch if switch is not None and switch.blue_green else None

    @model_validator(mode="after")
    def _requirements_parse(self):
        # Feed models leave specifiers to the catalog; a manifest file is checked here.
        if self.requires is not None:
            for spec in [self.requires.platform, *self.requires.capabilities.values()]:
                if spec is not None:
                    parse_specifier(spec)
        return self

    @model_validator(mode="after")
    def _switch_fits(self):
        # The feed's rules (agent.feed.switch) for a blue-green entry of a manifest file. Only
        # for blue-green: a restart entry stored by an older agent loads as it always did. The
        # capability's name is not known here: a unit's prefix is the engine's check.
        if self.switch is None:
            return self
        problems = [f"{where}: {why}" for where, why in switch_problems(None, self.switch, self.units, self.health)]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_serializer(mode="wrap")
    def _no_switch_for_restart(self, handler: SerializerFunctionWrapHandler) -> dict:
        data = handler(self)
        if data.get("switch", ...) is None:
            del data["switch"]
        return data

    @classmethod
    def from_release(cls, release: CapabilityRelease, source: str, overrides: str | None = None) -> DeployedCapability:
        """The feed's release as a manifest entry. Its version in its one spelling: it names the
        release folder, and ``v1.0.0``, ``1.0.0`` and `` 1.0.0`` are one release, one folder."""
        return cls(
            version=canonical_version(release.version),
            source=source,
            # A FeedArtifact is an Artifact (http(s) or relative URL: checked already); it is
            # serialised as one, and loaded back from the store as a plain one.
            artifact=release.artifact,
            units=release.units,
            health=release.health,
            requires=release.requires,
            overrides=overrides,
            switch=release.switch,
        )


class DeployedSuite(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: VersionStr | None
    """The suite release; null while only part of a new suite release is applied."""
    capabilities: dict[str, DeployedCapability]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    platform: VersionStr | None
    """The platform release; null while only part of a first install is applied."""
    suites: dict[str, DeployedSuite]
    revision: int | None = None
    feed_serial: int | None = None
    created_at: datetime | None = None

    def capabilities(self) -> dict[str, DeployedCapability]:
        """Every capability by ``suite/name``."""
        return {
            f"{suite_name}/{name}": capability
            for suite_name, suite in self.suites.items()
            for name, capability in suite.capabilities.items()
        }

    def versions(self) -> dict[str, str]:
        return {ref: capability.version for ref, capability in self.capabilities().items()}

    def to_json(self) -> dict:
        data = self.model_dump(mode="json")
        for stored_only in ("revision", "feed_serial", "created_at"):
            if data[stored_only] is None:
                del data[stored_only]
        return data

    def content_hash(self) -> str:
        """What an approval binds to: the platform and everything that decides what runs for each
        capability (version, artifact, units, health check, requirements, a blue-green switch and
        its public port), not why it was chosen.
        A later feed that changes a unit list or a health command (run as root) under the same
        version needs a new approval."""
        content = {
            "platform": self.platform,
            "capabilities": {ref: c.model_dump(mode="json", exclude={"source", "overrides"})
                             for ref, c in sorted(self.capabilities().items())},
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_manifest(path: str | Path) -> Manifest:
    """Read a manifest JSON file; ManifestInvalid names the file and every problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ManifestInvalid(str(path), [Issue("", f"cannot read: {error.strerror or error}")]) from None
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as error:
        raise ManifestInvalid(str(path), issues_from_validation_error(error)) from None
