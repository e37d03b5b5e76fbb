"""The ``id1 tui`` dashboard: a Textual client of the agent's API (see DESIGN.md §9).

Kept apart from ``agent`` so that importing the agent never imports Textual.
"""
