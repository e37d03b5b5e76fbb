"""The running platform as a tree: platform -> suite -> capability, each with its version and
where that version came from (latest, a pin, a security fix)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Tree

from tui.text import source_words


class CapabilityTree(Tree[str]):
    """Filled from a manifest (suite versions included) or, until that arrives, the status's list."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("platform", **kwargs)
        self.show_root = True
        self._shown: Any = object()

    def show(self, manifest: dict[str, Any] | None, status: dict[str, Any] | None) -> None:
        shape = _shape(manifest, status)
        if shape == self._shown:  # same content: leave it (and the cursor) alone
            return
        self._shown = shape
        platform, revision, suites, colours = shape[0], shape[1], shape[2], dict(shape[3])
        self.clear()
        label = Text("ID-1 platform ", style="bold")
        label.append(platform or "(nothing deployed yet)")
        if revision is not None:
            label.append(f"  revision {revision}")
        self.root.set_label(label)
        for suite, version, capabilities in suites:
            suite_label = Text(suite, style="bold")
            suite_label.append(f" {version}" if version else "")
            node = self.root.add(suite_label, data=suite, expand=True)
            for name, cap_version, source, overrides in capabilities:
                leaf = Text(f"{name} {cap_version}  ")
                live = colours.get(f"{suite}/{name}")
                if live:  # blue-green: the colour users are on
                    leaf.append(f"{live[0] or 'no colour'} live on :{live[1]}  ", style=f"bold {live[0] or ''}".strip())
                words = source_words(source, overrides)
                leaf.append(f"[{words}]", style="bold" if source and source.startswith("security:") else "")
                node.add_leaf(leaf, data=f"{suite}/{name}")
        self.root.expand()


def _shape(manifest: dict[str, Any] | None, status: dict[str, Any] | None) -> tuple:
    status = status or {}
    colours = tuple(sorted((item["capability"], (item.get("live_colour"), item["public_port"]))
                           for item in status.get("capabilities") or [] if item.get("public_port") is not None))
    if manifest and manifest.get("suites") is not None:
        suites = tuple(
            (suite, body.get("version"),
             tuple((name, cap.get("version", "?"), cap.get("source"), cap.get("overrides"))
                   for name, cap in sorted((body.get("capabilities") or {}).items())))
            for suite, body in sorted(manifest["suites"].items())
        )
        return manifest.get("platform"), manifest.get("revision", status.get("revision")), suites, colours
    grouped: dict[str, list[tuple]] = {}
    for item in status.get("capabilities") or []:
        suite, _, name = item["capability"].partition("/")
        grouped.setdefault(suite, []).append((name, item["version"], item.get("source"), item.get("overrides")))
    suites = tuple((suite, None, tuple(items)) for suite, items in sorted(grouped.items()))
    return status.get("platform"), status.get("revision"), suites, colours
