"""`think serve`: an OpenAI-compatible HTTP server with the adaptive policy (see frontends/serve/)."""

from __future__ import annotations

import math
import os
import socket
import sys
from typing import Annotated, Any, Optional

import typer

from ..errors import UsageError
from . import Command
from .ask import gpu_layers_value
from .options import GpuLayersOpt, ModelOpt, NoLogOpt


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port (0: any free port, printed at start).")] = 8000,
    model: ModelOpt = None,
    parallel: Annotated[int, typer.Option("--parallel", help="Sequences decoded together per model.")] = 4,
    queue: Annotated[int, typer.Option("--queue", help="Requests that may wait; more get 429.")] = 32,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="THINK_API_KEY", show_envvar=True,
                                                   help="Require Authorization: Bearer KEY.")] = None,
    max_request_bytes: Annotated[int, typer.Option("--max-request-bytes", help="Largest request body.")] = 1_000_000,
    drain_timeout: Annotated[float, typer.Option("--drain-timeout", help="On Ctrl-C/SIGTERM, seconds running requests "
                                                 "may take to finish; what is still running then is cut, and says so.")] = 10.0,
    no_ui: Annotated[bool, typer.Option("--no-ui", help="No web page at / (the API only).")] = False,
    gpu_layers: GpuLayersOpt = None,
    no_log: NoLogOpt = False,
) -> None:
    """Serve an OpenAI-compatible API with adaptive thinking.

    POST /v1/chat/completions and /v1/completions (streamed or not), GET /v1/models, GET /health,
    Ollama's /api/*; a web page at / (chat, runs, traces). reasoning_effort picks a tier; absent, the
    classifier decides."""
    import uvicorn

    from ..frontends.serve.app import Limits, create_app
    from ..frontends.serve.service import Service
    from ..scheduler.runtime import Runtime

    if not 1 <= parallel <= 64:
        raise UsageError(f"--parallel must be between 1 and 64, got {parallel}")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    if queue < 1:
        raise UsageError(f"--queue must be >= 1, got {queue}")
    if max_request_bytes < 1:
        raise UsageError(f"--max-request-bytes must be >= 1, got {max_request_bytes}")
    if not 0 <= drain_timeout <= 3600:
        raise UsageError(f"--drain-timeout must be between 0 and 3600 seconds, got {drain_timeout:g}")
    runtime = Runtime.create(gpu_layers=gpu_layers_value(gpu_layers), log=not no_log)
    if model:
        from dataclasses import replace

        runtime.settings = replace(runtime.settings, default_model=model)
    loaded = runtime.load(runtime.default_model)  # fail now, in one line, not at the first request
    samples = max([t.samples for t in runtime.registry.tiers.values()] + [1])
    service = Service(runtime, parallel=parallel, queue_size=queue, max_samples=samples)
    app = create_app(runtime, service, api_key=api_key or None, limits=Limits(max_request_bytes=max_request_bytes),
                     ui=not no_ui)
    try:
        sock = socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = sock.getsockname()[1]
    debug = bool(os.environ.get("THINK_DEBUG"))
    # uvicorn waits for open responses a little longer than the drain: the cut ones still get their last chunk
    config = uvicorn.Config(app, log_level="info" if debug else "critical", lifespan="off",
                            timeout_graceful_shutdown=math.ceil(drain_timeout) + 5, access_log=debug)
    server = _Server(config, _Drain(service, drain_timeout))
    page = "" if no_ui else f" · web page http://{host}:{bound}/"
    sys.stderr.write(f"think serve · {loaded.name} ({loaded.family.name}) · http://{host}:{bound}/v1{page} · "
                     f"parallel {parallel}{' · API key required' if api_key else ''} · Ctrl-C stops\n")
    sys.stderr.flush()
    try:
        server.run(sockets=[sock])
    finally:
        service.close()
    sys.stderr.write("think serve: stopped\n")


class _Drain:
    """What a stop signal does: the first stops new work and gives running requests `seconds` to
    finish, then cuts the rest; a second cuts them at once."""

    def __init__(self, service: Any, seconds: float):
        self.service, self.seconds = service, seconds
        self.signals = 0

    def __call__(self) -> None:
        import threading

        self.signals += 1
        if self.signals > 1:
            self.service.shutdown()
            return
        self.service.drain()
        sys.stderr.write(f"think serve: stopping; running requests have {self.seconds:g} s to finish "
                         "(Ctrl-C again cuts them)\n")
        threading.Thread(target=self._cut_later, daemon=True, name="drain").start()

    def _cut_later(self) -> None:
        import time

        deadline = time.monotonic() + self.seconds
        while self.service.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        self.service.shutdown()


class _Server:
    """uvicorn's server that drains on Ctrl-C/SIGTERM (see _Drain) and does not re-raise the signal
    afterwards: the exit code is 0."""

    def __new__(cls, config: Any, on_exit: Any) -> Any:
        import uvicorn

        class Graceful(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                super().handle_exit(sig, frame)
                self._captured_signals.clear()
                on_exit()

        return Graceful(config)


def register(app: typer.Typer) -> None:
    app.command("serve", cls=Command)(serve)
