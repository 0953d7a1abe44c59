"""What trial answers cost (forward passes in a fork) against what they save (thinking tokens), in one run.

The tiny reasoner answers the 200 problems of `reasoner` (set seed 1) with thinking, four at a time, under
its standard tier's cap of 512: the cap alone, then with trial answers (0.999), + agreeing trials (0.98),
+ stated trial answers (0.95) — the shipped settings. Each row counts the llama_decode calls of the main
loop and of the trials (a trial decodes the close tag, then one token per call, one sequence alone), the
thinking tokens, the accuracy and the wall time; the last columns are ratios against the cap alone, measured
in this run. Without the probe and the tiers, so the rules alone are compared.
Run: .venv/bin/python benchmarks/bench_trials.py [--limit 200] [--parallel 4]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from thinkcli.engine.budget import BudgetSpec
from thinkcli.engine.events import SequenceDone
from thinkcli.engine.family import Sampling
from thinkcli.engine.session import Engine, Job
from thinkcli.frontends.eval.runner import check
from thinkcli.frontends.eval.sets import reasoner_set
from thinkcli.models.hub import packaged_path
from thinkcli.policy.registry import load_registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()

    registry = load_registry(None)
    tier = registry.tiers_for("tiny-reasoner")["standard"]
    base = BudgetSpec(max_thinking=tier.max_thinking, max_answer=tier.max_answer, trial_tokens=tier.trial_tokens,
                      loop_tokens=0)
    variants = [
        ("cap 512 alone", base),
        ("+ trials 0.999", replace(base, trial_confidence=tier.trial_confidence)),
        ("+ agreeing 0.98", replace(base, trial_confidence=tier.trial_confidence, trial_agree=tier.trial_agree)),
        ("+ stated 0.95", replace(base, trial_confidence=tier.trial_confidence, trial_agree=tier.trial_agree,
                                  trial_stated=tier.trial_stated)),
    ]
    items = reasoner_set(1)[: args.limit]
    engine = Engine(n_ctx=1024)
    loaded = engine.load("tiny-reasoner", packaged_path("tiny-reasoner.gguf"), None, registry.families)
    decoder = engine.decoder(loaded, args.parallel)
    print(f"tiny-reasoner, {len(items)} problems of reasoner (set seed 1), {args.parallel} at a time, temperature 0")
    header = (f"{'policy':<16} {'accuracy':>9} {'thinking':>9} {'main decodes':>13} {'trials':>7} {'trial decodes':>14} "
              f"{'wall s':>7} {'thinking ×':>10} {'decodes ×':>10} {'wall ×':>7}")
    print(header)
    first: tuple[float, float, float] | None = None
    try:
        for name, spec in variants:
            before = dict(vars(decoder.stats))
            jobs = [Job(item.id, [{"role": "user", "content": item.prompt}], spec, Sampling(temperature=0.0))
                    for item in items]
            started = time.perf_counter()
            done = {e.seq: e for e in engine.generate(loaded, jobs, args.parallel) if isinstance(e, SequenceDone)}
            wall = time.perf_counter() - started
            after = vars(decoder.stats)
            right = sum(check(done[item.id].answer, item.answer, item.checker)[0] for item in items)
            thinking = sum(done[item.id].usage.thinking_tokens for item in items) / len(items)
            trial_decodes = after["trial_decodes"] - before["trial_decodes"]
            main_decodes = after["decode_calls"] - before["decode_calls"] - trial_decodes
            all_decodes = main_decodes + trial_decodes
            first = first or (thinking, all_decodes, wall)
            print(f"{name:<16} {right / len(items):>8.1%} {thinking:>9.1f} {main_decodes:>13} "
                  f"{after['trials'] - before['trials']:>7} {trial_decodes:>14} {wall:>7.1f} "
                  f"{thinking / first[0]:>10.2f} {all_decodes / first[1]:>10.2f} {wall / first[2]:>7.2f}")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
