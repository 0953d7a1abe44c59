"""What the run log's token trace costs: decode time and log size.

Decodes the same greedy thinking run on the embedded model with and without every token's
probability computed (what the trace shades by; computed only where a policy needs it), alternating,
in one process. Then replays that run's tokens through the policy with and without its trace
recording, and sets the difference against the decode time per token (target: < 2 %). Last, what a
trace adds to a logged row (bytes of `trace` against the text).
Run: .venv/bin/python benchmarks/bench_trace.py [--tokens 160] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from thinkcli.engine import budget
from thinkcli.engine.budget import BudgetSpec
from thinkcli.engine.events import SequenceDone
from thinkcli.engine.family import Sampling
from thinkcli.engine.session import Engine, Job
from thinkcli.models.hub import embedded_path
from thinkcli.output.trace import trace_record
from thinkcli.policy.registry import load_registry

PROMPT = "Tell me a long story about a dragon who learns to fly."


def run(engine: Engine, loaded: object, tokens: int, scored: bool) -> SequenceDone:
    job = Job("b", [{"role": "user", "content": PROMPT}],
              BudgetSpec(thinking=True, max_thinking=tokens, max_answer=8, loop_tokens=0),
              Sampling(temperature=0.0), score_tokens=scored)
    done = None
    for event in engine.generate(loaded, [job]):  # type: ignore[arg-type]
        if isinstance(event, SequenceDone):
            done = event
    assert done is not None
    return done


def rate(done: SequenceDone) -> float:
    count = done.usage.thinking_tokens + done.usage.answer_tokens
    return (count - 1) / (done.elapsed_s - (done.first_token_s or 0.0))


def replay_us(loaded: object, engine: Engine, done: SequenceDone, tracing: bool, reps: int = 20) -> float:
    """Microseconds the policy spends per token on this run's tokens (with or without its trace)."""
    import time

    from thinkcli.engine.session import make_policy

    model = loaded.model  # type: ignore[attr-defined]
    tokens = model.tokenize(done.thinking + "</think>" + done.answer, add_bos=False, special=True)
    pieces = [model.piece(t).decode("utf-8", "replace") for t in tokens]
    spec = BudgetSpec(thinking=True, max_thinking=10**6, max_answer=10**6, loop_tokens=0)
    best = float("inf")
    recording = budget.SequencePolicy._trace
    budget.SequencePolicy._trace = recording if tracing else (lambda *a, **k: None)  # type: ignore[method-assign]
    try:
        for _ in range(reps):
            policy = make_policy(loaded, spec, engine.forced(loaded))  # type: ignore[arg-type]
            started = time.perf_counter()
            for token, piece in zip(tokens, pieces, strict=True):
                policy.decide(token, piece, 0.9)
            policy.token_trace()
            best = min(best, time.perf_counter() - started)
    finally:
        budget.SequencePolicy._trace = recording  # type: ignore[method-assign]
    return best / len(tokens) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    registry = load_registry(None)
    engine = Engine(threads=args.threads, n_ctx=2048)
    loaded = engine.load("gemma", embedded_path(), None, registry.families)
    rates: dict[str, list[float]] = {"unscored": [], "scored": []}
    last: SequenceDone | None = None
    run(engine, loaded, 16, False)  # warm up
    for _ in range(args.rounds):
        for name in rates:
            last = run(engine, loaded, args.tokens, scored=name == "scored")
            rates[name].append(rate(last))
        print("round: " + " | ".join(f"{name} {values[-1]:.1f} tok/s" for name, values in rates.items()))
    assert last is not None
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"decode tokens/s (median of {args.rounds}): " + ", ".join(f"{n} {v:.1f}" for n, v in median.items()))
    print(f"every token's probability: {median['scored'] / median['unscored']:.3f} of the speed unscored")
    with_trace, without = replay_us(loaded, engine, last, True), replay_us(loaded, engine, last, False)
    decode_us = 1e6 / median["scored"]
    print(f"policy per token: {without:.1f} µs without the trace, {with_trace:.1f} µs with it; the trace adds "
          f"{(with_trace - without) / decode_us:.3%} to a token's decode ({decode_us / 1000:.1f} ms)  (target < 2 %)")
    engine.close()
    trace = json.dumps(trace_record(last.trace))
    text = len(last.thinking.encode()) + len(last.answer.encode())
    count = last.usage.thinking_tokens + last.usage.answer_tokens
    print(f"log size: the trace of {count} tokens is {len(trace)} bytes ({len(trace) / max(1, count):.2f} a token) "
          f"next to {text} bytes of their text")


if __name__ == "__main__":
    main()
