"""Test hosts with systemd as PID 1 (DESIGN.md §11): what systemd decides is tested on systemd.

    image.py    the base Debian root, built once with mmdebstrap and cached by its recipe
    machine.py  TestHost: a private copy of it, booted with systemd-nspawn, driven with nsenter,
                powered off and booted again (a reboot); several run at once
    deb.py      the agent's .deb (make deb), built once per source tree
    agent.py    AgentHost: a TestHost with that .deb installed and configured
    vendor.py   signed feeds of tiny real HTTP services for those hosts

They need root, mmdebstrap and systemd-container (``make test`` installs both). In CI a host
that cannot boot fails its test; elsewhere, without root, the tests are skipped.
"""
