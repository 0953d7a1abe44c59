"""`think serve` under 8 concurrent streaming clients, against `think batch --parallel 8`.

Same embedded model, same 32 prompts, same budgets (no thinking, 64 answer tokens; a family without
stop strings, so every request generates exactly that many), in one run:
1. aggregate tokens/s of 8 clients streaming over HTTP (4 requests each, back to back) against the
   batch scheduler in-process with --parallel 8 (target: serve / batch >= 0.9);
2. time to first token of a request that arrives while 7 others are streaming, against the same
   request on an idle server.
Run: .venv/bin/python benchmarks/bench_serve.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

PROMPTS = [f"Question {i}: name a colour and say why you like it." for i in range(32)]
TOKENS = 64
BODY = {"max_tokens": TOKENS, "reasoning_effort": "none", "temperature": 0.8, "stream": True,
        "stream_options": {"include_usage": True}}
# The embedded model under a family without stop strings: fixed token counts on both sides.
FIXED_FAMILY = """
families:
  plain-fixed:
    think_open: "<think>"
    think_close: "</think>"
    plain_template: true
    answer_prefix: "\\nAnswer:"
    sampling: {temperature: 0.8, top_p: 0.95, top_k: 40, min_p: 0.05}
"""
MODELS_YAML = "default_model: gemma-fixed" + FIXED_FAMILY + """models:
  gemma-fixed:
    embedded: true
    family: plain-fixed
"""


def batch_rate() -> float:
    from thinkcli.policy.plan import Overrides, make_plan
    from thinkcli.scheduler.results import Task, messages_for
    from thinkcli.scheduler.run import Scheduler
    from thinkcli.scheduler.runtime import Runtime

    runtime = Runtime.create()
    scheduler = Scheduler(runtime, parallel=8)
    overrides = Overrides(tier="instant", no_think=True, max_answer=TOKENS, temperature=0.8)

    def tasks(prompts: list[str]) -> list[Task]:
        return [Task(str(i), p, make_plan(p, runtime.registry, overrides, runtime.default_model), messages_for(p))
                for i, p in enumerate(prompts)]

    from thinkcli.output.records import Outcome

    list(scheduler.run(tasks(PROMPTS[:1])))  # load the model, build the context
    started = time.perf_counter()
    tokens = sum(e.done.usage.answer_tokens for e in scheduler.run(tasks(PROMPTS)) if isinstance(e, Outcome))
    return tokens / (time.perf_counter() - started)


def stream(url: str, prompt: str, max_tokens: int = 32) -> tuple[int, float | None]:
    """(completion tokens, seconds to the first token) of one streamed request."""
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    body = {**BODY, "max_tokens": max_tokens, "messages": [{"role": "user", "content": prompt}]}
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=300) as response:
        for line in response.iter_lines():  # parse little: the clients share the CPU with the server
            if first is None and '"content": "' in line and '"content": ""' not in line:
                first = time.perf_counter() - started
            elif line.startswith('data: {') and '"usage": {' in line:
                tokens = json.loads(line[6:])["usage"]["completion_tokens"]
    return tokens, first


def main() -> None:
    home = tempfile.mkdtemp(prefix="think-bench-")
    (Path(home) / "config").mkdir()
    (Path(home) / "config" / "models.yaml").write_text(MODELS_YAML)
    env = {**os.environ, "THINK_HOME": home}
    os.environ["THINK_HOME"] = home
    proc = subprocess.Popen([sys.executable, "-m", "thinkcli", "serve", "--port", "0", "--parallel", "8"], env=env,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        line = proc.stderr.readline()
        url = next(p.strip() for p in line.split(" · ") if p.strip().startswith("http://"))
        stream(url, PROMPTS[0])  # warm: the decoding thread, its context
        # The 8 clients are curl processes (a shell loop each, requests back to back): C clients
        # take almost no CPU from the 2 cores the server decodes on; Python clients took ~20 %.
        scripts = []
        for k in range(8):
            calls = " ; ".join(f"curl -sN {url}/chat/completions -H 'content-type: application/json' -d "
                               f"'{json.dumps({**BODY, 'messages': [{'role': 'user', 'content': p}]})}'"
                               for p in PROMPTS[k::8])
            scripts.append(calls)
        started = time.perf_counter()
        clients = [subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, text=True) for script in scripts]
        outputs = [client.communicate()[0] for client in clients]
        serve_rate = sum(json.loads(line[6:])["usage"]["completion_tokens"] for out in outputs
                         for line in out.splitlines() if '"usage": {' in line) / (time.perf_counter() - started)
        decoder = next(iter(httpx.get(url.removesuffix("/v1") + "/health").json()["models"].values()))["decoder"]

        _, idle_first = stream(url, "What is the capital of France?", 8)
        busy: list[threading.Thread] = [threading.Thread(target=stream, args=(url, p, 160)) for p in PROMPTS[:7]]
        for thread in busy:
            thread.start()
        time.sleep(1.0)  # a benchmark, not a test: let the 7 streams get going
        _, busy_first = stream(url, "What is the capital of France?", 8)
        for thread in busy:
            thread.join()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    rate = batch_rate()
    print(f"[8 streaming clients x 4 requests, {TOKENS} answer tokens each] serve {serve_rate:.1f} tok/s | "
          f"think batch --parallel 8 {rate:.1f} tok/s | serve / batch = {serve_rate / rate:.2f} (target >= 0.9)")
    print(f"  server decode: {decoder['tokens_generated']} tokens in {decoder['decode_calls']} steps "
          f"({decoder['tokens_generated'] / max(decoder['decode_calls'], 1):.1f} sequences a step on average), "
          f"{decoder['decode_seconds']:.2f} s inside llama_decode")
    print(f"[time to first token] idle server {idle_first or 0:.3f} s | while 7 others stream {busy_first or 0:.3f} s")


if __name__ == "__main__":
    main()
