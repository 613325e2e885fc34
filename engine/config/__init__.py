"""Configuration: `NUDGE_*` process settings and the `nudge.toml` policy file."""

from engine.config.nudge_toml import (
    ConfigError,
    NudgeConfig,
    load_config,
    parse_config,
    read_secret,
)
from engine.config.settings import Settings

__all__ = ["ConfigError", "NudgeConfig", "Settings", "load_config", "parse_config", "read_secret"]
