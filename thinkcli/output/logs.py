"""The run log: every finished prompt (ask, chat, batch, serve, eval) as one row in SQLite.

Like `llm`'s logs.db: it answers "what did my runs cost, and what did thinking buy". One row per
task, written by the scheduler when the task's Outcome (or failure) is known, so no front end can
forget it. WAL mode and a busy timeout let a batch, a chat and a server write at once; the schema
version lives in `PRAGMA user_version` and `MIGRATIONS` brings any older file up to date. A log
that cannot be written never fails a run: the problem is reported once through `logging`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..text import Json

log = logging.getLogger("thinkcli")

# Each entry brings the schema from version i to i+1. Never edit one that has shipped: append.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        source TEXT NOT NULL,
        key TEXT,
        model TEXT,
        family TEXT,
        tier TEXT,
        score REAL,
        reasons TEXT,
        strategy TEXT,
        samples INTEGER,
        min_thinking INTEGER,
        max_thinking INTEGER,
        max_answer INTEGER,
        deep_budget INTEGER,
        prompt_tokens INTEGER,
        cached_tokens INTEGER,
        thinking_tokens INTEGER,
        answer_tokens INTEGER,
        forced_tokens INTEGER,
        spent_thinking_tokens INTEGER,
        load_s REAL,
        first_token_s REAL,
        tokens_per_second REAL,
        total_s REAL,
        finish_reason TEXT,
        confidence REAL,
        events TEXT,
        vote TEXT,
        sample_runs TEXT,
        prompt TEXT,
        answer TEXT,
        thinking TEXT,
        error TEXT
    );
    CREATE INDEX runs_at ON runs (at);
    CREATE INDEX runs_tier_model ON runs (tier, model);
    """,
    # 2: the escalation probe (what it measured, kept or escalated)
    """
    ALTER TABLE runs ADD COLUMN probe TEXT;
    """,
    # 3: the text token by token (output/trace.py), for `think logs show` and the web page
    """
    ALTER TABLE runs ADD COLUMN trace TEXT;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# The columns `think logs --json` returns, in order (the JSON columns decoded).
JSON_COLUMNS = ("reasons", "events", "vote", "sample_runs", "probe", "trace")


def spent_thinking_tokens(record: Json) -> int:
    """Thinking tokens a run really cost: every Best-of-N sample's, not just the winner's."""
    samples = record.get("samples")
    if samples:
        return sum(int(s.get("thinking_tokens") or 0) for s in samples)
    usage = record.get("usage") or {}
    return int(usage.get("thinking_tokens") or 0)


BUSY_S = 0.2  # how long a write waits for a lock on the calling (maybe decoding) thread
PENDING_LIMIT = 10_000  # rows kept in memory while the file is locked
EXIT_WAIT_S = 3.0  # at exit, how long rows still waiting for a lock are given


class RunLog:
    """One SQLite file; a connection per thread (the server decodes on several).

    A write waits BUSY_S at most for a lock: a file locked by another program (an open `sqlite3`
    shell, a backup) hands its rows to a retry thread, which writes them in order once the lock is
    gone; the caller never stalls again meanwhile, and logging never switches itself off for a lock.
    Rows still waiting when the process ends get EXIT_WAIT_S, then one warning line."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self._broken = False
        self._pending: list[tuple[object, ...]] = []
        self._lock = threading.Lock()
        self._retrying: threading.Thread | None = None
        self._warned = False
        self._exit_hook = False

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_S, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_S * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            migrate(conn)
            self._local.conn = conn
        return conn

    def write(self, record: Json, source: str, key: str | None = None, deep_budget: int = 0) -> None:
        """Add one run. Never raises: a full disk or a locked file must not cost the answer."""
        if self._broken:
            return
        from ..errors import ThinkError

        row = row_of(record, source, key, deep_budget)
        with self._lock:
            if self._pending:  # the file was locked lately: keep the order, do not wait again
                self._queue(row)
                return
        try:
            self._connect().execute(INSERT, row)
        except sqlite3.OperationalError as exc:
            if not _locked(exc):
                self._fail(exc)
                return
            self._drop_connection()
            with self._lock:
                self._queue(row)
        except (sqlite3.Error, OSError, ThinkError) as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self._broken = True
        log.warning("the run log %s cannot be written (%s); runs are not logged", self.path, exc)

    def _queue(self, row: tuple[object, ...]) -> None:
        """(With the lock held.) Keep a row for the retry thread, which is started if it is not running."""
        if len(self._pending) >= PENDING_LIMIT:
            del self._pending[0]
        self._pending.append(row)
        if not self._warned:
            self._warned = True
            log.warning("the run log %s is locked by another program; runs are kept and written when it is free",
                        self.path)
        if self._retrying is None or not self._retrying.is_alive():
            self._retrying = threading.Thread(target=self._retry, daemon=True, name="run-log")
            self._retrying.start()
        if not self._exit_hook:
            import atexit

            self._exit_hook = True
            atexit.register(self._at_exit)

    def _retry(self) -> None:
        import time

        while True:
            with self._lock:
                rows = list(self._pending)
            if not rows:
                return
            try:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(INSERT, rows)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._drop_connection()
                if not _locked(exc):
                    with self._lock:
                        self._pending.clear()
                    self._fail(exc)
                    return
                time.sleep(0.25)
                continue
            with self._lock:
                del self._pending[: len(rows)]

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` for rows kept during a lock to be written; how many are still waiting."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                left = len(self._pending)
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.02)

    def _at_exit(self) -> None:
        left = self.flush(EXIT_WAIT_S)
        if left:
            log.warning("the run log %s stayed locked: %d run(s) not logged", self.path, left)

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            self._local.conn = None

    def close(self) -> None:
        self._drop_connection()


def _locked(exc: sqlite3.Error) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file to SCHEMA_VERSION; refuse a file written by a newer thinkcli."""
    from ..errors import ThinkError

    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise ThinkError(f"the run log was written by a newer thinkcli (schema {version} > {SCHEMA_VERSION})")
    for number in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-read under the write lock: another process may have migrated meanwhile
            if conn.execute("PRAGMA user_version").fetchone()[0] != number:
                conn.execute("ROLLBACK")
                continue
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


COLUMNS = (
    "at", "source", "key", "model", "family", "tier", "score", "reasons", "strategy", "samples", "min_thinking",
    "max_thinking", "max_answer", "deep_budget", "prompt_tokens", "cached_tokens", "thinking_tokens",
    "answer_tokens", "forced_tokens", "spent_thinking_tokens", "load_s", "first_token_s", "tokens_per_second",
    "total_s", "finish_reason", "confidence", "events", "vote", "sample_runs", "prompt", "answer", "thinking",
    "error", "probe", "trace",
)
INSERT = f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def _json(value: object) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def row_of(record: Json, source: str, key: str | None, deep_budget: int) -> tuple[object, ...]:
    """A record (records.outcome_record or error_record) as the values of one row."""
    budget = record.get("budget") or {}
    usage = record.get("usage") or {}
    timings = record.get("timings") or {}
    failed = bool(record.get("error"))
    values: Json = {
        "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "source": source,
        "key": key,
        "model": record.get("model"),
        "family": record.get("family"),
        "tier": record.get("tier"),
        "score": record.get("score"),
        "reasons": _json(record.get("reasons")),
        "strategy": record.get("strategy"),
        "samples": budget.get("samples"),
        "min_thinking": budget.get("min_thinking"),
        "max_thinking": budget.get("max_thinking"),
        "max_answer": budget.get("max_answer"),
        "deep_budget": deep_budget,
        "prompt_tokens": usage.get("prompt_tokens"),
        "cached_tokens": usage.get("cached_prompt_tokens"),
        "thinking_tokens": usage.get("thinking_tokens"),
        "answer_tokens": usage.get("answer_tokens"),
        "forced_tokens": usage.get("forced_tokens"),
        "spent_thinking_tokens": None if failed else spent_thinking_tokens(record),
        "load_s": timings.get("load_s"),
        "first_token_s": timings.get("first_token_s"),
        "tokens_per_second": timings.get("tokens_per_second"),
        "total_s": timings.get("total_s"),
        "finish_reason": record.get("finish_reason"),
        "confidence": record.get("confidence"),
        "events": _json(record.get("events")),
        "vote": _json(record.get("vote")),
        "sample_runs": _json(record.get("samples")),
        "prompt": record.get("prompt"),
        "answer": record.get("answer"),
        "thinking": record.get("thinking"),
        "error": record.get("error"),
        "probe": _json(record.get("probe")),
        "trace": _json(record.get("trace")),
    }
    return tuple(values[name] for name in COLUMNS)


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    limit: int = 10
    tier: str | None = None
    model: str | None = None
    text: str | None = None  # a substring of the prompt or the answer
    source: str | None = None


def open_for_reading(path: Path) -> sqlite3.Connection | None:
    """The log opened read-mostly (migrated if old); None when nothing was logged yet."""
    if not path.exists():
        return None
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=5000")
    migrate(conn)
    return conn


def _query(path: Path, sql: str, params: list[object]) -> list[sqlite3.Row]:
    """Rows of one read; a file that is not a run log (or is damaged, or locked) is one line naming it."""
    from ..errors import ThinkError

    try:
        conn = open_for_reading(path)
        if conn is None:
            return []
        with conn:
            rows = conn.execute(sql, params).fetchall()
        conn.close()
    except sqlite3.DatabaseError as exc:
        raise ThinkError(f"the run log {path} cannot be read ({exc}); move it away to start a new one") from None
    return rows


def _where(query: Query) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if query.tier:
        clauses.append("tier = ?")
        params.append(query.tier)
    if query.model:
        clauses.append("model = ?")
        params.append(query.model)
    if query.source:
        clauses.append("(source = ? OR substr(source, 1, ?) = ?)")  # "eval" also matches "eval auto" (no LIKE wildcards)
        params += [query.source, len(query.source) + 1, query.source + " "]
    if query.text:
        clauses.append("(instr(lower(prompt), lower(?)) > 0 OR instr(lower(answer), lower(?)) > 0)")
        params += [query.text, query.text]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def recent(path: Path, query: Query) -> list[Json]:
    """The last `limit` runs matching the query, oldest first (like a terminal scrollback)."""
    where, params = _where(query)
    limit = query.limit if 0 <= query.limit < 2**62 else -1  # SQLite's LIMIT is a 64-bit integer; -1: all
    rows = _query(path, f"SELECT id, * FROM runs{where} ORDER BY id DESC LIMIT ?", [*params, limit])
    return [_run(row) for row in reversed(rows)]


def find(path: Path, run_id: int) -> Json | None:
    """One run by its id (as `think logs` numbers them)."""
    rows = _query(path, "SELECT id, * FROM runs WHERE id = ?", [run_id])
    return _run(rows[0]) if rows else None


def _run(row: sqlite3.Row) -> Json:
    run = {name: row[name] for name in ("id", *COLUMNS)}
    for name in JSON_COLUMNS:
        try:
            run[name] = json.loads(run[name]) if run[name] is not None else None
        except ValueError:  # a column edited by hand: shown as missing, not a traceback
            run[name] = None
    return run


@dataclass(frozen=True)
class LedgerRow:
    """Pay-as-you-go: what one tier on one model cost, next to the deep tier's fixed budget."""

    tier: str
    model: str
    runs: int
    failed: int
    thinking_tokens: int  # spent, every sample counted
    answer_tokens: int
    fixed_budget_tokens: int  # the same runs, each at the deep tier's fixed budget
    tokens_per_second: float | None  # mean over runs that measured it
    first_token_s: float | None  # mean time to first token
    probed: int = 0  # runs that began with the escalation probe
    probe_kept: int = 0  # of those, answered without thinking

    @property
    def saved(self) -> float | None:
        """The share of the deep tier's fixed budget these runs did not spend."""
        if not self.fixed_budget_tokens:
            return None
        return 1.0 - self.thinking_tokens / self.fixed_budget_tokens

    def as_dict(self) -> Json:
        return {
            "tier": self.tier, "model": self.model, "runs": self.runs, "failed": self.failed,
            "thinking_tokens": self.thinking_tokens, "answer_tokens": self.answer_tokens,
            "fixed_budget_tokens": self.fixed_budget_tokens,
            "saved": None if self.saved is None else round(self.saved, 4),
            "tokens_per_second": None if self.tokens_per_second is None else round(self.tokens_per_second, 2),
            "first_token_s": None if self.first_token_s is None else round(self.first_token_s, 4),
            "probed": self.probed, "probe_kept": self.probe_kept,
        }


def ledger(path: Path, query: Query) -> list[LedgerRow]:
    """Per tier and model over every run matching the query (its limit is ignored)."""
    where, params = _where(query)
    sql = f"""
        SELECT coalesce(tier, '?') AS tier, coalesce(model, '?') AS model,
               sum(error IS NULL) AS runs, sum(error IS NOT NULL) AS failed,
               coalesce(sum(spent_thinking_tokens), 0) AS thinking, coalesce(sum(answer_tokens), 0) AS answer,
               coalesce(sum(CASE WHEN error IS NULL THEN deep_budget ELSE 0 END), 0) AS fixed,
               avg(tokens_per_second) AS tps, avg(first_token_s) AS ttft,
               sum(probe IS NOT NULL) AS probed,
               coalesce(sum(json_extract(probe, '$.kept') = 1), 0) AS kept
        FROM runs{where} GROUP BY 1, 2 ORDER BY 2, 1"""
    rows = _query(path, sql, params)
    result = [LedgerRow(r["tier"], r["model"], r["runs"], r["failed"], r["thinking"], r["answer"], r["fixed"],
                        r["tps"], r["ttft"], r["probed"], r["kept"]) for r in rows]
    return sorted(result, key=lambda r: (r.model, _tier_rank(r.tier), r.tier))


def total(rows: list[LedgerRow]) -> LedgerRow | None:
    """All rows together (means weighted by runs)."""
    if not rows:
        return None

    def mean(attr: str) -> float | None:
        pairs = [(getattr(r, attr), r.runs) for r in rows if getattr(r, attr) is not None and r.runs]
        weight = sum(w for _, w in pairs)
        return sum(v * w for v, w in pairs) / weight if weight else None

    return LedgerRow("all", "all", sum(r.runs for r in rows), sum(r.failed for r in rows),
                     sum(r.thinking_tokens for r in rows), sum(r.answer_tokens for r in rows),
                     sum(r.fixed_budget_tokens for r in rows), mean("tokens_per_second"), mean("first_token_s"),
                     sum(r.probed for r in rows), sum(r.probe_kept for r in rows))


def daily(path: Path, query: Query) -> list[Json]:
    """The ledger per day (UTC) and tier: thinking spent against the deep tier's fixed budget (the
    web page's chart). Days and tiers in order."""
    where, params = _where(query)
    sql = f"""
        SELECT substr(at, 1, 10) AS day, coalesce(tier, '?') AS tier, sum(error IS NULL) AS runs,
               coalesce(sum(spent_thinking_tokens), 0) AS thinking,
               coalesce(sum(CASE WHEN error IS NULL THEN deep_budget ELSE 0 END), 0) AS fixed
        FROM runs{where} GROUP BY 1, 2 ORDER BY 1, 2"""
    rows = [{"day": r["day"], "tier": r["tier"], "runs": r["runs"], "thinking_tokens": r["thinking"],
             "fixed_budget_tokens": r["fixed"]} for r in _query(path, sql, params)]
    return sorted(rows, key=lambda r: (r["day"], _tier_rank(r["tier"]), r["tier"]))


def _tier_rank(tier: str) -> int:
    """Tiers in their order (instant first); a name no tier has ('?', a failed run's) after them."""
    from ..policy.tiers import TIER_NAMES

    return TIER_NAMES.index(tier) if tier in TIER_NAMES else len(TIER_NAMES)
