"""engine.app.heap.settle: what a process holds when it starts serving is left out of
full collections; what it allocates afterwards is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from engine.app.heap import settle


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the garbage collector frees it


@pytest.fixture
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()  # this test process goes on as before


def test_settle_freezes_the_start_up_heap_and_later_cycles_are_still_collected(
    thawed: None,
) -> None:
    kept = [[n] for n in range(1000)]
    settle()
    assert gc.get_freeze_count() >= len(kept)
    walked = {id(o) for o in gc.get_objects()}  # what collections walk: not the frozen
    assert not any(id(o) in walked for o in kept)

    later = _Node()
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None
