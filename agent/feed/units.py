"""Which systemd units a capability may own: the naming rule of docs/feed-format.md ("Units").

A capability ``<suite>/<name>`` owns only units whose name starts with ``id1-<suite>-<name>``:

    id1-<suite>-<name>[-<part>][@<instance>].<type>      type: service socket timer path target

so that no release can install, enable, stop or remove a unit of the host's own
(``ssh.service``) or of another capability. ``<part>`` and ``<instance>`` are letters, digits,
``_``, ``.``, ``-`` (an instance may also hold ``:``), starting with a letter or digit. A listed
``…@<instance>.<type>`` is an instance of the template file ``…@.<type>``, which the artifact
carries once for all its instances; a bare template cannot be listed (it cannot run), except by
a blue-green release (``"switch": {"mode": "blue-green"}``), which lists only templates: the
agent runs each as two colours, ``…@blue.<type>`` and ``…@green.<type>``
(``template_unit_problem``, ``colour_unit``).

Both the feed check (``agent.feed.catalog``) and the deployment engine (``agent.deploy.units``)
use these functions: a feed that breaks the rule is invalid, and a manifest that does (an older
revision) is refused before anything on the host changes.
"""

from __future__ import annotations

import re

UNIT_TYPES = ("service", "socket", "timer", "path", "target")
MAX_UNIT_NAME = 255  # systemd's own limit (UNIT_NAME_MAX)

_TAIL = re.compile(
    r"(?:-(?P<part>[A-Za-z0-9][A-Za-z0-9_.-]*))?"
    r"(?:@(?P<instance>[A-Za-z0-9][A-Za-z0-9_.:-]*))?"
    r"\.(?P<type>" + "|".join(UNIT_TYPES) + r")"
)
_TEMPLATE_TAIL = re.compile(r"(?:-(?P<part>[A-Za-z0-9][A-Za-z0-9_.-]*))?@\.(?P<type>" + "|".join(UNIT_TYPES) + r")")
COLOURS = ("blue", "green")
"""The two instances a blue-green template runs as."""
_LONGEST_COLOUR = max(map(len, COLOURS))


def unit_prefix(ref: str) -> str:
    """``core/auth`` → ``id1-core-auth``: the start of every unit name the capability owns."""
    suite, _, name = ref.partition("/")
    return f"id1-{suite}-{name}"


def unit_name_problem(ref: str, unit: str) -> str | None:
    """None when capability ``ref`` may own ``unit``, else why not (one line, for an error)."""
    prefix = unit_prefix(ref)
    if len(unit) > MAX_UNIT_NAME:
        return f"unit name {unit[:40]!r}… is longer than {MAX_UNIT_NAME} characters"
    if unit.startswith(prefix) and _TAIL.fullmatch(unit, len(prefix)):
        return None
    if unit.endswith("@." + unit.rpartition(".")[2]):
        return (f"{unit!r} is a template: list its instances (e.g. {unit.replace('@.', '@main.')!r}), "
                f"or declare \"switch\": {{\"mode\": \"blue-green\"}} to run it as @blue and @green")
    return (f"{unit!r} is not a unit {ref} may own: its units are named "
            f"{prefix}[-PART][@INSTANCE].TYPE with TYPE one of {', '.join(UNIT_TYPES)}")


def template_unit_problem(ref: str, unit: str) -> str | None:
    """None when ``unit`` is a template capability ``ref`` may own (``id1-core-api@.service``,
    what a blue-green release lists), else why not (one line, for an error)."""
    prefix = unit_prefix(ref)
    if len(unit) + _LONGEST_COLOUR > MAX_UNIT_NAME:
        return f"unit name {unit[:40]!r}… is too long: its instances must fit in {MAX_UNIT_NAME} characters"
    if unit.startswith(prefix) and _TEMPLATE_TAIL.fullmatch(unit, len(prefix)):
        return None
    if unit_name_problem(ref, unit) is None:
        name, _, kind = unit.rpartition(".")
        return (f"{unit!r} is not a template: a blue-green release lists templates, which the agent runs "
                f"as @blue and @green (e.g. {name.partition('@')[0] + '@.' + kind!r})")
    return (f"{unit!r} is not a template {ref} may own: a blue-green release lists templates named "
            f"{prefix}[-PART]@.TYPE with TYPE one of {', '.join(UNIT_TYPES)}")


def colour_unit(template: str, colour: str) -> str:
    """The instance of a blue-green template that runs ``colour``: ``id1-core-api@.service`` → ``id1-core-api@blue.service``."""
    if colour not in COLOURS:
        raise ValueError(f"{colour!r} is not a colour ({' or '.join(COLOURS)})")
    head, _, kind = template.rpartition("@.")
    return f"{head}@{colour}.{kind}"


def unit_file_name(unit: str) -> str:
    """The file a unit is loaded from: ``id1-core-api@blue.service`` → ``id1-core-api@.service``."""
    if "@" not in unit:
        return unit
    head, _, tail = unit.partition("@")
    return f"{head}@.{tail.rpartition('.')[2]}"
