"""Nudge's own workflows (not journeys): webhook deliveries, and the entry workflows of
broadcasts and schedules. Sandbox-safe like journeys: they orchestrate, activities do."""
