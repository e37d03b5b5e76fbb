"""id1-agent: the update agent of self-hosted ID-1 platform instances.

Sub-packages follow the architecture in DESIGN.md: ``feed`` (format, signatures, building),
``planning`` (the pure planner), ``deploy`` (the engine and its edges), ``store``, ``api``,
``daemon``, ``config`` (the agent's TOML configuration) and ``cli``.
"""

import sys

__version__ = "0.1.0"


class _WithoutHttpxCommandLine:
    """httpx imports its own command-line client (``httpx._main``) whenever click, rich and
    pygments are installed, which they are here (for uvicorn and textual). Nothing of id1 uses
    it, and it costs every id1 process (the daemon, each CLI call) about 3 MB and 50 ms of
    imports. Refusing that one import makes httpx take its "CLI not installed" path."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "httpx._main":
            raise ImportError("id1 does not use the httpx command line")
        return None


if not any(isinstance(finder, _WithoutHttpxCommandLine) for finder in sys.meta_path):
    sys.meta_path.insert(0, _WithoutHttpxCommandLine())
