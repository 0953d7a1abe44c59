"""engine/prompt.py on every real chat template in tests/data, and on hostile ones."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from thinkcli.engine.family import detect_family
from thinkcli.engine.prompt import render_chat_template, render_prompt
from thinkcli.errors import ModelError
from thinkcli.policy.registry import load_registry

DATA = Path(__file__).parent / "data"
REG = load_registry()
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3+3?"},
]
FAMILY_OF = {
    "HuggingFaceTB-SmolLM3-3B": "smollm3",
    "Qwen-QwQ-32B": "qwen3",
    "Qwen-Qwen2.5-7B-Instruct": "prompted",
    "Qwen-Qwen3-0.6B": "qwen3",
    "Qwen3.5-4B": "qwen3",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B": "deepseek-r1",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": "deepseek-r1",
    "google-gemma-2-2b-it": "prompted",
    "google-gemma-4-31B-it": "gemma4",
    "ibm-granite-granite-3.3-2B-Instruct": "qwen3",
    "meta-llama-Llama-3.2-3B-Instruct": "prompted",
    "microsoft-Phi-3.5-mini-instruct": "prompted",
    "openai-gpt-oss-120b": "gpt-oss",
}
TEMPLATES = sorted(DATA.glob("*.jinja"))


def test_every_template_in_tests_data_is_covered():
    assert {t.stem for t in TEMPLATES} == set(FAMILY_OF)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_family_detection(path):
    assert detect_family(path.read_text()) == FAMILY_OF[path.stem]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_thinking_on_starts_inside_an_open_block_and_off_after_a_closed_one(path):
    template = path.read_text()
    family = REG.families[FAMILY_OF[path.stem]]
    on = render_prompt(CONVERSATION, family, True, template, "<s>", "</s>").text
    off = render_prompt(CONVERSATION, family, False, template, "<s>", "</s>").text  # Gemma 2: system folded in
    assert "Be brief." in on and "Be brief." in off
    assert "And 3+3?" in on and "And 3+3?" in off
    assert on.rstrip().endswith(family.think_open.rstrip()), on[-80:]
    tail = off[off.rfind("And 3+3?"):]
    assert tail.rfind(family.think_open) <= tail.rfind(family.think_close), "thinking off must not end inside a block"
    if family.thinking_instruction:  # models without native thinking are told how to think; off, the block is empty
        assert family.thinking_instruction in on and family.thinking_instruction in off
        assert off.rstrip().endswith(family.think_close) and on.startswith(off[: off.rindex(family.think_open)])


def test_plain_layout_for_a_base_model():
    family = REG.families["plain"]
    on = render_prompt(CONVERSATION, family, True, None).text
    assert "Question: And 3+3?" in on and on.endswith(family.think_open + "\n")
    off = render_prompt(CONVERSATION, family, False, None).text
    assert off.endswith(family.answer_prefix)


HOSTILE = {
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "huge repeat": "{{ 'x' * 10**9 }}",
    "huge method argument": "{{ 'x'.center(10**9) }}",
    "huge filter argument": "{{ 'x'|indent(1000000000) }}",
    "doubling by concatenation": "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "doubling by addition": "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    "doubling through a macro": "{% macro f(s, n) %}{% if n < 60 %}{{ f(s ~ s, n + 1) }}{% endif %}{% endmacro %}{{ f('x', 0) }}",
    "endless recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "huge list": "{{ (messages * 100000000)|length }}",
    "huge output": "{% for i in range(99999) %}{{ 'y' * 1000 }}{% endfor %}",
    "sandbox escape": "{{ ().__class__.__base__.__subclasses__() }}",
    "empty nested loops": '{% set s = "x" * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}',
    "empty loop over a list": "{% set s = range(100000)|list %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
    "printf width": '{{ "%300000000d" % 1 }}',
    "printf width from the arguments": '{{ "%*d" % (300000000, 1) }}',
    "printf precision": '{{ "%.300000000f" % 1 }}',
    "format filter width": '{{ "%300000000d"|format(1) }}',
    "str.format width": '{{ "{:300000000}".format(1) }}',
}

MEMORY_HOSTILE = ("printf width", "printf width from the arguments", "printf precision", "format filter width",
                  "str.format width", "huge method argument", "huge repeat")


def test_hostile_templates_are_refused_before_they_take_memory():
    """Each in a fresh process: its peak memory is what the refusal cost (1.2 GB before `%` was checked)."""
    script = (
        "import resource, sys\n"
        "from thinkcli.engine.prompt import render_chat_template\n"
        "from thinkcli.errors import ModelError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    render_chat_template(sys.argv[1], [{'role': 'user', 'content': 'hi'}], True)\n"
        "except ModelError:\n"
        "    pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    import subprocess
    import sys

    for name in MEMORY_HOSTILE:
        out = subprocess.run([sys.executable, "-c", script, HOSTILE[name]], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout) < 64 * 1024, (name, out.stdout)  # KiB: under 64 MB


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_templates_fail_fast_in_one_line(name):
    started = time.perf_counter()
    with pytest.raises(ModelError, match="chat template failed") as failure:
        render_chat_template(HOSTILE[name], [{"role": "user", "content": "hi"}], True)
    assert time.perf_counter() - started < 2.5
    assert "\n" not in str(failure.value)


def test_a_hostile_template_inside_a_gguf_is_one_line_through_think(think, tmp_path):
    from tinymodel import write_tiny_gguf

    model = write_tiny_gguf(tmp_path / "loop.gguf", template=HOSTILE["nested loops"])
    r = think("ask", "-m", str(model), "hi")
    assert r.returncode == 1 and r.stderr.startswith("error: the model's chat template failed")
    assert r.stderr.count("\n") == 1
