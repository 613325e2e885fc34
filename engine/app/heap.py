"""The heap of Nudge's long-running processes (`nudge api`, `worker`, `router`, `dev`).

By the time a process serves, it holds most of what it ever will: modules, SQLAlchemy's
mappers and cached statements, pydantic's validators, the journeys. Python's garbage
collector walks all of it on every full (generation 2) collection; on the API with its
router that took 100-150 ms, a pause every request and routing batch in flight waits out
(it set the p99 of `bench latency` at 5 events/s). `settle` collects once and freezes what
is left (`gc.freeze`): full collections then walk only what was allocated since.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Call once the process is set up, before it serves."""
    gc.collect()
    gc.freeze()
