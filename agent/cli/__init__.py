"""The ``id1`` command: one console script, a sub-command per verb (DESIGN.md §9)."""
