"""The long-running agent, ``id1 agent run`` (DESIGN.md §7), and how it talks to systemd."""
