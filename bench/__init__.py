"""Benchmarks: `python -m bench.ingest`, `python -m bench.journeys`, and
`python -m bench.compare` (a bare baseline and Nudge, alternately). They print numbers;
shared helpers are in `bench._common`."""
