"""What `think` itself costs per token on a remote batch: the ceiling of one client process.

The shipped tiny reasoner on llama-server (-np 16, a template that opens the thinking block), 64 sums
through the one scheduler at --parallel 16 as `think batch` runs them (no one reads the text as it
comes), capped at 112 thinking tokens (items of about 120 tokens, the issue's 64 x 128; the confidence
stop's items run under a cap of 256), four ways: capped items whose budget the server keeps and that no per-token rule reads (the
loop breaker off: one chat request each, not streamed, parsed once); the same with the loop breaker on
(a per-token rule: streamed); capped items whose budget think keeps (two raw /completion requests); and
items that stop on confidence (a per-token rule on the client). Prints the client's CPU (this
process, all threads; start-up and model metadata excluded: measured after a warm run) per token
the model generated (thinking and answer; the budget message is not counted), and the tokens/s
one core of client could sustain at that cost.
Run: .venv/bin/python benchmarks/bench_client_cpu.py [--items 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench_remote import start_server  # benchmarks/ is on the path when a benchmark runs as a script

SUMS = [f"What is {10_000 + 7919 * i} + {20_000 + 104_729 * i}?" for i in range(256)]


def run(alias: str, items: int, confidence: float, loops: bool = True) -> tuple[int, int, float, float]:
    """(the model's tokens, tokens the client read, client CPU seconds, wall seconds) for `items` sums at
    --parallel 16 (where the server keeps the budget, the client also reads the budget message it writes)."""
    from thinkcli.output.records import Outcome
    from thinkcli.policy.plan import Overrides, make_plan
    from thinkcli.scheduler.results import Task, messages_for
    from thinkcli.scheduler.run import Scheduler
    from thinkcli.scheduler.runtime import Runtime

    runtime = Runtime.create(log=False)
    runtime.load(alias)
    overrides = Overrides(model=alias, tier="standard", max_thinking=256 if confidence else 112,
                          max_answer=16, temperature=0.0, probe=False, confidence=confidence, loop_breaker=loops)
    tasks = [Task(str(i), p, make_plan(p, runtime.registry, overrides, alias), messages_for(p))
             for i, p in enumerate(SUMS[:items])]
    cpu, wall = time.process_time(), time.perf_counter()
    tokens = read = 0  # capped at 112 thinking tokens: items of about 120 tokens, as the issue measured (64 x 128)
    for event in Scheduler(runtime, parallel=16, streamed=False).run(tasks):
        if isinstance(event, Outcome):
            usage = event.done.usage
            tokens += usage.thinking_tokens + usage.answer_tokens  # the model's own (not the budget message)
            read += usage.thinking_tokens + usage.answer_tokens + (usage.forced_tokens if alias == "kept" else 0)
    return tokens, read, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=64)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    os.environ["THINK_HOME"] = str(home)
    from thinkcli.models.hub import packaged_path

    template = Path(__file__).resolve().parent.parent / "tests" / "data" / "Qwen3.5-4B.jinja"
    proc, url = start_server(packaged_path("tiny-reasoner.gguf"), 16, 2, "--chat-template-file", str(template))
    try:
        (home / "config").mkdir(parents=True)
        (home / "config" / "models.yaml").write_text(
            "models:\n"
            f"  kept:\n    url: {url}\n    model: tiny-reasoner\n    family: qwen3\n"
            f"  client:\n    url: {url}\n    model: tiny-reasoner\n    family: qwen3\n    server_budget: off\n")
        run("kept", 16, 0.0)  # warm: imports, the server's cache
        for label, alias, confidence, loops in (("capped, kept by the server, whole replies", "kept", 0.0, False),
                                                ("capped, kept by the server, loop breaker", "kept", 0.0, True),
                                                ("capped, kept by think, loop breaker", "client", 0.0, True),
                                                ("confidence stop + loop breaker", "client", 0.9, True)):
            tokens, read, cpu, wall = run(alias, args.items, confidence, loops)
            per_k = 1000 * cpu / tokens
            print(f"{label:<42} {tokens} model tokens in {wall:.2f} s ({tokens / wall:.0f} tok/s): client CPU "
                  f"{per_k:.3f} ms a model token, {1000 * cpu / args.items:.1f} ms an item ({1000 * cpu / read:.3f} "
                  f"ms a token read, {read} read) -> one core sustains ~{1000 / per_k:,.0f} model tok/s")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
