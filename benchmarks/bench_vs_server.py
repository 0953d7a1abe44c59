"""`think batch --parallel 8` in process against llama.cpp's own server with 8 plain streaming clients.

The embedded model, the same 32 prompts, 64 answer tokens each (a family without stop strings, so
every request generates exactly its budget), no thinking: A = think's scheduler and decoder in this
process, 2 threads; B = llama-server `-np 8 -t 2` and 8 threads each streaming /v1/completions. Alternated
A B A B A B on this machine; prints each round's tokens/s and the median of the per-round ratios.
Run: .venv/bin/python benchmarks/bench_vs_server.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench_remote import FAMILY, PROMPTS, plain_calls, run_tasks, start_server  # benchmarks/ is on the path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-vs-server-"))
    os.environ["THINK_HOME"] = str(home)
    os.environ["THINK_THREADS"] = "2"  # as the server's -t 2 (think's default on 2 cores is 1: see Settings)
    from thinkcli.engine.prompt import render_prompt
    from thinkcli.models.hub import embedded_path
    from thinkcli.policy.registry import load_registry

    model = embedded_path()
    proc, url = start_server(model, 8, 2)
    try:
        (home / "config").mkdir(parents=True)
        (home / "config" / "models.yaml").write_text(
            FAMILY + "models:\n  local:\n    embedded: true\n    family: plain-fixed\n")
        family = load_registry(home / "config" / "models.yaml").family("plain-fixed")
        texts = [render_prompt([{"role": "user", "content": p}], family, False, None, "", "").text for p in PROMPTS]
        ratios = []
        for _ in range(args.rounds):
            think_tokens, think_s = run_tasks("local", thinking=False)
            server_tokens, server_s = plain_calls(url, str(model), texts, None)
            ratios.append((think_tokens / think_s) / (server_tokens / server_s))
            print(f"round: think batch --parallel 8 {think_tokens / think_s:.1f} tok/s | llama-server -np 8, "
                  f"8 plain clients {server_tokens / server_s:.1f} tok/s | ratio {ratios[-1]:.2f}")
        print("[32 prompts x 64 tokens, 8 at a time] think / llama-server = "
              + ", ".join(f"{r:.2f}" for r in ratios) + f", median {statistics.median(ratios):.2f} "
              f"(spread {min(ratios):.2f}-{max(ratios):.2f})")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
