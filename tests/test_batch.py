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
from conftest import REPO, two_model_config

from thinkcli.frontends.batch import OutputStore, count_items, read_items

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
    wait_for_lines(proc, out, 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    kept = records(out)
    assert 3 <= len(kept) < 200 and len({r["id"] for r in kept}) == len(kept)
    assert out.read_text().endswith("\n")


def test_lock_file_is_removed_when_the_batch_ends(think, tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a\n")
    out = tmp_path / "out.jsonl"
    assert think("batch", str(src), "-o", str(out), "-m", str(tiny("tame")), *FAST).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "think_home") == ["in.txt", "out.jsonl"]


def test_duplicate_ids_are_error_records_not_silent_skips(think, tiny, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "prompt": "one"}\n{"id": "b", "prompt": "two"}\n{"id": "a", "prompt": "three"}\n')
    out = tmp_path / "out.jsonl"
    r = think("batch", str(src), "-o", str(out), "-m", str(tiny("tame")), *FAST)
    assert r.returncode == 1
    recs = records(out)
    dup = [rec for rec in recs if rec["error"]]
    assert len(dup) == 1 and dup[0]["line"] == 3 and "duplicate id 'a' (first on line 1)" in dup[0]["error"]
    assert dup[0]["prompt"] == "three" and "skipped 0" in r.stderr


def test_failed_items_are_retried_by_a_rerun_and_every_error_record_has_every_key(think, tiny, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "ok", "prompt": "fine"}\n{"id": "long", "prompt": "' + "word " * 3000 + '"}\n')
    out = tmp_path / "out.jsonl"
    model = str(tiny("tame", n_ctx=32768))  # trained for 32k; the default n_ctx of 4096 is what fails
    first = think("batch", str(src), "-o", str(out), "-m", model, *FAST, env={"THINK_N_CTX": "4096"})
    assert first.returncode == 1
    failed = next(rec for rec in records(out) if rec["id"] == "long")
    assert "raise n_ctx" in failed["error"] and failed["line"] == 2
    from thinkcli.output.records import RECORD_KEYS

    assert set(RECORD_KEYS) - {"thinking"} <= set(failed) and failed["answer"] is None and failed["usage"] is None
    ok = next(rec for rec in records(out) if rec["id"] == "ok")
    assert set(RECORD_KEYS) - {"thinking"} == set(ok)  # one schema, success or failure
    second = think("batch", str(src), "-o", str(out), "-m", model, *FAST, env={"THINK_N_CTX": "32768"})
    assert "retrying 1 item(s) that failed in an earlier run" in second.stderr
    assert second.returncode == 0, second.stderr
    recs = records(out)
    assert sorted(rec["id"] for rec in recs) == ["long", "ok"] and all(rec["error"] is None for rec in recs)


@pytest.mark.parametrize("suffix, body", [
    (".csv", "prompt,id\nhello,x1\n"),
    (".jsonl", '{"prompt": "hello", "id": "x1"}\n'),
    (".txt", "hello\n"),
])
def test_a_utf8_byte_order_mark_is_ignored(think, tiny, tmp_path, suffix, body):
    src = tmp_path / f"in{suffix}"
    src.write_bytes(b"\xef\xbb\xbf" + body.encode())
    out = tmp_path / "out.jsonl"
    r = think("batch", str(src), "-o", str(out), "-m", str(tiny("tame")), *FAST)
    assert r.returncode == 0, r.stderr
    assert [rec["prompt"] for rec in records(out)] == ["hello"]


def test_output_and_summary_paths_are_checked_before_any_work(think, tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a\n")
    model = ["-m", str(tiny("tame")), *FAST]
    r = think("batch", str(src), "-o", str(tmp_path), *model)
    assert r.returncode == 2 and "is a directory" in r.stderr
    r = think("batch", str(src), "-o", str(tmp_path / "nope" / "out.jsonl"), *model)
    assert r.returncode == 2 and "does not exist" in r.stderr and not (tmp_path / "nope").exists()
    r = think("batch", str(src), "-o", str(tmp_path / "out.jsonl"), "--summary", str(tmp_path / "nope" / "s.json"), *model)
    assert r.returncode == 2 and "--summary" in r.stderr and not (tmp_path / "out.jsonl").exists()
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "ro"
        locked.mkdir()
        locked.chmod(0o500)
        r = think("batch", str(src), "-o", str(locked / "out.jsonl"), *model)
        assert r.returncode == 2 and "permission denied" in r.stderr


def test_a_deep_tier_routed_to_a_second_model_runs_there(think, tiny, think_home, tmp_path):
    two_model_config(think_home, tiny("tame"), tiny("closer"),
                     "  light:\n    max_thinking: 8\n    max_answer: 4\n  instant:\n    max_answer: 4\n")
    src = tmp_path / "in.txt"
    src.write_text("hi\nProve that there are infinitely many primes.\nhello\nProve that sqrt 2 is irrational.\n")
    out = tmp_path / "out.jsonl"
    r = think("batch", str(src), "-o", str(out), "--parallel", "4")
    assert r.returncode == 0, r.stderr
    got = {rec["id"]: rec for rec in records(out)}
    assert {got[i]["model"] for i in ("2", "4")} == {"big"} and {got[i]["model"] for i in ("1", "3")} == {"small"}
    assert all(len(got[i]["samples"]) == 2 for i in ("2", "4"))


def test_deep_samples_share_decode_steps_with_other_items(tiny, tmp_path, think_home):
    from thinkcli.frontends.batch import OutputStore, most_samples, run_batch
    from thinkcli.policy.plan import Overrides
    from thinkcli.scheduler.runtime import Runtime

    (think_home / "config").mkdir(parents=True)
    (think_home / "config" / "models.yaml").write_text(
        f"models:\n  tiny:\n    path: {tiny('tame')}\n    family: qwen3\ndefault_model: tiny\n"
        "tiers:\n  deep:\n    samples: 4\n    min_thinking: 0\n    max_thinking: 40\n    max_answer: 4\n"
        "  light:\n    max_thinking: 30\n    max_answer: 4\n  instant:\n    max_answer: 30\n"
    )
    prompts = ["hi", "Prove that there are infinitely many primes.", "hello", "What is 2+2?",
               "Prove that sqrt 2 is irrational.", "thanks", "Why is the sky blue?", "good morning"]
    items = [__import__("thinkcli.frontends.batch", fromlist=["Item"]).Item(str(i), i, p) for i, p in enumerate(prompts, 1)]
    runtime = Runtime.create()
    with OutputStore(tmp_path / "out.jsonl") as store:
        events = list(run_batch(runtime, items, store, Overrides(probe=False), parallel=8))
    recs = records(tmp_path / "out.jsonl")
    assert len(recs) == 8 and {r["tier"] for r in recs} >= {"instant", "deep"}
    assert most_samples(runtime, Overrides()) == 4
    decoder = next(iter(runtime.engine._decoders.values()))
    # Steps in which a Best-of-N group decoded together with other prompts' sequences:
    assert decoder.stats.shared_group_steps >= 20, decoder.stats
    assert events[-1].summary.done == 8


def test_wide_parallel_never_overflows_llama_decode(think, tiny, tmp_path):
    # 16 slots: a step carries up to 64 tokens a slot (1024 > the 512 of a default n_batch), which
    # once tripped GGML_ASSERT(n_tokens_all <= n_batch) and aborted the process.
    src = tmp_path / "in.txt"
    src.write_text("\n".join(f"question {i} " + "word " * (i % 7) * 9 for i in range(48)) + "\n")
    out = tmp_path / "out.jsonl"
    r = think("batch", str(src), "-o", str(out), "-m", str(tiny("tame")), *FAST, "--parallel", "16")
    assert r.returncode == 0, r.stderr
    assert len(records(out)) == 48


# -- Hardening 2 ----------------------------------------------------------------------------------
def test_a_lone_surrogate_is_that_item_only_and_the_batch_goes_on(think, tiny, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "prompt": "hi"}\n{"id": "b", "prompt": "bad \\ud800 text"}\n{"id": "c", "prompt": "ok"}\n')
    out = tmp_path / "out.jsonl"
    r = think("batch", str(src), "-o", str(out), "-m", str(tiny("tame")), *FAST)
    assert r.returncode == 0, r.stderr
    got = {rec["id"]: rec for rec in records(out)}
    assert set(got) == {"a", "b", "c"} and all(rec["error"] is None for rec in got.values())
    assert got["b"]["prompt"] == "bad \ufffd text"  # replaced where it came in, so it can be stored


def test_a_huge_csv_cell_is_read_and_a_broken_row_is_its_own_error(think, tiny, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('id,prompt\nbig,"' + "word " * 40_000 + '"\nsmall,hello\n')
    out = tmp_path / "out.jsonl"
    r = think("batch", str(src), "-o", str(out), "-m", str(tiny("tame")), *FAST)
    got = {rec["id"]: rec for rec in records(out)}
    assert set(got) == {"big", "small"}, r.stderr
    assert "context" in got["big"]["error"] and got["small"]["error"] is None  # too long for the model: its own error
    assert r.returncode == 1 and "internal error" not in r.stderr


def test_unused_csv_columns_are_named_once(think, tiny, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,prompt,notes,source\na,hello,x,y\nb,hi,z,w\n")
    r = think("batch", str(src), "-o", str(tmp_path / "out.jsonl"), "-m", str(tiny("tame")), *FAST)
    assert r.returncode == 0 and r.stderr.count("warning: the CSV's columns notes, source are not used") == 1


def test_a_csv_row_the_reader_refuses_is_an_error_record_and_the_rest_is_read(monkeypatch):
    import csv
    import io

    import thinkcli.frontends.batch

    previous = csv.field_size_limit(10)
    monkeypatch.setattr(thinkcli.frontends.batch, "CSV_FIELD_LIMIT", 10)
    try:
        items = list(read_items(io.StringIO("prompt\n" + "x" * 20 + "\nfine\n"), "csv"))
    finally:
        csv.field_size_limit(previous)
    assert "malformed CSV (field larger than field limit" in (items[0].error or "")
    assert items[-1].prompt == "fine" and items[-1].error is None


def test_a_record_without_its_final_newline_is_kept(think, tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("one\ntwo\n")
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": "1", "answer": "kept", "error": None}))  # whole, no final newline
    r = think("batch", str(src), "-o", str(out), "-m", str(tiny("tame")), *FAST)
    assert r.returncode == 0, r.stderr
    assert "repaired" not in r.stderr
    recs = records(out)
    assert [rec["id"] for rec in recs] == ["1", "2"] and recs[0]["answer"] == "kept"


def test_an_output_that_is_not_a_batch_jsonl_is_refused_untouched(think, tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("one\n")
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n\nthe last line matters")
    before = notes.read_bytes()
    r = think("batch", str(src), "-o", str(notes), "-m", str(tiny("tame")), *FAST)
    assert r.returncode == 2 and "not a think batch output" in r.stderr and r.stderr.count("\n") == 1
    assert notes.read_bytes() == before


def test_the_same_file_in_two_roles_is_refused(think, tiny, tmp_path):
    src = tmp_path / "same.txt"
    src.write_text("one\n")
    before = src.read_bytes()
    r = think("batch", str(src), "-o", str(src), "-m", str(tiny("tame")), *FAST)
    assert r.returncode == 2 and "INPUT and --output are the same file" in r.stderr
    out = tmp_path / "out.jsonl"
    link = tmp_path / "link.jsonl"
    out.write_text("")
    link.symlink_to(out)
    r = think("batch", str(src), "-o", str(out), "--summary", str(link), "-m", str(tiny("tame")), *FAST)
    assert r.returncode == 2 and "--output and --summary are the same file" in r.stderr
    assert src.read_bytes() == before


def test_workers_write_every_item_exactly_once_and_the_same_as_one_process(think, tiny, tmp_path, think_home):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(f"What is {i} + {2 * i}?" for i in range(1, 13)) + "\n\nProve it.\n")
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    args = ["-m", "tiny-reasoner", "--temperature", "0", "--parallel", "2"]
    r = think("batch", str(src), "-o", str(one), *args)
    assert r.returncode == 0, r.stderr
    two.write_text(one.read_text().splitlines(keepends=True)[0])  # one item already done: skipped, not redone
    r = think("batch", str(src), "-o", str(two), *args, "--workers", "3")
    assert r.returncode == 0, r.stderr
    assert "done 12, failed 0, skipped 1" in r.stderr
    by_id = {rec["id"]: rec for rec in records(one)}
    got = records(two)
    assert sorted(rec["id"] for rec in got) == sorted(by_id)  # every id exactly once
    assert all(rec["answer"] == by_id[rec["id"]]["answer"] for rec in got)  # greedy: the same answers
    import sqlite3

    rows = sqlite3.connect(think_home / "data" / "logs.db").execute("SELECT count(*) FROM runs").fetchone()[0]
    assert rows == 13 + 12  # the workers logged their runs too
    failed = think("batch", str(src), "-o", str(tmp_path / "x.jsonl"), *args, "--workers", "0")
    assert failed.returncode == 2 and "--workers must be between 1 and 32" in failed.stderr


def test_ctrl_c_stops_the_workers_and_keeps_finished_items(tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(f"q{i}" for i in range(200)) + "\n")
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "thinkcli", "batch", str(src), "-o", str(out), "-m", str(tiny("tame")),
         "--max-thinking", "400", "--max-answer", "20", "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env=os.environ.copy(), start_new_session=True,
    )
    wait_for_lines(proc, out, 3)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group gets it
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    kept = records(out)
    assert 3 <= len(kept) < 200 and len({r["id"] for r in kept}) == len(kept)
    leftover = subprocess.run(["pgrep", "-f", f"think-batch|{out}"], capture_output=True, text=True)
    assert str(proc.pid) not in leftover.stdout
