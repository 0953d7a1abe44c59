"""Shared fixtures: tiny real GGUF models, a temp THINK_HOME per test, a `think` runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tinymodel import write_tiny_gguf

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny(models_dir: Path):
    """Path to a tiny model variant, written once per session: tiny('tame'), tiny('closer')..."""
    cache: dict[tuple, Path] = {}

    def make(variant: str = "tame", **kwargs) -> Path:
        key = (variant, tuple(sorted(kwargs.items())))
        if key not in cache:
            name = variant + "".join(f"-{k}{v}" for k, v in sorted(kwargs.items())) + ".gguf"
            cache[key] = write_tiny_gguf(models_dir / name, variant, **kwargs)
        return cache[key]

    return make


@pytest.fixture(autouse=True)
def think_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own config/data/cache dirs; nothing touches the real Hub."""
    home = tmp_path / "think_home"
    monkeypatch.setenv("THINK_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("THINK_DEBUG", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return home


def run_think(*args: str, input: str | None = None, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (stdin/stdout are pipes, as in a shell pipeline)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "thinkcli", *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.fixture
def think():
    return run_think


def two_model_config(think_home: Path, small: Path, big: Path, extra_tiers: str = "") -> None:
    """A user models.yaml: `small` by default, the deep tier (Best-of-2) routed to `big`."""
    (think_home / "config").mkdir(parents=True, exist_ok=True)
    (think_home / "config" / "models.yaml").write_text(
        f"models:\n  small:\n    path: {small}\n    family: qwen3\n"
        f"  big:\n    path: {big}\n    family: qwen3\n"
        "default_model: small\n"
        "tiers:\n  deep:\n    model: big\n    samples: 2\n    min_thinking: 0\n    max_thinking: 20\n    max_answer: 4\n"
        + extra_tiers
    )
