"""The demo's own failures, in the agent's error tree (agent.errors)::

    Id1Error
    └── DemoError        the demo cannot start or go on; ``str()`` says why and what to do
        └── StoryStuck   the agent did not do what the story waits for (the dashboard stays up)
"""

from __future__ import annotations

from agent.errors import Id1Error


class DemoError(Id1Error):
    pass


class StoryStuck(DemoError):
    pass
