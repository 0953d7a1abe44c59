"""The shipped tiny reasoner: policies tested for their *effect*, not just that they run.

One eval over fresh problems (the `reasoner` set: seeds it was never trained on) at temperature 0,
shared by the tests; the effects asserted are far larger than the noise of 60 items.
"""

from __future__ import annotations

import json

import pytest

from thinkcli.models.hub import packaged_path


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> dict[str, dict]:
    from conftest import run_think

    pytest.importorskip("llama_cpp")
    packaged_path("tiny-reasoner.gguf")  # shipped with the package: a missing file fails here
    out = tmp_path_factory.mktemp("reasoner-eval")
    home = tmp_path_factory.mktemp("reasoner-home")
    r = run_think("eval", "reasoner", "--limit", "60", "-m", "tiny-reasoner", "--policies", "auto,0,16,256",
                  "--temperature", "0", "--parallel", "4", "-o", str(out / "results"), "--json", "--no-log",
                  env={"THINK_HOME": str(home)}, timeout=900)
    assert r.returncode == 0, r.stderr
    return {p["policy"]: p for p in json.loads(r.stdout)["policies"]}


def test_the_tiny_reasoner_answers_offline(think):
    r = think("ask", "-m", "tiny-reasoner", "--json", "--tier", "light", "--temperature", "0", "What is 12 + 7?")
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["family"] == "qwen3" and record["thinking"].strip().startswith("d1 2+7+0=9")
    assert record["answer"].strip() == "19" and record["finish_reason"] == "stop"


def test_thinking_pays_on_its_problems(scores):
    assert scores["256"]["accuracy"] >= scores["0"]["accuracy"] + 0.2  # measured: +0.38 at 100 items


def test_a_cap_below_the_trace_lowers_accuracy_and_a_generous_one_does_not(scores):
    assert scores["16"]["mean_thinking_tokens"] <= 16
    assert scores["256"]["accuracy"] >= scores["16"]["accuracy"] + 0.15
    assert scores["256"]["p95_thinking_tokens"] < 256  # the traces end by themselves within the cap


def test_auto_thinks_less_than_the_generous_cap(scores):
    assert scores["auto"]["mean_thinking_tokens"] < scores["256"]["mean_thinking_tokens"]
