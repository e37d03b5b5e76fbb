"""The policy in force: the config file's ``[policy]`` with the enabled stored policies over it.

Stored policies (``UpdatePolicy``, managed through the API) are later decisions than the config
file, so they win; among several enabled ones for the same scope the most recently updated wins.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.config import PolicyConfig, SuitePolicy, UpdatePolicy


def effective_policy(configured: PolicyConfig, stored: Sequence[UpdatePolicy]) -> PolicyConfig:
    newest: dict[str | None, UpdatePolicy] = {}
    for policy in stored:
        if not policy.enabled:
            continue
        kept = newest.get(policy.suite)
        if kept is None or (policy.updated_at, policy.id) > (kept.updated_at, kept.id):
            newest[policy.suite] = policy
    if not newest:
        return configured
    instance = newest.pop(None, None)
    suites = dict(configured.suites)
    suites.update({suite: SuitePolicy(channel=policy.channel) for suite, policy in newest.items()})
    return configured.model_copy(update={
        "channel": instance.channel if instance else configured.channel,
        "suites": suites,
    })
