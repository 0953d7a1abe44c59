"""`think ask` end to end through the real CLI in a subprocess, on tiny real models."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from conftest import REPO, two_model_config

ANSI = "\x1b["


def test_pipe_stdout_holds_only_the_answer(think, tiny):
    r = think("ask", "-m", str(tiny("tame")), "--tier", "light", "--max-thinking", "15", "--max-answer", "6", "hi")
    assert r.returncode == 0, r.stderr
    assert ANSI not in r.stdout and ANSI not in r.stderr
    assert r.stdout.strip() and r.stdout.endswith("\n")
    assert "budget: thinking ended (cap) at 15 tokens" in r.stderr


def test_json_has_the_contract_keys(think, tiny):
    r = think("ask", "-m", str(tiny("tame")), "--max-thinking", "12", "--max-answer", "5", "--json", "what is 2+2?")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    for key in ("model", "tier", "budget", "thinking", "answer", "usage", "timings", "events"):
        assert key in data
    assert data["budget"]["max_thinking"] == 12
    assert data["usage"]["thinking_tokens"] == 12
    assert set(data["usage"]) >= {"prompt_tokens", "thinking_tokens", "answer_tokens"}
    assert set(data["timings"]) >= {"first_token_s", "tokens_per_second"}
    assert data["events"][0]["type"] == "budget_forced"


def test_stdin_comes_before_the_argument(think, tiny):
    r = think("ask", "-m", str(tiny("tame")), "--no-think", "--max-answer", "3", "--json", "summarise", input="piped text")
    assert json.loads(r.stdout)["prompt"] == "piped text\n\nsummarise"


def test_no_think_and_hide_thinking(think, tiny):
    r = think("ask", "-m", str(tiny("tame")), "--no-think", "--max-answer", "4", "--json", "x")
    data = json.loads(r.stdout)
    assert data["thinking"] == "" and data["usage"]["thinking_tokens"] == 0
    hidden = think("ask", "-m", str(tiny("tame")), "--max-thinking", "10", "--max-answer", "3", "--hide-thinking", "x")
    assert hidden.returncode == 0 and hidden.stderr == ""


def test_min_thinking_wait_event_in_json(think, tiny):
    r = think("ask", "-m", str(tiny("closer")), "--min-thinking", "10", "--max-thinking", "40", "--max-answer", "3", "--json", "x")
    data = json.loads(r.stdout)
    assert any(e["type"] == "extended" for e in data["events"])


def test_stats_flag_prints_a_stats_line(think, tiny):
    r = think("ask", "-m", str(tiny("tame")), "--max-thinking", "5", "--max-answer", "3", "-u", "--hide-thinking", "x")
    assert "thinking + 3 answer tokens" in r.stderr


def test_deep_tier_votes_with_samples_and_vote_in_json(think, tiny):
    r = think("ask", "-m", str(tiny("tame")), "--tier", "deep", "--samples", "3", "--max-thinking", "10",
              "--min-thinking", "0", "--max-answer", "4", "--json", "prove it")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["strategy"] == "vote" and len(data["samples"]) == 3
    assert {"winner", "counts"} <= set(data["vote"])


@pytest.mark.parametrize("args, message, code", [
    (["ask", ""], "empty prompt", 2),
    (["ask", "-m", "no-such-alias", "hi"], "unknown model 'no-such-alias'", 1),
    (["ask", "-m", "/nonexistent/model.gguf", "hi"], "model file not found", 1),
    (["ask", "--tier", "extreme", "hi"], "'extreme' is not one of 'auto', 'instant'", 2),
    (["ask", "--max-answer", "-1", "hi"], "--max-answer must be >= 1, got -1", 2),
    (["ask", "--max-answer", "0", "hi"], "--max-answer must be >= 1, got 0", 2),
    (["ask", "--max-thinking", "-3", "hi"], "--max-thinking must be >= 0", 2),
    (["ask", "--max-thinking", "lots", "hi"], "Invalid value for '--max-thinking'", 2),
    (["ask", "--no-such-flag", "hi"], "No such option", 2),
    (["ask", "--samples", "0", "hi"], "--samples must be between 1 and 64", 2),
    (["ask", "--strategy", "magic", "hi"], "'magic' is not one of 'single', 'vote'", 2),
    (["ask", "--gpu-layers", "some", "hi"], "--gpu-layers must be a number", 2),
])
def test_bad_input_gives_one_line_and_exit_code(think, args, message, code):
    r = think(*args)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_not_gguf_and_truncated_gguf(think, tiny, tmp_path):
    text_file = tmp_path / "notes.gguf"
    text_file.write_text("hello, not a model")
    r = think("ask", "-m", str(text_file), "hi")
    assert r.returncode == 1 and "not a GGUF model file" in r.stderr and "Traceback" not in r.stderr
    truncated = tmp_path / "half.gguf"
    truncated.write_bytes(tiny("tame").read_bytes()[:200_000])
    r = think("ask", "-m", str(truncated), "hi")
    assert r.returncode == 1 and "could not load half.gguf" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_broken_models_yaml(think, think_home):
    (think_home / "config").mkdir(parents=True)
    (think_home / "config" / "models.yaml").write_text("tiers:\n  light:\n    max_thinking: many\n")
    r = think("ask", "hi")
    assert r.returncode == 1
    assert "models.yaml: tiers.light.max_thinking: must be an integer" in r.stderr


def test_prompt_longer_than_the_context(think, tiny):
    r = think("ask", "-m", str(tiny("tame")), "x " * 3000)
    assert r.returncode == 1 and "the context holds" in r.stderr and "Traceback" not in r.stderr


def test_debug_shows_traceback(think, tiny):
    r = think("ask", "-m", "/nonexistent/model.gguf", "hi", env={"THINK_DEBUG": "1"})
    assert "Traceback" in r.stderr


def test_ctrl_c_exits_130_and_keeps_what_was_printed(tiny, tmp_path):
    model = tiny("tame", n_ctx=16384)
    env = {**os.environ, "THINK_N_CTX": "16384"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "thinkcli", "ask", "-m", str(model), "--max-thinking", "15000", "x"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO,
    )
    first = proc.stderr.read(64)  # thinking is streaming (15000 tokens take far longer)
    assert first
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert b"interrupted" in err and b"Traceback" not in err


def test_help_is_fast_and_lists_commands(think):
    r = think("--help")
    assert r.returncode == 0 and "ask" in r.stdout and "classify" in r.stdout


def test_a_tier_routed_to_a_second_model_uses_it(think, tiny, think_home):
    two_model_config(think_home, tiny("tame"), tiny("closer"))
    easy = json.loads(think("ask", "--max-thinking", "5", "--max-answer", "2", "--json", "hi").stdout)
    hard = think("ask", "--json", "Prove that there are infinitely many primes.")
    assert hard.returncode == 0, hard.stderr
    assert easy["model"] == "small" and json.loads(hard.stdout)["model"] == "big"


def test_every_sample_gets_a_whole_sequence_of_context(think, tiny):
    # The decoder's unified KV cache holds N sequences of the configured context (2048 here).
    r = think("ask", "-m", str(tiny("tame")), "--samples", "8", "--max-thinking", "1000", "--max-answer", "200",
              "--json", "x")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert len(data["samples"]) == 8 and data["budget"]["max_thinking"] == 1000
    too_many = think("ask", "-m", str(tiny("tame")), "--samples", "65", "x")
    assert too_many.returncode == 2 and "--samples must be between 1 and 64" in too_many.stderr


def test_adaptive_stop_cancels_a_sample_once_the_leader_cannot_be_overtaken(think, tiny):
    r = think("ask", "-m", str(tiny("tame")), "--tier", "deep", "--samples", "3", "--max-thinking", "30",
              "--min-thinking", "0", "--max-answer", "5", "--json", "prove it")
    data = json.loads(r.stdout)
    stopped = [s for s in data["samples"] if s["stopped_early"]]
    finished = [s for s in data["samples"] if not s["stopped_early"]]
    assert len(stopped) == 1 and len(finished) == 2
    assert finished[0]["answer"] == finished[1]["answer"] and data["vote"]["counts"] == {data["vote"]["winner"]: 2}


def test_bare_think_prints_help(think):
    r = think()
    assert r.returncode == 0 and "Commands:" in r.stdout and "error" not in r.stderr
    bogus = think("bogus")
    assert bogus.returncode == 2 and "No such command 'bogus'" in bogus.stderr


def test_thinking_that_would_fill_the_context_is_lowered_and_still_answers(think, tiny):
    r = think("ask", "-m", str(tiny("tame")), "--max-thinking", "1000000000", "--max-answer", "20", "--json", "hi")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    lowered = next(e for e in data["events"] if e["type"] == "budget_lowered")
    assert lowered["context"] == 2048 and lowered["max_thinking"][0] == 1000000000
    assert data["budget"]["max_thinking"] == lowered["max_thinking"][1] < 2048
    assert data["finish_reason"] != "context" and data["answer"].strip()
    assert data["usage"]["thinking_tokens"] == data["budget"]["max_thinking"]
    plain = think("ask", "-m", str(tiny("tame")), "--max-thinking", "1000000000", "--max-answer", "5", "hi")
    assert "budget lowered to fit the context of 2048 tokens" in plain.stderr


def test_a_prompt_beyond_the_context_says_how_to_raise_it(think, tiny):
    r = think("ask", "-m", str(tiny("tame")), "x" * 5000)
    assert r.returncode == 1 and "raise n_ctx (THINK_N_CTX or n_ctx in config.yaml)" in r.stderr
    huge = think("ask", "-m", str(tiny("tame")), input="y " * 1_000_000)  # refused before tokenizing
    assert huge.returncode == 1 and "cannot fit the context" in huge.stderr


def test_stdin_is_left_alone_with_no_stdin(tiny, tmp_path):
    # `while read p; do think ask "$p"; done < f`: each call must leave the rest of f to the loop.
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("first\nsecond\nthird\n")
    script = (f'while read p; do {sys.executable} -m thinkcli ask --no-stdin --json -m {tiny("tame")} '
              f'--no-think --max-answer 2 "$p"; done < {prompts}')
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert [json.loads(line)["prompt"] for line in r.stdout.splitlines()] == ["first", "second", "third"]
    # `sleep 30 | think classify hi`: a pipe that stays open; with --no-stdin nothing waits on it
    proc = subprocess.Popen([sys.executable, "-m", "thinkcli", "classify", "--no-stdin", "hi"], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.wait(timeout=60) == 0  # stdin is still open here: a read would never return
    assert "tier:   instant" in proc.stdout.read()
    proc.stdin.close()


def test_bytes_that_are_not_utf8_are_replaced_not_a_crash(tiny):
    model = str(tiny("tame"))
    argv = [sys.executable.encode(), b"-m", b"thinkcli", b"ask", b"--json", b"--no-think", b"--max-answer", b"2",
            b"-m", model.encode()]
    r = subprocess.run([*argv, b"caf\xe9 \xff?"], capture_output=True, cwd=REPO, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["prompt"] == "caf\ufffd \ufffd?"
    piped = subprocess.run([*argv, b"summarise"], input=b"bad \xc3\x28 bytes", capture_output=True, cwd=REPO, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["prompt"] == "bad \ufffd( bytes\n\nsummarise"


def test_no_color_on_a_terminal_keeps_header_stats_and_counter(tiny):
    import pexpect

    child = pexpect.spawn(sys.executable, ["-m", "thinkcli", "ask", "-m", str(tiny("tame")), "--max-thinking", "30",
                                           "--max-answer", "3", "hi"], cwd=str(REPO), encoding="utf-8", timeout=60,
                          env={**os.environ, "NO_COLOR": "1", "TERM": "xterm-256color"}, dimensions=(40, 200))
    child.expect(pexpect.EOF)
    output = child.before
    child.close()
    assert child.exitstatus == 0
    assert "instant · " in output or "light · " in output  # the header
    assert "thought for 30/30 tokens" in output and " tok/s" in output  # the counter and the stats line
    assert not re.search(r"\x1b\[[0-9;]*3\dm|\x1b\[[0-9;]*38;", output), "NO_COLOR: no colour codes"


def test_vote_strategy_without_samples_really_votes(think, tiny):
    r = think("ask", "-m", str(tiny("tame")), "--strategy", "vote", "--max-thinking", "5", "--max-answer", "3",
              "--json", "hi")
    data = json.loads(r.stdout)
    assert data["strategy"] == "vote" and len(data["samples"]) == data["budget"]["samples"] == 4


def test_classify_reads_2mb_from_stdin(think):
    r = think("classify", "--json", input="a() " * 500_000, timeout=30)  # quadratic before: minutes
    assert r.returncode == 0 and json.loads(r.stdout)["tier"] in ("instant", "light", "standard", "deep")


def test_version_and_help_that_is_not_cut_mid_sentence(think):
    from importlib.metadata import version

    assert think("--version").stdout.strip() == f"think {version('thinkcli')}"
    import tomllib
    from conftest import REPO

    import thinkcli

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert thinkcli.__version__ == project["version"]  # the fast path prints the package's own
    commands = think("--help").stdout.split("Commands:")[1]
    assert "..." not in commands and len(commands.strip().splitlines()) >= 8


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("classify", "--help"), ("classify", "What is 2+2?"),
                                  ("logs",), ("logs", "stats"), ("models",), ("ask", "--help")])
def test_light_commands_never_import_the_heavy_libraries(think, args):
    """Start in a blink: only a command that runs a model loads numpy, llama.cpp or a template engine
    (`python -X importtime` lists every module imported; counted, not timed)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "thinkcli", *args], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr[-500:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"numpy", "llama_cpp", "jinja2", "pydantic", "torch"}, args


