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
from .text import Json


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
    def log_file(self) -> Path:
        return self.data_dir / "logs.db"

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
    log: bool = True  # every run to the SQLite run log (`think logs`)
    # Every token's probability, for the trace view (`think logs show`) even where no policy needs it:
    # about 8 % of decode time on a model with a 262k vocabulary (benchmarks/bench_trace.py).
    token_probs: bool = False

    @classmethod
    def load(cls, paths: Paths) -> Settings:
        settings = cls()
        if paths.settings_file.exists():
            file_values = _read_settings(paths.settings_file)
            settings = settings._apply({(k, f"{paths.settings_file}: {k}"): v for k, v in file_values.items()})
        env = {
            (key[len("THINK_"):].lower(), key): value
            for key, value in os.environ.items()
            if key.startswith("THINK_") and key[len("THINK_"):].lower() in cls.__dataclass_fields__
        }
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") and not any(
                name == "offline" for name, _ in env):
            env[("offline", "HF_HUB_OFFLINE")] = "1"
        if os.environ.get("THINK_NO_LOG", "").strip().lower() in ("1", "true", "yes", "on"):
            env[("log", "THINK_NO_LOG")] = "false"
        return settings._apply(env)

    def _apply(self, values: dict[tuple[str, str], Any]) -> Settings:
        """Apply {(setting, where it came from): value}; a bad value is named with its source."""
        changes: Json = {}
        for (key, where), value in values.items():
            if key not in self.__dataclass_fields__:
                raise ConfigError(f"{where}: unknown setting (known: {', '.join(self.__dataclass_fields__)})")
            try:
                changes[key] = _parse_setting(key, value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc} (got {shown(value)})") from None
        return replace(self, **changes)


SETTING_RANGES = {"threads": (0, 1024), "n_ctx": (256, 1 << 20)}


def shown(value: object, limit: int = 60) -> str:
    """A value quoted in an error message: its type for a structure (never its expansion), cut."""
    if isinstance(value, (dict, list, tuple, set)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse_setting(key: str, value: Any) -> Any:
    if not isinstance(value, (str, int, float, bool)) and value is not None:  # never str() a structure (an alias bomb)
        raise ValueError("must be a single value")
    if key == "default_model":
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a model name")
        return value
    if key in ("offline", "log", "token_probs"):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
            raise ValueError("must be true or false")
        return text in ("1", "true", "yes", "on")
    if key == "gpu_layers":
        try:
            return parse_gpu_layers(str(value))
        except ValueError:
            raise ValueError("must be a whole number >= 0 or 'all'") from None
    low, high = SETTING_RANGES[key]
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise ValueError(f"must be a whole number from {low} to {high}")
    return number


def parse_gpu_layers(value: str) -> int:
    """'all' → -1 (offload every layer), else a non-negative integer."""
    if value.strip().lower() == "all":
        return -1
    layers = int(value)
    if layers < 0:
        raise ValueError(value)
    return layers


def _read_settings(path: Path) -> Json:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        raise ConfigError(f"{path}: not a readable YAML file (UTF-8)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    if not all(isinstance(key, str) for key in data):
        raise ConfigError(f"{path}: every setting's name must be text")
    return data
