"""Where thinkcli keeps its files and which settings are in force.

Nothing is read at import time: `Settings.load()` is called by the CLI per command, so tests can
point THINK_HOME at a temp dir. Precedence: command-line flag > THINK_* environment > the user's
config.yaml > models.yaml defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path

    @classmethod
    def resolve(cls) -> Paths:
        home = os.environ.get("THINK_HOME")
        if home:
            base = Path(home).expanduser()
            return cls(base / "config", base / "data", base / "cache")
        import platformdirs

        return cls(
            Path(platformdirs.user_config_dir("thinkcli")),
            Path(platformdirs.user_data_dir("thinkcli")),
            Path(platformdirs.user_cache_dir("thinkcli")),
        )

    @property
    def models_file(self) -> Path:
        return self.config_dir / "models.yaml"

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "config.yaml"

    @property
    def history_file(self) -> Path:
        return self.data_dir / "chat_history"


@dataclass(frozen=True)
class Settings:
    """Runtime knobs that are not per-tier: hardware and context."""

    default_model: str | None = None
    gpu_layers: int = 0  # -1 = all layers
    threads: int = 0  # 0 = llama.cpp's choice (physical cores)
    n_ctx: int = 4096
    offline: bool = False

    @classmethod
    def load(cls, paths: Paths) -> Settings:
        settings = cls()
        if paths.settings_file.exists():
            settings = settings._apply(_read_settings(paths.settings_file), str(paths.settings_file))
        env = {
            key[len("THINK_"):].lower(): value
            for key, value in os.environ.items()
            if key.startswith("THINK_") and key[len("THINK_"):].lower() in cls.__dataclass_fields__
        }
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            env.setdefault("offline", "1")
        return settings._apply(env, "environment")

    def _apply(self, values: dict[str, Any], source: str) -> Settings:
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in self.__dataclass_fields__:
                raise ConfigError(f"{source}: unknown setting '{key}'")
            try:
                if key == "default_model":
                    changes[key] = str(value)
                elif key == "offline":
                    changes[key] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
                elif key == "gpu_layers":
                    changes[key] = parse_gpu_layers(str(value))
                else:
                    changes[key] = int(value)
            except ValueError:
                raise ConfigError(f"{source}: setting '{key}' has a bad value '{value}'") from None
        return replace(self, **changes)


def parse_gpu_layers(value: str) -> int:
    """'all' → -1 (offload every layer), else a non-negative integer."""
    if value.strip().lower() == "all":
        return -1
    layers = int(value)
    if layers < 0:
        raise ValueError(value)
    return layers


def _read_settings(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        raise ConfigError(f"{path}: not a readable YAML file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data
