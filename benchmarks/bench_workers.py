"""`think batch --workers`: one client process against two, the same remote batch, alternated.

The shipped tiny reasoner on llama-server (-np 16), 128 sums capped at 48 thinking tokens, through the
real CLI: `--workers 1 --parallel 16` against `--workers 2 --parallel 8` (the same 16 in flight), two
rounds each, alternated. On a 2-core machine the server needs those cores too, so the figure shows what
a second client process costs or buys *here*; with the server on other hardware, the client's core is
the limit a second worker lifts (see bench_client_cpu.py for the per-token cost). So a second section
runs the same against a server that costs nothing: a stub that streams a ready-made 64-token reply to
every request, where the client is all there is to measure — 2,048 items, so that what a run costs per
item outweighs what it costs to start (a worker is a spawned process: its imports and the model's
metadata, about a second).
Run: .venv/bin/python benchmarks/bench_workers.py [--items 128] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_remote import start_server  # benchmarks/ is on the path when a benchmark runs as a script


def stub_server() -> str:
    """An OpenAI-style server in this process that answers at once: /v1/models, and the same streamed
    64-token completion for every request (the client's policy closes it where its budget says)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    chunk = b'data: {"choices": [{"index": 0, "text": "ab ", "finish_reason": null}]}\n\n'
    stream = chunk * 64 + b'data: {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    models = b'{"object": "list", "data": [{"id": "stub"}]}'

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body, kind = (models, "application/json") if self.path.endswith("/models") else (
                (stream, "text/event-stream") if self.path.endswith("/completions") else (b"{}", "application/json"))
            self.send_response(200 if body != b"{}" else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def batch(home: Path, questions: Path, workers: int, parallel: int, model: str = "client") -> float:
    out = home / f"out-{workers}-{time.monotonic_ns()}.jsonl"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "thinkcli", "batch", str(questions), "-o", str(out), "-m", model,
                    "--tier", "light", "--max-thinking", "48", "--temperature", "0", "--no-log",
                    "--workers", str(workers), "--parallel", str(parallel)],
                   check=True, capture_output=True, env={**os.environ, "THINK_HOME": str(home)})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    from thinkcli.models.hub import packaged_path

    proc, url = start_server(packaged_path("tiny-reasoner.gguf"), 16, 2)
    try:
        (home / "config").mkdir(parents=True)
        (home / "config" / "models.yaml").write_text(
            f"models:\n  client:\n    url: {url}\n    model: tiny-reasoner\n    family: qwen3\n")
        questions = home / "sums.txt"
        questions.write_text("".join(f"What is {10_000 + 7919 * i} + {20_000 + 104_729 * i}?\n"
                                     for i in range(args.items)))
        batch(home, questions, 1, 16)  # warm
        one, two = [], []
        for _ in range(args.rounds):
            one.append(batch(home, questions, 1, 16))
            two.append(batch(home, questions, 2, 8))
            print(f"round: --workers 1 {args.items / one[-1]:.1f} items/s | --workers 2 {args.items / two[-1]:.1f} items/s")
        ratios = [a / b for a, b in zip(one, two, strict=True)]
        print(f"[llama-server: {args.items} sums, 16 in flight, whole CLI runs] --workers 2 / --workers 1 = "
              + ", ".join(f"{r:.2f}" for r in ratios) + f", median {statistics.median(ratios):.2f}")
        stub = stub_server()
        (home / "config" / "models.yaml").write_text(
            f"models:\n  client:\n    url: {url}\n    model: tiny-reasoner\n    family: qwen3\n"
            f"  stub:\n    url: {stub}\n    model: stub\n    family: qwen3\n")
        many = home / "many.txt"
        stubbed = args.items * 16
        many.write_text("".join(f"Question {i}: what is the answer?\n" for i in range(stubbed)))
        batch(home, many, 1, 16, "stub")  # warm
        one, two = [], []
        for _ in range(args.rounds):
            one.append(batch(home, many, 1, 16, "stub"))
            two.append(batch(home, many, 2, 8, "stub"))
            print(f"round: --workers 1 {stubbed / one[-1]:.1f} items/s | --workers 2 {stubbed / two[-1]:.1f} items/s")
        ratios = [a / b for a, b in zip(one, two, strict=True)]
        print(f"[a server that costs nothing: {stubbed} items, 64 tokens each] --workers 2 / --workers 1 = "
              + ", ".join(f"{r:.2f}" for r in ratios) + f", median {statistics.median(ratios):.2f}")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
