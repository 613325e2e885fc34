"""Nudge's own tables (what people query); Temporal keeps workflow state."""
