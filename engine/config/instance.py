"""Where a running `nudge dev` can be found: `instance.json` in its state folder.

`nudge dev` writes its database URL, Temporal address and namespace, API port, Temporal Web
UI address and payload key file there when it starts, and removes the file when it stops.
Every other `nudge` command reads it (from `--state-dir`, `NUDGE_STATE_DIR`, or `.nudge`)
for the settings the environment does not set, so `nudge timeline ann` next to a
`nudge dev` needs no variables. A database URL holding a password is not written.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from engine.config.settings import Settings

INSTANCE_FILE = "instance.json"
DEFAULT_STATE_DIR = Path(".nudge")


class Instance(BaseModel):
    """What `nudge dev` records about itself."""

    database_url: str | None = None
    temporal_address: str
    temporal_namespace: str = "default"
    api_port: int
    temporal_ui_url: str | None = None
    payload_key_file: str | None = None
    pid: int | None = None


def state_dir_from(option: Path | None) -> Path:
    """The state folder: the option, else `NUDGE_STATE_DIR`, else `.nudge`."""
    if option is not None:
        return option
    env = os.environ.get("NUDGE_STATE_DIR")
    return Path(env) if env else DEFAULT_STATE_DIR


def write_instance(state_dir: Path, instance: Instance) -> Path:
    """Record `instance` in `state_dir`, readable by its owner only from its first byte, and
    whole: it is written aside and renamed over the old one, so a command reading it
    meanwhile finds the old file or none, never a half-written one."""
    path = state_dir / INSTANCE_FILE
    fd, aside = tempfile.mkstemp(dir=state_dir, prefix=".instance-", suffix=".json")  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(instance.model_dump_json(indent=2) + "\n")
        os.replace(aside, path)
    except BaseException:
        Path(aside).unlink(missing_ok=True)
        raise
    return path


def read_instance(state_dir: Path) -> Instance | None:
    """The instance recorded in `state_dir`, or None (no file, or not one of ours)."""
    path = state_dir / INSTANCE_FILE
    try:
        return Instance.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def remove_instance(state_dir: Path) -> None:
    (state_dir / INSTANCE_FILE).unlink(missing_ok=True)


def settings_with_instance(settings: Settings, instance: Instance | None) -> Settings:
    """`settings` completed from `instance`: what the environment set explicitly wins."""
    if instance is None:
        return settings
    explicit = settings.model_fields_set
    found: dict[str, Any] = {
        "temporal_address": instance.temporal_address,
        "temporal_namespace": instance.temporal_namespace,
        "api_port": instance.api_port,
        "temporal_ui_url": instance.temporal_ui_url,
    }
    if instance.database_url:
        found["database_url"] = instance.database_url
    if instance.payload_key_file:
        try:
            key = Path(instance.payload_key_file).read_text(encoding="utf-8").strip()
        except OSError:
            key = ""
        if key:
            found["encryption_keys"] = SecretStr(key)
    updates = {name: value for name, value in found.items() if name not in explicit}
    return settings.model_copy(update=updates)
