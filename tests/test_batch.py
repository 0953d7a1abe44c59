"""`think batch` through the real CLI: formats, errors, resume, torn lines, the lock, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from thinkcli.batch import OutputStore, count_items, read_items

FAST = ["--max-thinking", "8", "--max-answer", "4"]


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_txt_input_one_record_per_line_with_errors(think, tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("hello\nWhat is 2+2?\n\nProve that sqrt 2 is irrational.\n")
    out = tmp_path / "out.jsonl"
    summary = tmp_path / "summary.json"
    r = think("batch", str(src), "-o", str(out), "-m", str(tiny("tame")), *FAST, "--summary", str(summary))
    assert r.returncode == 0, r.stderr
    got = {rec["id"]: rec for rec in records(out)}
    assert set(got) == {"1", "2", "4"}  # a blank line is skipped (as in .jsonl); ids stay line numbers
    assert got["4"]["tier"] == "deep" and got["4"]["error"] is None and len(got["4"]["samples"]) == 4
    for rec in (got["1"], got["2"]):
        assert rec["error"] is None and {"prompt", "tier", "answer", "usage", "timings"} <= set(rec)
        assert "thinking" not in rec
    data = json.loads(summary.read_text())
    assert data["done"] == 3 and data["failed"] == 0 and "deep_fixed_budget_tokens" in data
    assert "thinking tokens" in r.stderr


def test_jsonl_with_ids_field_and_malformed_lines(think, tiny, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "q": "hi"}\nnot json\n{"q": "x"}\n{"id": "d"}\n[1]\n')
    out = tmp_path / "out.jsonl"
    r = think("batch", str(src), "-o", str(out), "--field", "q", "-m", str(tiny("tame")), *FAST, "--keep-thinking")
    got = {rec["id"]: rec for rec in records(out)}
    assert set(got) == {"a", "2", "3", "d", "5"}
    assert got["a"]["error"] is None and "thinking" in got["a"]
    assert "malformed JSON" in got["2"]["error"] and "line 2" in got["2"]["error"]
    assert "no string field 'q'" in got["d"]["error"]
    assert r.returncode == 1


def test_csv_and_stdin(think, tiny, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('id,text\nx1,"hello, world"\nx2,what now\n')
    out = tmp_path / "out.jsonl"
    r = think("batch", str(src), "-o", str(out), "--field", "text", "-m", str(tiny("tame")), *FAST)
    assert r.returncode == 0, r.stderr
    assert {rec["id"] for rec in records(out)} == {"x1", "x2"}
    assert records(out)[0]["prompt"] == "hello, world"
    out2 = tmp_path / "out2.jsonl"
    r = think("batch", "-", "-o", str(out2), "-m", str(tiny("tame")), *FAST, input="one\ntwo\n")
    assert r.returncode == 0 and {rec["id"] for rec in records(out2)} == {"1", "2"}


def test_rerun_skips_done_ids_and_repairs_a_torn_line(think, tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(f"prompt {i}" for i in range(6)) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": "1", "answer": "kept", "error": None}) + "\n" + '{"id": "2", "ans')
    r = think("batch", str(src), "-o", str(out), "-m", str(tiny("tame")), *FAST, "--parallel", "3")
    assert r.returncode == 0, r.stderr
    assert "repaired" in r.stderr
    recs = records(out)
    ids = [rec["id"] for rec in recs]
    assert sorted(ids) == sorted(str(i) for i in range(1, 7)) and len(ids) == len(set(ids))
    assert recs[0]["answer"] == "kept"
    again = think("batch", str(src), "-o", str(out), "-m", str(tiny("tame")), *FAST)
    assert "skipped 6" in again.stderr and len(records(out)) == 6


def test_lock_stops_a_second_writer(tmp_path):
    out = tmp_path / "out.jsonl"
    with OutputStore(out):
        from thinkcli.errors import ThinkError

        with pytest.raises(ThinkError, match="being written by another"), OutputStore(out):
            pass


def test_bad_batch_arguments(think, tmp_path):
    r = think("batch", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "o.jsonl"))
    assert r.returncode == 1 and "input not found" in r.stderr
    odd = tmp_path / "in.xml"
    odd.write_text("x")
    r = think("batch", str(odd), "-o", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "cannot tell the format" in r.stderr
    r = think("batch", str(odd), "-o", str(tmp_path / "o.jsonl"), "--parallel", "0")
    assert r.returncode == 2 and "--parallel" in r.stderr


def test_reader_and_counts(tmp_path):
    import io

    items = list(read_items(io.StringIO("a\n\nb\n"), "txt"))
    assert [(i.id, i.error) for i in items] == [("1", None), ("3", None)]  # blank lines skipped, as in .jsonl
    assert [i.id for i in read_items(io.StringIO('{"prompt": "a"}\n\n{"prompt": "b"}\n'), "jsonl")] == ["1", "3"]
    src = tmp_path / "x.csv"
    src.write_text("prompt\na\nb\n")
    assert count_items(str(src), "csv") == 2


def wait_for_lines(proc: subprocess.Popen, path: Path, count: int, limit: float = 120) -> None:
    """Block until `path` holds `count` complete lines or the process ends (a condition, not a clock)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.005)


def test_sigkill_after_the_nth_record_then_resume_loses_nothing_and_repeats_nothing(tiny, tmp_path):
    n = 40
    src = tmp_path / "in.txt"
    src.write_text("\n".join(f"question number {i}" for i in range(n)) + "\n")
    out = tmp_path / "out.jsonl"
    model = tiny("tame")
    args = [sys.executable, "-m", "thinkcli", "batch", str(src), "-o", str(out), "-m", str(model),
            "--max-thinking", "400", "--max-answer", "20", "--parallel", "2"]
    kills = 0
    for target in (3, 11, 23):  # SIGKILL once the N-th record is on disk, whatever the machine's speed
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=os.environ.copy())
        wait_for_lines(proc, out, target)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    final = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert final.returncode == 0, final.stderr
    assert kills >= 1, "the test must actually kill the batch at least once"
    lines = out.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line valid JSON
    ids = [rec["id"] for rec in parsed]
    assert sorted(ids, key=int) == [str(i) for i in range(1, n + 1)]  # every id exactly once


def test_ctrl_c_exits_130_and_keeps_finished_items(tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(f"q{i}" for i in range(200)) + "\n")
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "thinkcli", "batch", str(src), "-o", str(out), "-m", str(tiny("tame")),
         "--max-thinking", "400", "--max-answer", "20"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env=os.environ.copy(),
    )
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    kept = records(out)
    assert 3 <= len(kept) < 200 and len({r["id"] for r in kept}) == len(kept)
    assert out.read_text().endswith("\n")
