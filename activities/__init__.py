"""Temporal activities: thin, typed, idempotent calls into `engine/`."""
