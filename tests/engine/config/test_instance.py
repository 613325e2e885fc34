"""engine.config.instance: `instance.json` is written whole and owner-only, replacing the
previous one, and read back; a file that is not one of ours reads as no instance."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

from engine.config.instance import INSTANCE_FILE, Instance, read_instance, write_instance


def test_it_is_written_whole_owner_only_and_replaced(tmp_path: Path) -> None:
    first = Instance(temporal_address="127.0.0.1:7233", api_port=8000, pid=1)
    second = first.model_copy(update={"api_port": 8001, "pid": 2})
    path = write_instance(tmp_path, first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_instance(tmp_path, second)
    assert read_instance(tmp_path) == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [INSTANCE_FILE]  # nothing left aside


def test_a_file_that_is_not_ours_reads_as_none(tmp_path: Path) -> None:
    (tmp_path / INSTANCE_FILE).write_text("", encoding="utf-8")
    assert read_instance(tmp_path) is None


def test_a_reader_never_sees_half_a_file(tmp_path: Path) -> None:
    instance = Instance(temporal_address="127.0.0.1:7233", api_port=8000)
    write_instance(tmp_path, instance)
    done = threading.Event()

    def rewrite() -> None:
        for port in range(200):
            write_instance(tmp_path, instance.model_copy(update={"api_port": 8000 + port}))
        done.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    reads = 0
    while not done.is_set():
        json.loads((tmp_path / INSTANCE_FILE).read_text(encoding="utf-8"))
        reads += 1
    writer.join()
    assert reads > 0
