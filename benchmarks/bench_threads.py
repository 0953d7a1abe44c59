"""Decode threads on a machine that is not idle: why `think` uses half the cores by default.

llama.cpp's worker threads spin while they wait for each other; when another process holds a core,
a thread that is not scheduled stalls every step of the others. This runs the same greedy decode of
the embedded model with each thread count, on an idle machine and beside one busy process (a spin
loop, as a second `think` or a compiler would be), alternated A B A B so that drift in the machine's
load hits every arm alike, and prints tokens/s with the median of the rounds.
Run: .venv/bin/python benchmarks/bench_threads.py [--tokens 96] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

from bench_ask import think_engine  # benchmarks/ is on the path when a benchmark runs as a script

from thinkcli.engine.model import default_threads
from thinkcli.models.hub import embedded_path


def decode(threads: int, tokens: int) -> float:
    return think_engine(embedded_path(), tokens, threads)[1]  # bench_ask's decode of the same model


def _spin(stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    while not stop.is_set():
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    counts = sorted({1, default_threads(), cores})
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for load in ("idle", "one busy process"):
            stop = multiprocessing.Event()
            busy = multiprocessing.Process(target=_spin, args=(stop,), daemon=True) if load != "idle" else None
            if busy is not None:
                busy.start()
                time.sleep(0.2)  # the spinner holds its core before the decode starts
            for threads in counts:
                results.setdefault((load, threads), []).append(decode(threads, args.tokens))
            stop.set()
            if busy is not None:
                busy.join()
    print(f"{cores} cores; think's default: {default_threads()} decode thread(s); {args.tokens} tokens, "
          f"{args.rounds} rounds (median, min–max tok/s)")
    for (load, threads), speeds in sorted(results.items()):
        mark = "  <- default" if threads == default_threads() else ""
        print(f"  {load:<17} threads {threads:>2}: {statistics.median(speeds):6.1f} tok/s "
              f"({min(speeds):.1f}–{max(speeds):.1f}){mark}")


if __name__ == "__main__":
    main()
