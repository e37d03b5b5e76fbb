"""How the dashboard words things: times, sources, version moves.

Plain ASCII markers where meaning is carried (``->``, ``[read-only]``, upper-case states), so
nothing depends on colour or on glyphs a vt100-like terminal draws double-wide or not at all.
Times are the agent's own, shown in the policy's timezone: no clock is read here.

What the agent answers holds words the dashboard only passes on (a reason, a feed's release
notes, audit entries from before such text was refused), so ``visible`` makes every string in
an answer safe before any screen sees it: control characters, DEL and bidirectional overrides
written as their escapes (ESC as ``\\x1b``, ``agent.safe_text``), line breaks kept for the
notes. Screens show them as ``Text``, never as markup (``plain``, ``tui.widgets.facts``), and
notifications are not read as markup either (``DashboardApp.notify``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.text import Text

from agent.safe_text import escape_unsafe

ARROW = "->"
NEW = "(new)"
GONE = "(removed)"


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def when(value: Any, timezone: str | None = None, *, default: str = "never") -> str:
    moment = parse_time(value)
    if moment is None:
        return default
    zone_name = timezone or "UTC"
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone, zone_name = ZoneInfo("UTC"), "UTC"
    local = moment.astimezone(zone)
    label = "UTC" if zone_name == "UTC" else (local.tzname() or zone_name)
    return f"{local:%Y-%m-%d %H:%M} {label}"


def version_or(value: str | None, missing: str) -> str:
    return value if value else missing


def move(from_version: str | None, to_version: str | None) -> str:
    return f"{version_or(from_version, NEW)} {ARROW} {version_or(to_version, GONE)}"


def source_words(source: str | None, overrides: str | None = None) -> str:
    """``pin:suite`` -> "pinned (suite)", ``security:ID`` -> "security fix ID", ``latest``."""
    if not source:
        words = "unknown"
    elif source.startswith("pin:"):
        words = f"pinned ({source[4:]})"
    elif source.startswith("security:"):
        words = f"security fix {source[9:]}"
    else:
        words = source
    if overrides:
        words += f", overrides {overrides}"
    return words


ACTION_WORDS = {
    "apply": "applies now",
    "await-approval": "awaits approval",
    "hold": "held (frozen)",
}


def action_words(action: str | None) -> str:
    return ACTION_WORDS.get(action or "", action or "")


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def shorten(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def plain(values: tuple[str, ...] | list[str]) -> tuple[Text, ...]:
    """Cells as Text, so a bracket in an agent's or a user's words is shown, not taken as markup."""
    return tuple(Text(escape_unsafe(str(value))) for value in values)


def visible(value: Any) -> Any:
    """An answer of the agent (JSON: dicts, lists, strings) with every string safe to draw."""
    if isinstance(value, str):
        return escape_unsafe(value, keep="\n")
    if isinstance(value, dict):
        return {visible(key): visible(item) for key, item in value.items()}
    if isinstance(value, list):
        return [visible(item) for item in value]
    return value
