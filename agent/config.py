"""The agent's configuration (DESIGN.md §8): TOML, one pydantic model per table.

Every key is documented in ``docs/configuration.md``. Unknown keys are errors, so a typo is
reported by its key path instead of being silently ignored. ``load_config`` is the one way in;
it raises ConfigError listing every problem.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from agent.errors import ConfigError, Issue, KeyFileError
from agent.feed.model import Severity, issues_from_validation_error
from agent.fleet.config import FleetConfig
from agent.safe_text import quoted
from agent.window import DAYS, WINDOW_PATTERN
from agent.versions import check_version_or_specifier

Channel = Literal["auto-update", "manual-approval", "frozen"]
CHANNELS: tuple[str, ...] = ("auto-update", "manual-approval", "frozen")
PinLevel = Literal["platform", "suite", "capability"]

DEFAULT_FEED_MAX_BYTES = 16 * 1024 * 1024
MAX_FEED_MAX_BYTES = 1024**3
"""A feed is read into memory whole: a cap above 1 GiB is no cap (and a huge one overflows)."""
MAX_DURATION = timedelta(days=3650)
"""Ten years: longer than any interval or period here means, and far from where datetime
arithmetic (a poll scheduled at now + poll_interval) overflows."""
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$", re.ASCII)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``"15m"`` → 15 minutes; units s, m, h, d; at most ``MAX_DURATION``."""
    match = _DURATION.match(text)
    if not match or int(match[1][:12]) == 0:
        raise ValueError(f"{quoted(text)} is not a duration such as 30s, 15m, 6h or 1d")
    # Compared as seconds before any timedelta is made: timedelta(days=99999999999) overflows.
    seconds = int(match[1]) * _DURATION_UNITS[match[2]] if len(match[1]) <= 12 else None
    if seconds is None or seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{quoted(text)} is longer than the longest duration allowed, {MAX_DURATION.days}d (ten years)")
    return timedelta(seconds=seconds)


def check_window(text: str) -> str:
    """A maintenance window: ``"Sat 02:00-05:00"``, ``"Mon-Fri 01:00-03:00"``, ``"Sat,Sun 22:00-02:00"``
    or ``"02:00-04:00"`` (every day). An end before the start runs past midnight."""
    match = WINDOW_PATTERN.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a maintenance window such as \"Sat 02:00-05:00\"")
    for day in re.split(r"[-,]", match["days"] or ""):
        if day and day.capitalize() not in DAYS:
            raise ValueError(f"{text!r}: {day!r} is not a day (use {', '.join(DAYS)})")
    for clock in (match["start"], match["end"]):
        try:
            datetime.strptime(clock, "%H:%M")
        except ValueError:
            raise ValueError(f"{text!r}: {clock} is not a time of day") from None
    if match["start"] == match["end"]:
        raise ValueError(f"{text!r}: the window is empty")
    return text


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known time zone (e.g. UTC, Europe/Berlin)") from None
    return name


def _check_trusted_key(text: str) -> str:
    from agent.feed.signature import PublicKey  # signature imports cryptography; only needed here

    try:
        PublicKey.from_base64(text)
    except KeyFileError as error:
        raise ValueError(str(error)) from None
    return text


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


_NO_TIME = re.compile(r"^\s*0+\s*[smhd]?\s*$", re.ASCII)


def _check_duration_or_zero(text: str) -> str:
    """A duration, or none at all (``"0s"``)."""
    if not _NO_TIME.match(text):
        parse_duration(text)
    return text


_PORT_RANGE = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$", re.ASCII)
LOWEST_PRIVATE_PORT = 1024
"""Below it are the ports only root may bind, which services of the host's own use."""


def parse_port_range(text: str) -> range:
    """``"20000-20999"`` → ``range(20000, 21000)``: at least two ports, from 1024 to 65535."""
    match = _PORT_RANGE.match(text)
    if not match:
        raise ValueError(f"{quoted(text)} is not a port range such as 20000-20999")
    low, high = int(match[1]), int(match[2])
    if not LOWEST_PRIVATE_PORT <= low <= high <= 65535:
        raise ValueError(f"{quoted(text)}: the ports must run from {LOWEST_PRIVATE_PORT} to 65535, low to high")
    if high == low:
        raise ValueError(f"{quoted(text)} holds one port; a capability's two colours need two")
    return range(low, high + 1)


def _check_port_range(text: str) -> str:
    parse_port_range(text)
    return text


def _check_ip_address(text: str) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{quoted(text)} is not an IP address such as 0.0.0.0, 127.0.0.1 or ::") from None
    if getattr(address, "scope_id", None):
        raise ValueError(f"{quoted(text)}: nginx cannot listen on a scoped address (%{address.scope_id})")
    return text


