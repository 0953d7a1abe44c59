"""think ask's decode loop against raw llama-cpp-python streaming: same model, prompt, tokens.

Prints decode tokens/s for both and their ratio (target >= 0.97): the median of the ratios taken within
each round, the two alternated; plus the median wall time of `think --help`, `--version` and
`classify --help` (target <= 0.12 s).
Run: .venv/bin/python benchmarks/bench_ask.py [--tokens 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from thinkcli.engine.budget import BudgetSpec
from thinkcli.engine.events import SequenceDone
from thinkcli.engine.family import Sampling
from thinkcli.engine.session import Engine, Job
from thinkcli.models.hub import embedded_path
from thinkcli.policy.registry import load_registry

PROMPT = "Question: Tell me a long story about a dragon who learns to fly.\nAnswer:"


def raw_llama(path: Path, tokens: int, threads: int) -> tuple[int, float]:
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    count, first, last = 0, None, None
    for chunk in llm.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, stream=True):
        if chunk["choices"][0]["finish_reason"] is not None:
            break  # the closing chunk carries no token
        now = time.perf_counter()
        first = first or now
        last = now
        count += 1
    llm.close()
    return count, (count - 1) / (last - first)


def think_engine(path: Path, tokens: int, threads: int) -> tuple[int, float]:
    registry = load_registry(None)
    family = registry.families["plain"]
    from dataclasses import replace

    family = replace(family, stop=())  # raw streaming has no stop strings either
    engine = Engine(threads=threads, n_ctx=2048)
    loaded = engine.load("gemma", path, family, registry.families)
    # Feed the same text the raw run sees: a plain-template prompt without thinking.
    job = Job("b", [{"role": "user", "content": "Tell me a long story about a dragon who learns to fly."}],
              BudgetSpec(thinking=False, max_thinking=0, max_answer=tokens), Sampling(temperature=0.0))
    done = None
    for event in engine.generate(loaded, [job]):
        if isinstance(event, SequenceDone):
            done = event
    engine.close()
    count = done.usage.answer_tokens
    return count, (count - 1) / (done.elapsed_s - done.first_token_s)


def start_time(*args: str) -> float:
    """The median of 5 wall times of `think ARGS` (a median, not the luckiest run).

    Timed as an installed `think` runs: with its bytecode cached. A shell that sets
    PYTHONDONTWRITEBYTECODE (this workplace's does) would make every run on a fresh checkout compile
    our modules from source again (~7 ms that no pip-installed copy pays); one untimed run writes the cache.
    """
    import shutil

    think = shutil.which("think", path=str(Path(sys.executable).parent)) or "think"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([think, *args], capture_output=True, check=True, env=env)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([think, *args], capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    path = embedded_path()
    raw_rates, think_rates, ratios = [], [], []
    for _ in range(args.rounds):
        n_raw, rate_raw = raw_llama(path, args.tokens, args.threads)
        n_think, rate_think = think_engine(path, args.tokens, args.threads)
        raw_rates.append(rate_raw)
        think_rates.append(rate_think)
        ratios.append(rate_think / rate_raw)  # within a round: both ran on the same minute of this machine
        print(f"round: raw {n_raw} tokens {rate_raw:.1f} tok/s | think {n_think} tokens {rate_think:.1f} tok/s "
              f"| ratio {ratios[-1]:.3f}")
    raw, think = statistics.median(raw_rates), statistics.median(think_rates)
    print(f"decode tokens/s (median of {args.rounds}): raw llama-cpp-python {raw:.1f}, think {think:.1f}")
    print(f"ratio think/raw: median of the rounds' ratios {statistics.median(ratios):.3f} "
          f"(rounds {', '.join(f'{r:.3f}' for r in ratios)}; target >= 0.97)")
    print(f"think --help: {start_time('--help'):.3f} s, think --version: {start_time('--version'):.3f} s, "
          f"think classify --help: {start_time('classify', '--help'):.3f} s  (medians of 5; target <= 0.12 s)")
    # the help comes from a snapshot (helptext.py); a command that runs goes through Typer and Click
    print(f"think classify 'What is 2+2?': {start_time('classify', 'What is 2+2?'):.3f} s (median of 5)")


if __name__ == "__main__":
    main()
