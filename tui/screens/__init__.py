"""The dashboard's screens (one per module) and dialogs."""
