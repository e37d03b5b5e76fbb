"""Retention: keep the newest revisions, and only the release folders and cached artifacts they use.

Run after a deployment commits and by the daemon's retention job. Whatever a kept revision, an
unfinished deployment or a ``current`` link still needs stays; everything else goes, in an
order that never strands a record: revisions are pruned first (their records move to history),
then release folders and cache entries no kept manifest uses, then the manifest files nothing
refers to any more.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.deploy.artifacts import ArtifactCache
from agent.deploy.releases import ReleaseLayout
from agent.planning.manifest import Manifest
from agent.store import Store
from agent.store.revisions import DEFAULT_KEEP


@dataclass(frozen=True)
class RetentionReport:
    revisions: tuple[int, ...]
    """Revision numbers pruned."""
    releases: tuple[str, ...]
    """Release folders removed, as ``core/auth@1.0.0``."""
    artifacts: tuple[str, ...]
    """Cache entries removed (sha256 file names)."""
    manifest_files: int

    def describe(self) -> str:
        return (f"pruned {len(self.revisions)} revision(s), {len(self.releases)} release folder(s), "
                f"{len(self.artifacts)} cached artifact(s), {self.manifest_files} manifest file(s)")


def apply_retention(store: Store, layout: ReleaseLayout, cache: ArtifactCache, *, keep: int = DEFAULT_KEEP) -> RetentionReport:
    pruned = store.revisions.prune(keep)
    manifests = [Manifest.model_validate(revision.manifest) for revision in store.revisions.list()]
    active = store.deployments.active()
    if active is not None and active.manifest is not None:
        manifests.append(Manifest.model_validate(active.manifest))
    in_use = {(ref, entry.version) for manifest in manifests for ref, entry in manifest.capabilities().items()}
    digests = {entry.artifact.sha256 for manifest in manifests for entry in manifest.capabilities().values()}
    removed_releases = []
    for ref in _deployed_capabilities(layout):
        current = layout.current_version(ref)
        for version in layout.kept_versions(ref):
            if (ref, version) in in_use or version == current:
                continue
            layout.remove_release(ref, version)
            removed_releases.append(f"{ref}@{version}")
    removed_artifacts = cache.remove_except(digests)
    removed_manifests = store.collect_garbage()
    return RetentionReport(
        revisions=tuple(revision.number for revision in pruned),
        releases=tuple(removed_releases),
        artifacts=tuple(removed_artifacts),
        manifest_files=len(removed_manifests),
    )


def _deployed_capabilities(layout: ReleaseLayout) -> list[str]:
    if not layout.root.is_dir():
        return []
    return sorted(
        f"{suite.name}/{capability.name}"
        for suite in layout.root.iterdir() if suite.is_dir() and not suite.name.startswith(".")
        for capability in suite.iterdir() if capability.is_dir() and not capability.name.startswith(".")
    )
