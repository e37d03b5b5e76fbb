"""The deployment engine: artifacts, release folders, services, health, the state machine."""
