"""Per-process state every command shares: paths, settings, the model registry, the engine.

Built once per command by the CLI (never at import time); `run.Scheduler` drives it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from ..config import Paths, Settings
from ..engine.family import Family
from ..engine.remote import Endpoint, default_timeout, parse_remote_ref
from ..engine.session import Engine, Loaded
from ..errors import ModelError
from ..models.hub import resolve
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
        remote = self.endpoint(ref)
        if remote is not None:
            endpoint, family = remote
            with _LOAD_LOCK:
                return self.engine.load_remote(ref, endpoint, family, self.registry.families)
        resolved = resolve(ref, self.registry, self.paths)
        with _LOAD_LOCK:  # a server's decoding threads may ask for models at once
            return self.engine.load(resolved.name, resolved.path, resolved.family, self.registry.families)

    def endpoint(self, ref: str) -> tuple[Endpoint, Family | None] | None:
        """A served model (a models.yaml entry with `url`, or `http://host/v1#name`) → where it is."""
        entry = self.registry.models.get(ref)
        if entry is not None and entry.remote:
            template = None
            if entry.template:  # a .jinja file, or the served model's own GGUF (its template is read)
                path = Path(entry.template).expanduser()
                try:
                    if path.suffix == ".gguf":
                        from ..engine.model import gguf_chat_template

                        template = gguf_chat_template(path)
                    else:
                        template = path.read_text(encoding="utf-8")
                except OSError as exc:
                    raise ModelError(f"models.{ref}.template: cannot read {path} ({exc.strerror})") from None
            urls = tuple(u.rstrip("/") for u in ([entry.url] if entry.url else []) + list(entry.urls))
            timeout = entry.timeout if entry.timeout is not None else default_timeout()
            endpoint = Endpoint(urls, entry.model or ref, entry.api_key_env, template, timeout, entry.parallel)
            return endpoint, self.registry.family(entry.family)
        adhoc = parse_remote_ref(ref)
        return (adhoc, None) if adhoc is not None else None


_LOAD_LOCK = threading.Lock()
