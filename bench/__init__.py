"""Benchmarks: `python -m bench.ingest`, `python -m bench.journeys` (they print numbers)."""