def _check_command(argv: list[str]) -> list[str]:
    if not argv or not argv[0]:
        raise ValueError("empty: give the program and its arguments as a list of strings")
    return argv


def _check_absolute_path(text: str) -> str:
    if not text.startswith("/") or text.endswith("/"):
        raise ValueError(f"{quoted(text)} is not the absolute path of a file")
    return text


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeedConfig(_Table):
    url: str | None = None
    """Where ``feed.json`` is served; artifact URLs are relative to it."""
    trusted_keys: list[Annotated[str, AfterValidator(_check_trusted_key)]] = Field(default_factory=list, validate_default=True)
    """minisign public keys (``RW…``) whose signatures are accepted; several during a key rotation."""
    poll_interval: Annotated[str, AfterValidator(_check_duration)] = "15m"
    """How often the daemon checks the feed (a random jitter of up to 10 % is added)."""
    max_bytes: int = Field(default=DEFAULT_FEED_MAX_BYTES, gt=0, le=MAX_FEED_MAX_BYTES)
    """Feeds larger than this are refused without being parsed (at most 1 GiB)."""

    @field_validator("trusted_keys")
    @classmethod
    def _keys_for_the_url(cls, keys: list[str], info: ValidationInfo) -> list[str]:
        # Said at start (and on reload), not found at the first poll minutes later.
        if info.data.get("url") and not keys:
            raise ValueError("empty, but feed.url is set: no feed could ever be accepted; "
                             "add the vendor's minisign public key (RW...)")
        return keys


class DownloadConfig(_Table):
    """The slowest feed or artifact transfer worth waiting for (``agent.transfer.TransferFloor``)."""

    min_rate: int = Field(default=1024, gt=0)
    """Bytes per second: a transfer slower than this over ``rate_window`` is abandoned, and so is
    one taking longer than its declared size at this rate plus ``rate_window``."""
    rate_window: Annotated[str, AfterValidator(_check_duration)] = "30s"
    """How long the rate is measured over before a transfer is judged."""

    @property
    def rate_window_s(self) -> float:
        return parse_duration(self.rate_window).total_seconds()


class SuitePolicy(_Table):
    channel: Channel
    """The channel of this suite's capabilities, overriding ``policy.channel``."""


class PolicyConfig(_Table):
    channel: Channel = "manual-approval"
    """auto-update: apply (in the window); manual-approval: wait for approval; frozen: hold."""
    enforce_severity: Severity = "critical"
    """Advisories at or above this severity are enforced whatever the channel and pins say."""
    maintenance_window: list[Annotated[str, AfterValidator(check_window)]] = Field(default_factory=list)
    """When non-forced changes may be applied; empty means any time. One string or a list."""
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    """The time zone the maintenance windows are written in."""
    allow_prerelease: bool = False
    """Whether latest and specifier pins may choose pre-releases (``2.6.0rc1``)."""
    suites: dict[Annotated[str, Field(pattern=f"^{_NAME}$")], SuitePolicy] = Field(default_factory=dict)

    @field_validator("maintenance_window", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, str) else value

    def channel_for(self, suite: str) -> str:
        override = self.suites.get(suite)
        return override.channel if override else self.channel


class VersionPin(_Table):
    """A pin (the seed's VersionPin). Pins in the config file have no id and are read-only."""

    level: PinLevel
    name: str
    version: Annotated[str, AfterValidator(check_version_or_specifier)]
    reason: str | None = None
    id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @model_validator(mode="after")
    def _name_fits_level(self):
        expected = {
            "platform": (r"^platform$", '"platform"'),
            "suite": (f"^{_NAME}$", "a suite name such as core"),
            "capability": (f"^{_NAME}/{_NAME}$", "suite/capability such as core/auth"),
        }[self.level]
        if not re.match(expected[0], self.name) or (self.level == "suite" and self.name == "platform"):
            raise ValueError(f"name {self.name!r} does not fit level {self.level}: expected {expected[1]}")
        return self

    @property
    def key(self) -> tuple[str, str]:
        return (self.level, self.name)

    def describe(self) -> str:
        return f"{self.level} pin {self.name} {self.version}"


class UpdatePolicy(_Table):
    """A stored policy (the seed's UpdatePolicy), managed through the API. When enabled it sets
    the channel of the whole instance or, with ``suite``, of one suite, over the config file."""

    id: str
    name: str
    channel: Channel
    enabled: bool = True
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    suite: Annotated[str, Field(pattern=f"^{_NAME}$")] | None = None


class ServicesConfig(_Table):
    systemctl: str = "systemctl"
    """The systemctl command (real systemd, or systemctl3 from docker-systemctl-replacement)."""
    systemctl_args: list[str] = Field(default_factory=list)
    """Extra arguments put before every systemctl verb, e.g. ``["--root=/srv/sandbox"]``."""
    unit_dir: str = "/etc/systemd/system"
    """Where the units that artifacts carry are installed."""


