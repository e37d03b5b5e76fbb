"""The rules that tie a release's ``switch`` to its units and health (docs/feed-format.md, "Switch").

A **restart** release (no ``switch``, or ``{"mode": "restart"}``) has no public port and no
``@PORT@``: its service listens where it chooses, and is stopped and started at each update.

A **blue-green** release (``{"mode": "blue-green", "port": 8080}``):

- names its public ``port`` (1–65535): nginx listens there and passes requests to the live colour;
- lists only unit templates (``id1-core-api@.service``, agent.feed.units), at least one a
  service: the agent runs each as ``@blue`` and ``@green``;
- has a health check, and every check it gives (``http``, ``command``) names ``@PORT@``: the
  agent fills in the private port of the colour it checks, so a colour is judged by what that
  colour answers, never by the one users are on.

``switch_problems`` is pure and shared by the feed check (agent.feed.catalog, paths under
``capabilities[N].``) and the manifest model (agent.planning.manifest), so a feed and a manifest
file are held to the same rules. Two blue-green capabilities of one platform release claiming one
public port is a feed-wide rule, checked by the catalog.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from agent.feed.model import HealthCheck, Switch
from agent.feed.units import UNIT_TYPES, colour_unit, template_unit_problem

PORT = "@PORT@"
"""Filled in, in a blue-green release's units and health, with the private port of one colour."""
_TEMPLATE = re.compile(r"@\.(?:" + "|".join(UNIT_TYPES) + r")$")


def colour_units(templates: Sequence[str], colour: str) -> list[str]:
    """The units a colour runs: each template's instance (``id1-core-api@.service`` → ``…@blue.service``)."""
    return [colour_unit(template, colour) for template in templates]


def health_on_port(health: HealthCheck | None, port: int, *, host: str | None = None) -> HealthCheck | None:
    """``health`` with ``@PORT@`` filled in: the check of whatever listens on ``port``. With
    ``host``, an HTTP check asks that address instead of the URL's (the public port, checked
    where nginx listens for it)."""
    if health is None:
        return None
    text = str(port)
    http = health.http.replace(PORT, text) if health.http else None
    if http is not None and host is not None:
        parts = urlsplit(http)
        netloc = (f"[{host}]" if ":" in host else host) + f":{port}"
        http = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    command = health.command
    if isinstance(command, list):
        command = [part.replace(PORT, text) for part in command]
    elif command is not None:
        command = command.replace(PORT, text)
    return health.model_copy(update={"http": http, "command": command})


def health_mentions_port(health: HealthCheck | None) -> bool:
    if health is None:
        return False
    command = health.command if isinstance(health.command, list) else [health.command or ""]
    return PORT in (health.http or "") or any(PORT in part for part in command)


def switch_problems(ref: str | None, switch: Switch | None, units: Sequence[str], health: HealthCheck | None) -> list[tuple[str, str]]:
    """Each way release ``ref`` breaks the rules above: (its path under the release, why). With
    ``ref`` None (a manifest entry, which does not know its name) a template's prefix is not
    checked, only that it is one; the engine checks names when it installs units."""
    if switch is None or not switch.blue_green:
        problems = []
        if switch is not None and switch.port is not None:
            problems.append(("switch.port", ('a public port is only for mode "blue-green"; a restart release '
                                             "listens where its units say")))
        if health_mentions_port(health):
            problems.append(("health", f'{PORT} is filled in only for mode "blue-green" (a colour\'s private port)'))
        return problems

    problems = []
    if switch.port is None:
        problems.append(("switch.port", 'mode "blue-green" needs the public port nginx listens on (1-65535)'))
    for index, unit in enumerate(units):
        if ref is not None:
            problem = template_unit_problem(ref, unit)
        else:
            problem = None if _TEMPLATE.search(unit) else f"{unit!r} is not a template such as id1-SUITE-NAME@.service"
        if problem:
            problems.append((f"units[{index}]", problem))
    if not any(unit.endswith("@.service") for unit in units):
        problems.append(("units", ("a blue-green release runs at least one service template, such as "
                                   f"{_example_template(ref)!r}")))
    example = f'{{"http": "http://127.0.0.1:{PORT}/healthz"}}'
    if health is None or (health.http is None and health.command is None):
        problems.append(("health", (f"a blue-green release needs a check of the colour's own port, e.g. {example}: "
                                    "traffic moves only to a colour that answers")))
        return problems
    if health.http is not None and PORT not in health.http:
        problems.append(("health.http", (f"names no {PORT}, so it cannot tell the colours apart: use the colour's "
                                         f"port, e.g. http://127.0.0.1:{PORT}/healthz")))
    if health.command is not None and not health_mentions_port(HealthCheck(command=health.command)):
        problems.append(("health.command", f"names no {PORT}, so it cannot tell the colours apart: pass it the colour's port"))
    return problems


def _example_template(ref: str | None) -> str:
    suite, _, name = (ref or "SUITE/NAME").partition("/")
    return f"id1-{suite}-{name}@.service"
