"""Every error the agent raises on purpose, in one tree.

    Id1Error                      anything we foresaw; ``str()`` is the one line a user reads
    ├── UsageError                a command line that cannot be acted on          (exit 2)
    ├── ConfigError               the agent config is unreadable or invalid       (exit 2)
    ├── KeyFileError              a minisign key file is unreadable or invalid
    ├── FeedUnavailable           the feed cannot be read or fetched              (exit 2)
    ├── FeedRejected              the feed may not be used                        (exit 3)
    │   ├── FeedTooLarge          over the configured size cap
    │   ├── SignatureError        missing, malformed, untrusted or not matching
    │   ├── FeedExpired           ``expires_at`` is in the past
    │   ├── FeedInvalid           not a feed: every problem named by its path
    │   └── FeedReplayed          a lower serial than the last accepted feed, or the same
    │                             serial with other bytes: a replay of an old feed
    ├── ManifestInvalid           an installed-manifest file is not a manifest
    ├── StoreError                the agent's state store cannot be used
    │   ├── StoreLocked           another agent holds the store's lock
    │   └── StoreCorrupt          state.json is unreadable (moved aside, reported)
    ├── ServiceError              a systemctl command failed or could not be run
    ├── UnitError                 a release's units are not its own to install, or its unit
    │                             files cannot be read or written (agent.deploy.units)
    ├── ReleaseError              a release folder or its ``current`` link cannot be made,
    │                             switched or trusted (agent.deploy.releases)
    ├── SwitchError               a blue-green switch cannot go ahead (agent.deploy.proxy)
    │   ├── PortsUnavailable      ``switch.ports`` cannot give every colour a port of its own,
    │   │                         or public ports clash (with each other, or with the range)
    │   └── ProxyError            nginx's include cannot be written, tested or loaded; the
    │       │                     previous include is put back, so traffic stays where it was
    │       └── ProxyRefused      ``nginx -t`` refused the new include (nginx's words quoted)
    ├── NotFound                  an API request names something that does not exist (404)
    ├── Conflict                  an API request clashes with the agent's state (409)
    ├── Forbidden                 the caller's role does not allow it (403; agent.api.roles)
    ├── ApiServerError            the API socket cannot be served (agent.api.server)
    ├── AgentUnreachable          a client cannot reach the daemon (agent.client)      (exit 69)
    ├── ApiError                  the daemon answered a request with an error: its status,
    │                             code and message (agent.client)       (exit by status)
    ├── FleetUnavailable          the fleet's lock service cannot be used as configured: a
    │   │                         wrong endpoint, auth, no fleet id (agent.fleet)  (exit 2)
    │   └── FleetUnreachable      no endpoint answers now: a wait for a slot, an error
    │                             for an admin's resume or release
    └── ArtifactError             an artifact cannot be fetched or unpacked safely
        ├── ArtifactUnavailable   network or server failure, after retries
        ├── ArtifactMismatch      size or sha256 differs from the feed's
        ├── DiskFull              not enough free space (checked before, or hit while writing)
        └── UnsafeArchive         absolute paths, .., links out, device files, over-size

Foreign exceptions (OSError, JSON, pydantic, TOML) are translated where they happen into one of
these, carrying what a person needs to act: which file, which key path, what to do next.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class Id1Error(Exception):
    """Base of every foreseen failure."""

    exit_code = 1


class UsageError(Id1Error):
    exit_code = 2


class KeyFileError(Id1Error):
    exit_code = 2


@dataclass(frozen=True, slots=True)
class Issue:
    """One thing wrong at one place: ``platforms[3].suites.core: no suite release core 9.9.9``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class _IssueListError(Id1Error):
    """An error made of several located issues; the first line says what and where."""

    what = "invalid"

    def __init__(self, source: str, issues: Iterable[Issue]):
        self.source = source
        self.issues: Sequence[Issue] = tuple(issues)
        super().__init__(self._render())

    def _render(self) -> str:
        count = len(self.issues)
        if count == 1:
            return f"{self.source}: {self.what}: {self.issues[0]}"
        head = f"{self.source}: {self.what} ({count} error{'s' if count != 1 else ''})"
        return "\n".join([head, *(f"  {issue}" for issue in self.issues)])


class ConfigError(_IssueListError):
    exit_code = 2
    what = "invalid agent config"


class FeedUnavailable(Id1Error):
    exit_code = 2


class FeedRejected(Id1Error):
    exit_code = 3


class FeedTooLarge(FeedRejected):
    pass


class SignatureError(FeedRejected):
    pass


class FeedExpired(FeedRejected):
    pass


class FeedReplayed(FeedRejected):
    pass


class FeedInvalid(_IssueListError, FeedRejected):
    exit_code = 3
    what = "invalid feed"


class ManifestInvalid(_IssueListError):
    exit_code = 2
    what = "invalid manifest"


class StoreError(Id1Error):
    pass


class StoreLocked(StoreError):
    pass


class StoreCorrupt(StoreError):
    pass


class ServiceError(Id1Error):
    pass


class UnitError(Id1Error):
    pass


class ReleaseError(Id1Error):
    pass


class SwitchError(Id1Error):
    pass


class PortsUnavailable(SwitchError):
    pass


class ProxyError(SwitchError):
    pass


class ProxyRefused(ProxyError):
    pass


class ArtifactError(Id1Error):
    pass


class ArtifactUnavailable(ArtifactError):
    pass


class ArtifactMismatch(ArtifactError):
    pass


class DiskFull(ArtifactError):
    pass


class UnsafeArchive(ArtifactError):
    pass


class NotFound(Id1Error):
    """What an API request names does not exist (a revision, an approval, a pin)."""


class FleetUnavailable(Id1Error):
    """The fleet's lock service (etcd, FleetLock) cannot be used as configured; the message names
    the endpoint and what to change."""

    exit_code = 2


class FleetUnreachable(FleetUnavailable):
    """No endpoint of the lock service answers now; waiting may help, changing the config may not."""


class Conflict(Id1Error):
    """The request cannot be done in the agent's current state (approval already decided, a deployment running)."""


class AgentUnreachable(Id1Error):
    exit_code = 69  # EX_UNAVAILABLE


class ApiError(Id1Error):
    """The daemon's error answer: HTTP ``status``, the API's ``code``, its one-line message."""

    def __init__(self, status: int, code: str, message: str, fields: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.fields = fields or []

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        # 502: the agent rejected the feed it fetched, the same status as `id1 agent run --once`
        return {403: 77, 404: 4, 409: 5, 422: 2, 502: 3}.get(self.status, 1)
