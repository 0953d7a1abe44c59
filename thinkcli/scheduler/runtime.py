"""Per-process state every command shares: paths, settings, the model registry, the engine.

Built once per command by the CLI (never at import time); `run.Scheduler` drives it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..config import Paths, Settings
from ..engine.session import Engine, Loaded
from ..models.resolve import ServedModel, resolve
from ..output.logs import RunLog
from ..policy.registry import Registry, load_registry


@dataclass
class Runtime:
    """Per-process state: paths, settings, the registry and the (lazy) engine."""

    paths: Paths
    settings: Settings
    registry: Registry
    engine: Engine
    log: RunLog | None = None  # None: runs are not logged (--no-log, log: false, THINK_NO_LOG)

    @classmethod
    def create(cls, gpu_layers: int | None = None, threads: int | None = None, log: bool = True) -> Runtime:
        paths = Paths.resolve()
        settings = Settings.load(paths)
        registry = load_registry(paths.models_file)
        engine = Engine(
            gpu_layers=settings.gpu_layers if gpu_layers is None else gpu_layers,
            threads=settings.threads if threads is None else threads,
            n_ctx=settings.n_ctx,
        )
        run_log = RunLog(paths.log_file) if log and settings.log else None
        return cls(paths, settings, registry, engine, run_log)

    @property
    def default_model(self) -> str:
        return self.settings.default_model or self.registry.default_model

    def load(self, ref: str) -> Loaded:
        target = resolve(ref, self.registry, self.paths)
        with _LOAD_LOCK:  # a server's decoding threads may ask for models at once
            if isinstance(target, ServedModel):
                return self.engine.load_remote(ref, target.endpoint, target.family, self.registry.families)
            return self.engine.load(target.name, target.path, target.family, self.registry.families)


_LOAD_LOCK = threading.Lock()
