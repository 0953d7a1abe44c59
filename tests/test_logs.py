"""The run log: every front end writes it, `think logs stats` adds it up right, writers never collide."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from conftest import REPO

from thinkcli.output.logs import SCHEMA_VERSION, Query, RunLog, ledger, migrate, recent, spent_thinking_tokens

FAST = ["--max-thinking", "8", "--max-answer", "4"]


def log_file(home: Path) -> Path:
    return home / "data" / "logs.db"


def rows(home: Path) -> list[dict]:
    return recent(log_file(home), Query(limit=-1))


def tiny_config(home: Path, model: Path) -> None:
    """The tiny model as alias `tiny`, with a deep tier of Best-of-3 at 20 tokens (cheap votes)."""
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "models.yaml").write_text(
        f"default_model: tiny\nmodels:\n  tiny:\n    path: {model}\n    family: qwen3\n"
        "tiers:\n  deep:\n    samples: 3\n    min_thinking: 0\n    max_thinking: 20\n    max_answer: 4\n")


def test_every_front_end_logs_and_stats_equal_the_json_records(think, tiny, think_home, tmp_path):
    tiny_config(think_home, tiny("tame"))
    records: list[dict] = []
    for args in (["What is 2+2?"], ["hello"], ["--samples", "3", "Prove that there are infinitely many primes."],
                 ["--tier", "deep", "Why is the sky blue?"]):
        r = think("ask", "--json", *FAST, *args)
        assert r.returncode == 0, r.stderr
        records.append(json.loads(r.stdout))
    src = tmp_path / "in.txt"
    src.write_text("first question\nsecond question\nthird question\n")
    out = tmp_path / "out.jsonl"
    assert think("batch", str(src), "-o", str(out), *FAST, "--parallel", "2").returncode == 0
    records += [json.loads(line) for line in out.read_text().splitlines()]
    chat = think("chat", "--max-thinking", "4", input="hi there\nand again\n")
    assert chat.returncode == 0, chat.stderr

    logged = rows(think_home)
    assert [r["source"] for r in logged] == ["ask"] * 4 + ["batch"] * 3 + ["chat"] * 2
    assert [r["prompt"] for r in logged[4:7]] == ["first question", "second question", "third question"]
    assert sorted(r["key"] for r in logged[4:7]) == ["1", "2", "3"]  # the batch item ids
    assert logged[2]["samples"] == 3 and len(logged[2]["sample_runs"]) == 3
    assert logged[0]["thinking"] and logged[0]["answer"] == records[0]["answer"]  # thinking logged by default

    # The ledger of the ask + batch runs, computed here from their JSON records.
    expected: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"runs": 0, "thinking": 0, "fixed": 0})
    for record in records:
        cell = expected[(record["tier"], record["model"])]
        cell["runs"] += 1
        cell["thinking"] += spent_thinking_tokens(record)
        cell["fixed"] += 20 * 3  # the deep tier of this config: 3 samples x 20 tokens
    assert records[2]["samples"] and spent_thinking_tokens(records[2]) == sum(s["thinking_tokens"] for s in records[2]["samples"])
    stats = json.loads(think("logs", "stats", "--json", "--source", "ask").stdout)["rows"]
    stats += json.loads(think("logs", "stats", "--json", "--source", "batch").stdout)["rows"]
    got: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"runs": 0, "thinking": 0, "fixed": 0})
    for row in stats:
        cell = got[(row["tier"], row["model"])]
        cell["runs"] += row["runs"]
        cell["thinking"] += row["thinking_tokens"]
        cell["fixed"] += row["fixed_budget_tokens"]
        assert row["saved"] == round(1 - row["thinking_tokens"] / row["fixed_budget_tokens"], 4)
    assert got == expected

    whole = json.loads(think("logs", "stats", "--json").stdout)["total"]
    assert whole["runs"] == 9 and whole["failed"] == 0
    table = think("logs", "stats")
    assert table.returncode == 0 and "deep budget" in table.stdout and "all" in table.stdout


def test_logs_lists_filters_and_searches(think, tiny, think_home):
    tiny_config(think_home, tiny("tame"))
    for prompt in ("hello", "Name a colour.", "Name a fruit."):
        assert think("ask", *FAST, prompt).returncode == 0
    shown = think("logs", "-n", "2")
    assert shown.returncode == 0
    assert "Name a colour." in shown.stdout and "Name a fruit." in shown.stdout and "hello" not in shown.stdout
    found = json.loads(think("logs", "--json", "-q", "FRUIT", "-n", "0").stdout)
    assert [r["prompt"] for r in found] == ["Name a fruit."]
    by_tier = json.loads(think("logs", "--json", "--tier", "instant", "-n", "0").stdout)
    assert [r["prompt"] for r in by_tier] == ["hello"]
    assert json.loads(think("logs", "--json", "--model", "nope").stdout) == []
    assert think("logs", "-n", "-1").returncode == 2
    assert think("logs", "path").stdout.strip() == str(log_file(think_home))


def test_no_log_flag_environment_and_setting(think, tiny, think_home):
    tiny_config(think_home, tiny("tame"))
    assert think("ask", *FAST, "--no-log", "hello").returncode == 0
    assert think("ask", *FAST, "hello", env={"THINK_NO_LOG": "1"}).returncode == 0
    (think_home / "config" / "config.yaml").write_text("log: false\n")
    assert think("ask", *FAST, "hello").returncode == 0
    assert not log_file(think_home).exists()
    (think_home / "config" / "config.yaml").write_text("log: maybe\n")
    bad = think("ask", *FAST, "hello")
    assert bad.returncode == 1 and "log: must be true or false" in bad.stderr
    empty = think("logs")
    assert empty.returncode == 0 and "no runs logged yet" in empty.stderr


def test_failures_are_logged_and_a_log_that_cannot_be_written_costs_no_answer(think, tiny, think_home, tmp_path):
    tiny_config(think_home, tiny("tame"))
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "prompt": "fine"}\n{"id": "b", "prompt": "' + "word " * 3000 + '"}\n')
    r = think("batch", str(src), "-o", str(tmp_path / "out.jsonl"), *FAST)
    assert r.returncode == 1
    failed = [row for row in rows(think_home) if row["error"]]
    assert [row["key"] for row in failed] == ["b"] and failed[0]["prompt"].startswith("word word")

    log_file(think_home).unlink()
    log_file(think_home).mkdir()  # a directory where the file should be: SQLite cannot open it
    answered = think("ask", *FAST, "hello")
    assert answered.returncode == 0 and answered.stdout.strip()
    assert answered.stderr.count("warning: the run log") == 1 and "Traceback" not in answered.stderr


def test_chat_and_serve_requests_are_logged(tiny, think_home):
    tiny_config(think_home, tiny("tame"))
    proc = subprocess.Popen([sys.executable, "-m", "thinkcli", "serve", "--port", "0", "--parallel", "2"], cwd=REPO,
                            env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = next(part.strip() for part in line.split(" · ") if part.strip().startswith("http://"))
        body = {"model": "tiny", "messages": [{"role": "user", "content": "served question"}], "max_tokens": 12}
        assert httpx.post(f"{url}/chat/completions", json=body, timeout=60).status_code == 200
        body = {"model": "tiny", "prompt": "served completion", "max_tokens": 6}
        assert httpx.post(f"{url}/completions", json=body, timeout=60).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    served = [r for r in rows(think_home) if r["source"] == "serve"]
    assert [r["prompt"] for r in served] == ["served question", "served completion"]


def test_concurrent_writers_in_several_processes_lose_nothing(tmp_path):
    path = tmp_path / "logs.db"
    record = {"prompt": "p", "model": "m", "tier": "light", "usage": {"thinking_tokens": 3, "answer_tokens": 1},
              "budget": {"samples": 1}}
    script = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
              "from pathlib import Path\nfrom thinkcli.output.logs import RunLog\n"
              f"log = RunLog(Path({str(path)!r}))\n"
              f"for i in range(100): log.write({record!r}, 'batch', str(i), 10)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 400
    conn.close()
    [row] = ledger(path, Query())
    assert (row.runs, row.thinking_tokens, row.fixed_budget_tokens) == (400, 1200, 4000)


def test_the_schema_is_versioned_and_migrated(tmp_path):
    path = tmp_path / "logs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert migrate(conn) == SCHEMA_VERSION
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert migrate(conn) == SCHEMA_VERSION  # idempotent
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    from thinkcli.errors import ThinkError

    with pytest.raises(ThinkError, match="newer thinkcli"):
        RunLog(path)._connect()


def test_spent_thinking_counts_every_sample():
    assert spent_thinking_tokens({"usage": {"thinking_tokens": 7}, "samples": None}) == 7
    votes = {"usage": {"thinking_tokens": 7}, "samples": [{"thinking_tokens": 7}, {"thinking_tokens": 5}]}
    assert spent_thinking_tokens(votes) == 12


def test_a_log_of_an_older_schema_is_migrated_and_keeps_its_rows(tmp_path):
    from thinkcli.output.logs import MIGRATIONS

    path = tmp_path / "logs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0].split(";"):  # the file as the first release wrote it
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO runs (at, source, prompt, tier, model) VALUES ('2026-01-01', 'ask', 'old', 'light', 'm')")
    conn.close()
    RunLog(path).write({"prompt": "new", "tier": "light", "model": "m", "probe": {"kept": True}}, "ask")
    runs = recent(path, Query(limit=-1))
    assert [r["prompt"] for r in runs] == ["old", "new"] and runs[1]["probe"] == {"kept": True}
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3


def test_a_locked_log_never_stalls_a_run_and_its_rows_are_written_once_it_is_free(think, tiny, think_home, tmp_path):
    tiny_config(think_home, tiny("tame"))
    assert think("ask", *FAST, "first").returncode == 0  # creates the log
    holder = sqlite3.connect(log_file(think_home), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the file
    try:
        r = think("ask", *FAST, "while locked", timeout=25)  # it stalled 30 s before
        assert r.returncode == 0 and r.stdout.strip()
        assert "is locked by another program" in r.stderr and "1 run(s) not logged" in r.stderr
        log = RunLog(log_file(think_home))
        record = {"prompt": "kept", "model": "m", "tier": "light", "usage": {"thinking_tokens": 1}, "budget": {}}
        log.write(record, "serve", "a")
        log.write({**record, "prompt": "kept too"}, "serve", "b")  # queued behind the first, no second wait
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert log.flush(30) == 0  # written once the lock is gone: logging did not switch itself off
    log.write({**record, "prompt": "after"}, "serve", "c")
    assert [row["prompt"] for row in rows(think_home)][-3:] == ["kept", "kept too", "after"]


def test_a_damaged_log_is_one_line_naming_it(think, think_home):
    log_file(think_home).parent.mkdir(parents=True, exist_ok=True)
    log_file(think_home).write_bytes(b"this is not a database" * 100)
    r = think("logs")
    assert r.returncode == 1 and str(log_file(think_home)) in r.stderr and r.stderr.count("\n") == 1
    r = think("logs", "--tier", "huge")
    assert r.returncode == 2 and "unknown tier 'huge'" in r.stderr


def test_logs_filters_take_no_wildcards_and_any_count(think, tiny, think_home):
    tiny_config(think_home, tiny("tame"))
    assert think("ask", *FAST, "\x1b[31mred\x1b[0m prompt").returncode == 0
    r = think("logs", "--source", "%")
    assert r.returncode == 0 and "no run matches" in r.stderr
    r = think("logs", "-n", str(10**30))
    assert r.returncode == 0 and "\x1b[31m" not in r.stdout and "\\x1b[31mred" in r.stdout