def test_ctrl_c_during_a_vote_prints_no_stray_counter(tiny):
    import pexpect

    child = pexpect.spawn(sys.executable, ["-m", "thinkcli", "ask", "-m", str(tiny("tame")), "--tier", "deep",
                                           "--max-thinking", "1800", "x"], cwd=str(REPO), encoding="utf-8",
                          env={**os.environ, "TERM": "xterm"}, timeout=60, dimensions=(40, 120))
    child.expect("sample 4")  # the live sample table is up
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before)
    assert child.exitstatus == 130 and "interrupted" in plain
    assert "thought for" not in plain and "/1800 tokens" not in plain  # the single-answer counter of old


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "thinkcli", "eval", "builtin", "--dump"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"{")
    proc.stdout.close()  # `| head -1`: the rest of the ~45 KB meets a closed pipe
    assert proc.wait(timeout=60) == 0  # Click's own handler made it exit 1
    assert proc.stderr.read() == b""


def test_closed_standard_streams(tmp_path):
    def run(redirect: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(f"{sys.executable} -m thinkcli classify 'What is 2+2?' {redirect}", shell=True, cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    quiet = run("<&- 2>&-")  # no stdin, no stderr: the answer still comes
    assert quiet.returncode == 0 and quiet.stdout.strip()
    closed = run(">&-")
    assert closed.returncode == 1 and closed.stderr == "error: stdout is closed: there is nowhere to write the answer\n"


def test_seeds_llama_cpp_would_read_as_random_are_refused(think, tiny):
    for seed in ("-1", "4294967295"):
        r = think("ask", "-m", str(tiny("tame")), "--seed", seed, "hi")
        assert r.returncode == 2 and "--seed must be between 0 and 4294967294" in r.stderr


def test_default_threads_leave_room_for_other_processes():
    from thinkcli.engine.model import default_threads

    assert default_threads() == max(1, (os.cpu_count() or 2) // 2)
