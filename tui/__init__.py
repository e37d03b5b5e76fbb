"""The ``id1 tui`` dashboard: a Textual client of the agent's API (see DESIGN.md §9).

    from tui.run import run_tui          # what `id1 tui` calls: run_tui(socket) -> exit status
    from tui.app import DashboardApp     # DashboardApp(client) with any tui.client.DashboardClient

Layout: ``app`` (owns the client, workers, live events, the agent-down screen), ``screens/`` (one
per module: the seven screens, the dialogs, help, agent down), ``widgets/`` (one per module),
``styles/*.tcss``; ``changes`` (what can be sent, and the role it needs), ``roles``, ``validation``
(pins, with ``packaging``), ``text`` (wording), ``manifests``, ``blocking`` (calls off the loop).

Kept apart from ``agent`` so that importing the agent never imports Textual.
"""
