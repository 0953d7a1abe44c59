"""The one resolver: a model reference → where the model is (a file here, or a server).

A reference is an alias in models.yaml (embedded, a path, a Hub repo, or served at a `url`), a
path to a .gguf, `org/repo[:QUANT]` already in the Hugging Face cache, or `http://host/v1#name`.
Every command and the server come through `resolve`; nothing else decides what a name means.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..config import Paths
from ..engine.family import Family
from ..engine.remote import Endpoint, default_timeout, parse_remote_ref
from ..errors import ModelError, ThinkError
from ..policy.registry import ModelEntry, Registry
from .hub import cached_file, embedded_path, looks_like_path, packaged_path, parse_repo_ref


@dataclass(frozen=True)
class LocalModel:
    name: str
    path: Path
    family: Family | None  # None: detect from the file's chat template
    entry: ModelEntry | None


@dataclass(frozen=True)
class ServedModel:
    name: str
    endpoint: Endpoint
    family: Family | None  # None: detect from the served template


Resolved = Union[LocalModel, ServedModel]


def display_name(ref: str) -> str:
    """How a model is named to people and clients: its alias or repo, or a .gguf path's file name."""
    return Path(ref).name if looks_like_path(ref) else ref


def resolve(ref: str, registry: Registry, paths: Paths) -> Resolved:
    """Where `ref` is, or a one-line error saying what to do."""
    served = _served(ref, registry)
    if served is not None:
        return served
    if looks_like_path(ref):
        path = Path(ref).expanduser()
        if not path.exists():
            raise ModelError(f"model file not found: {path}")
        return LocalModel(path.name, path, None, None)
    if ref not in registry.models:
        repo_ref = parse_repo_ref(ref)
        if repo_ref is None:
            known = ", ".join(sorted(registry.models))
            raise ModelError(f"unknown model '{ref}': not an alias in models.yaml ({known}), "
                             "org/repo[:QUANT] nor a .gguf file")
        found = cached_file(repo_ref)
        if found is None:
            raise ModelError(f"model '{ref}' is not downloaded: run `think pull {ref}` (or add --pull)")
        return LocalModel(ref, found, None, repo_ref)  # family: from the file's chat template
    entry = registry.models[ref]
    family = registry.families[entry.family]
    if entry.embedded:
        return LocalModel(ref, packaged_path(entry.file) if entry.file else embedded_path(), family, entry)
    if entry.path:
        path = Path(entry.path).expanduser()
        if not path.exists():
            raise ModelError(f"model '{ref}': file not found: {path}")
        return LocalModel(ref, path, family, entry)
    cached = cached_file(entry)
    if cached is None:
        raise ModelError(f"model '{ref}' is not downloaded: run `think pull {ref}`")
    return LocalModel(ref, cached, family, entry)


def is_available(ref: str, registry: Registry, paths: Paths) -> bool:
    """On disk (a file check, no load), or served elsewhere (asked only when a request runs on it)."""
    entry = registry.models.get(ref)
    if entry is not None and entry.remote:
        return True
    try:
        resolve(ref, registry, paths)
        return True
    except ThinkError:
        return False


def _served(ref: str, registry: Registry) -> ServedModel | None:
    """A models.yaml entry with `url`, or `http://host/v1#name`: where the server is."""
    entry = registry.models.get(ref)
    if entry is None or not entry.remote:
        adhoc = parse_remote_ref(ref)
        return ServedModel(ref, adhoc, None) if adhoc is not None else None
    template = _template(ref, entry.template) if entry.template else None
    urls = tuple(u.rstrip("/") for u in ([entry.url] if entry.url else []) + list(entry.urls))
    timeout = entry.timeout if entry.timeout is not None else default_timeout()
    endpoint = Endpoint(urls, entry.model or ref, entry.api_key_env, template, timeout, entry.parallel,
                        entry.server_budget)
    return ServedModel(ref, endpoint, registry.family(entry.family))


def _template(ref: str, where: str) -> str | None:
    """A served model's chat template: a .jinja file, or the served model's own GGUF (its template is read)."""
    path = Path(where).expanduser()
    try:
        if path.suffix == ".gguf":
            from ..engine.model import gguf_chat_template

            return gguf_chat_template(path)
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"models.{ref}.template: cannot read {path} ({exc.strerror})") from None
