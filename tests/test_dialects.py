"""Every dialect apps speak to `think serve`: the spellings of a thinking budget (OpenAI, OpenRouter,
Anthropic, llama.cpp, vLLM), thinking returned as `reasoning` and `reasoning_content`, and Ollama's
API driven by the official `ollama` client. The server runs the shipped tiny reasoner, so a budget's
effect is visible in real thinking tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from test_server import Served, serve

from thinkcli.frontends.serve.protocol import ApiError, Limits, ThinkingAsk, thinking_ask

QUESTION = "What is 48213 + 9977?"  # the reasoner's own kind of problem: it thinks ~120 tokens on it


def ask(body: dict) -> ThinkingAsk:
    return thinking_ask(body, Limits())


@pytest.mark.parametrize("body, expected", [
    ({}, ThinkingAsk()),
    ({"reasoning_effort": "high"}, ThinkingAsk(tier="deep")),
    ({"reasoning_effort": "none"}, ThinkingAsk(tier="instant", off=True)),
    ({"reasoning": {"effort": "low", "max_tokens": 40}}, ThinkingAsk(tier="light", cap=40)),
    ({"reasoning": {"max_tokens": 40, "exclude": True}}, ThinkingAsk(cap=40, exclude=True)),
    ({"reasoning": {"enabled": False}}, ThinkingAsk(tier="instant", off=True)),
    ({"thinking": {"type": "enabled", "budget_tokens": 64}}, ThinkingAsk(cap=64)),
    ({"thinking": {"type": "disabled"}}, ThinkingAsk(tier="instant", off=True)),
    ({"reasoning_budget_tokens": 32}, ThinkingAsk(cap=32)),
    ({"reasoning_budget_tokens": -1}, ThinkingAsk()),  # llama.cpp's "no limit"
    ({"thinking_budget_tokens": 32, "max_thinking": 32}, ThinkingAsk(cap=32)),  # agreeing fields are fine
    ({"thinking_token_budget": 16}, ThinkingAsk(cap=16)),
    ({"chat_template_kwargs": {"enable_thinking": False}}, ThinkingAsk(tier="instant", off=True)),
    ({"chat_template_kwargs": {"enable_thinking": False}, "tier": "light"}, ThinkingAsk(tier="light", off=True)),
])
def test_every_spelling_of_a_thinking_budget_maps_to_one_ask(body, expected):
    assert ask(body) == expected


@pytest.mark.parametrize("body, names", [
    ({"max_thinking": 10, "reasoning": {"max_tokens": 20}}, ("max_thinking", "reasoning.max_tokens")),
    ({"reasoning_effort": "low", "reasoning": {"effort": "high"}}, ("reasoning_effort", "reasoning.effort")),
    ({"thinking": {"type": "disabled", "budget_tokens": 64}}, ("thinking.type", "thinking.budget_tokens")),
    ({"chat_template_kwargs": {"enable_thinking": False}, "reasoning": {"enabled": True}},
     ("reasoning.enabled", "chat_template_kwargs.enable_thinking")),
    ({"reasoning_effort": "none", "thinking_token_budget": 30}, ("reasoning_effort", "thinking_token_budget")),
])
def test_fields_that_disagree_are_a_400_naming_both(body, names):
    with pytest.raises(ApiError) as caught:
        ask(body)
    assert caught.value.status == 400 and all(f"'{name}'" in caught.value.message for name in names)


@pytest.mark.parametrize("body, text", [
    ({"reasoning": "lots"}, "'reasoning' must be an object"),
    ({"thinking": {"type": "sometimes"}}, "'thinking.type' must be"),
    ({"reasoning_budget_tokens": "many"}, "'reasoning_budget_tokens' must be an integer"),
    ({"reasoning": {"exclude": "yes"}}, "'reasoning.exclude' must be true or false"),
])
def test_a_malformed_spelling_is_a_400_that_says_which(body, text):
    with pytest.raises(ApiError, match=text):
        ask(body)


@pytest.fixture(scope="module")
def reasoner() -> Iterator[Served]:
    with serve("-m", "tiny-reasoner", "--parallel", "4", "--no-log") as served:
        yield served


def chat(served: Served, **fields) -> dict:
    body = {"model": "think", "messages": [{"role": "user", "content": QUESTION}], "temperature": 0, **fields}
    r = httpx.post(f"{served.url}/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("fields", [
    {"max_thinking": 24}, {"reasoning": {"max_tokens": 24}}, {"thinking": {"type": "enabled", "budget_tokens": 24}},
    {"reasoning_budget_tokens": 24}, {"thinking_budget_tokens": 24}, {"thinking_token_budget": 24},
])
def test_each_spelling_caps_the_real_thinking_and_returns_it_under_both_names(reasoner, fields):
    reply = chat(reasoner, **fields)
    message, think = reply["choices"][0]["message"], reply["think"]
    assert think["budget"]["max_thinking"] == 24
    cut = [e for e in think["events"] if e["type"] == "budget_forced"]
    assert cut and cut[0]["at_thinking_tokens"] == 24  # the trace (~120 tokens) was cut at the budget, gracefully
    assert message["reasoning"] and message["reasoning"] == message["reasoning_content"]
    assert "Considering the limited time" in message["reasoning"] and message["content"]


def test_exclude_thinks_but_returns_no_thinking_and_off_thinks_not_at_all(reasoner):
    full = chat(reasoner, tier="light")
    excluded = chat(reasoner, tier="light", reasoning={"exclude": True})
    assert full["choices"][0]["message"]["reasoning"] and excluded["choices"][0]["message"]["reasoning"] is None
    assert excluded["usage"]["completion_tokens_details"]["reasoning_tokens"] > 50  # it did think
    assert excluded["choices"][0]["message"]["content"] == full["choices"][0]["message"]["content"] == "58190"
    off = chat(reasoner, chat_template_kwargs={"enable_thinking": False})
    assert off["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0 and off["think"]["tier"] == "instant"


def test_a_streamed_reply_sends_thinking_as_reasoning_and_reasoning_content(reasoner):
    body = {"messages": [{"role": "user", "content": QUESTION}], "stream": True, "tier": "light", "temperature": 0}
    thinking, content = [], []
    with httpx.stream("POST", f"{reasoner.url}/chat/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            for choice in json.loads(line[6:])["choices"]:
                delta = choice["delta"]
                if "reasoning_content" in delta:
                    assert delta["reasoning"] == delta["reasoning_content"]
                    thinking.append(delta["reasoning"])
                content.append(delta.get("content") or "")
    assert "".join(thinking).startswith("d1 3+7+0=10") and "".join(content) == "58190"


def test_the_official_ollama_client_chats_with_thinking_on_off_and_by_level(reasoner):
    ollama = pytest.importorskip("ollama")
    client = ollama.Client(host=reasoner.base)
    messages = [{"role": "user", "content": QUESTION}]
    on = client.chat(model="think", messages=messages, think=True, options={"temperature": 0}, stream=False)
    assert on.message.thinking and on.message.thinking.startswith("d1 3+7+0=10") and on.message.content == "58190"
    assert on.done and on.done_reason == "stop" and on.eval_count and on.eval_count > 50
    off = client.chat(model="think", messages=messages, think=False, options={"temperature": 0}, stream=False)
    assert not off.message.thinking and off.message.content
    high = client.chat(model="tiny-reasoner", messages=messages, think="high", options={"temperature": 0},
                       stream=False)
    assert high.message.thinking and high.message.content == "58190"
    parts = list(client.chat(model="think", messages=messages, think=True, options={"temperature": 0}, stream=True))
    assert "".join(p.message.thinking or "" for p in parts).strip() == on.message.thinking
    assert "".join(p.message.content or "" for p in parts) == "58190" and parts[-1].done and not parts[0].done


def test_ollama_gets_a_thinking_budget_it_does_not_have_itself(reasoner):
    ollama = pytest.importorskip("ollama")
    client = ollama.Client(host=reasoner.base)
    r = httpx.post(f"{reasoner.base}/api/chat", timeout=120, json={
        "model": "think", "messages": [{"role": "user", "content": QUESTION}], "think": 20, "stream": False,
        "options": {"temperature": 0}})
    assert r.status_code == 200 and r.json()["think"]["budget"]["max_thinking"] == 20
    budgeted = client.chat(model="think", messages=[{"role": "user", "content": QUESTION}], think=True, stream=False,
                           options={"temperature": 0, "think_budget": 20})
    assert budgeted.message.thinking and "Considering the limited time" in budgeted.message.thinking
    clash = httpx.post(f"{reasoner.base}/api/chat", timeout=60, json={  # the client types `think` as no number
        "model": "think", "messages": [{"role": "user", "content": "hi"}], "think": 10, "options": {"think_budget": 20}})
    assert clash.status_code == 400 and "disagree" in clash.json()["error"]


def test_ollama_generate_list_show_and_version(reasoner):
    ollama = pytest.importorskip("ollama")
    client = ollama.Client(host=reasoner.base)
    # think: true lets the policy think (an easy sum this model knows may be answered at once: the probe)
    made = client.generate(model="think", prompt="What is 48213 + 9977?", think=True, options={"temperature": 0})
    assert made.response == "58190" and made.thinking and made.thinking.startswith("d1 3+7+0=10")
    streamed = list(client.generate(model="think", prompt="What is 12 + 7?", think=False, stream=True,
                                    options={"temperature": 0, "num_predict": 8}))
    assert streamed[-1].done and "".join(p.response or "" for p in streamed)
    listed = client.list()
    assert listed.models[0].model == "tiny-reasoner" and listed.models[0].size > 1_000_000
    shown = client.show("tiny-reasoner")
    assert "enable_thinking" in (shown.template or "") and "thinking" in (shown.capabilities or [])
    assert httpx.get(f"{reasoner.base}/api/version", timeout=10).json()["version"]
    with pytest.raises(ollama.ResponseError, match="does not exist"):
        client.chat(model="/etc/passwd", messages=[{"role": "user", "content": "hi"}])