class RolesConfig(_Table):
    viewer: list[str] = Field(default_factory=lambda: ["id1-viewer"])
    approver: list[str] = Field(default_factory=lambda: ["id1-approver"])
    admin: list[str] = Field(default_factory=lambda: ["id1-admin"])


class RetentionConfig(_Table):
    revisions: int = Field(default=20, ge=1)
    """Revisions kept for rollback; release folders and cached artifacts only older ones use are removed."""
    backups: Annotated[str, AfterValidator(_check_duration)] = "30d"
    """How long state backups (taken every ``backup_interval``) are kept."""
    backup_interval: Annotated[str, AfterValidator(_check_duration)] = "5m"


class HealthConfig(_Table):
    bake_period: Annotated[str, AfterValidator(_check_duration)] = "10m"
    """After a deployment the changed capabilities are watched this long; one that turns unhealthy is rolled back."""
    watch_interval: Annotated[str, AfterValidator(_check_duration)] = "15s"
    bake_failures: int = Field(default=3, ge=1, le=1000)
    """Consecutive failed checks during the bake period before the agent rolls back: one slow
    answer is not a broken release."""


class SwitchConfig(_Table):
    """``[switch]``: how blue-green capabilities (docs/feed-format.md, "Switch") are switched
    behind the host's nginx (agent.deploy.proxy). Read only when the feed has one."""

    ports: Annotated[str, AfterValidator(_check_port_range)] = "20000-20999"
    """The private loopback ports the colours listen on, two per blue-green capability."""
    nginx_include: Annotated[str, AfterValidator(_check_absolute_path)] = "/etc/nginx/conf.d/id1-upstreams.conf"
    """The one file the agent writes: an http-context include of the operator's nginx.conf."""
    nginx_test: Annotated[list[str], AfterValidator(_check_command)] = Field(default_factory=lambda: ["nginx", "-t"])
    """Run after the include is written; non-zero puts the previous include back."""
    nginx_reload: Annotated[list[str], AfterValidator(_check_command)] = Field(
        default_factory=lambda: ["systemctl", "reload", "nginx"])
    """Run to switch; nginx's old workers finish the requests they have."""
    drain: Annotated[str, AfterValidator(_check_duration_or_zero)] = "30s"
    """How long the old colour keeps running after the switch, for the requests it still has ("0s": none)."""
    listen: Annotated[str, AfterValidator(_check_ip_address)] = "0.0.0.0"
    """The address nginx listens on for the public ports (IPv4 or IPv6)."""

    @property
    def port_range(self) -> range:
        return parse_port_range(self.ports)

    @property
    def drain_s(self) -> float:
        return 0.0 if _NO_TIME.match(self.drain) else parse_duration(self.drain).total_seconds()


class AlertsConfig(_Table):
    webhook: str | None = None
    """URL that gets a JSON POST on failed deployments, rollbacks, forced patches and rejected feeds."""


class MetricsConfig(_Table):
    textfile: str | None = None
    """Prometheus node-exporter textfile to write, e.g. /var/lib/prometheus/node-exporter/id1.prom."""


class AgentConfig(_Table):
    instance_id: str | None = Field(default=None, min_length=1)
    """This host's identity, which also sets its place in staged rollouts; default /etc/machine-id."""
    state_dir: str = "/var/lib/id1"
    socket: str = "/run/id1/agent.sock"
    feed: FeedConfig = Field(default_factory=FeedConfig)
    download: DownloadConfig = Field(default_factory=DownloadConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    pins: list[VersionPin] = Field(default_factory=list)
    services: ServicesConfig = Field(default_factory=ServicesConfig)
    roles: RolesConfig = Field(default_factory=RolesConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    switch: SwitchConfig = Field(default_factory=SwitchConfig)

    @model_validator(mode="after")
    def _one_pin_per_name(self):
        seen: dict[tuple[str, str], int] = {}
        for index, pin in enumerate(self.pins):
            if pin.key in seen:
                raise ValueError(f"pins[{index}] pins {pin.level} {pin.name} again (already pins[{seen[pin.key]}])")
            seen[pin.key] = index
        return self


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate the agent config; ConfigError lists every problem by key path."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), [Issue("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(str(path), [Issue("", f"cannot read: {getattr(error, 'strerror', None) or error}")]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), [Issue("", f"not valid TOML: {error}")]) from None
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: dict, source: str = "agent config") -> AgentConfig:
    try:
        return AgentConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(source, issues_from_validation_error(error)) from None


def read_machine_id(path: Path = Path("/etc/machine-id")) -> str | None:
    try:
        value = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    return value or None

