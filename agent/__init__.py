"""id1-agent: the update agent of self-hosted ID-1 platform instances.

Sub-packages follow the architecture in DESIGN.md: ``feed`` (format, signatures, building),
``planning`` (the pure planner), ``config`` (the agent's TOML configuration) and ``cli``.
"""

__version__ = "0.1.0"
