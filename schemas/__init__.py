"""Pydantic models that cross a boundary: API bodies, events, journey inputs and results."""
