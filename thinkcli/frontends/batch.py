"""`think batch`: many prompts through one engine, resumable, nothing lost, nothing twice.

Inputs are read lazily (.txt, .jsonl, .csv, or stdin). Results go to a JSONL file one complete,
fsynced line per item; a rerun skips ids already answered and retries failed ones, a torn last
line (a crash mid-write) is cut off, and a lock keeps a second process away. Items run through
the one scheduler (scheduler/run.py): continuous batching over `parallel` prompts, Best-of-N samples in the
same decode steps, each tier on its own model.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, Union

from ..errors import ThinkError, UsageError
from ..output.logs import spent_thinking_tokens
from ..output.records import Outcome, batch_record, error_record, outcome_record
from ..policy.plan import Overrides, Plan, make_plan
from ..scheduler.pool import WorkerOptions, WorkerPool
from ..scheduler.results import Failed, Task, failure_message, messages_for
from ..scheduler.run import Scheduler
from ..scheduler.runtime import Runtime
from ..text import Json, clean_json

log = logging.getLogger("thinkcli")
CSV_FIELD_LIMIT = 64 * 1024 * 1024  # Python's default (131,072 characters) refuses a long pasted document

FORMATS = ("txt", "jsonl", "csv")


@dataclass(frozen=True)
class Item:
    id: str
    line: int
    prompt: str | None
    error: str | None = None


def detect_format(path: str, explicit: str | None) -> str:
    if explicit:
        if explicit not in FORMATS:
            raise UsageError(f"unknown input format '{explicit}' (choose {', '.join(FORMATS)})")
        return explicit
    suffix = Path(path).suffix.lower().lstrip(".")
    if path == "-":
        return "txt"
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in FORMATS:
        return suffix
    raise UsageError(f"cannot tell the format of '{path}': use .txt, .jsonl or .csv, or --format")


def jsonl_objects(stream: Iterable[str]) -> Iterator[tuple[int, Json | None, str | None]]:
    """(line number, the object or None, what is wrong with the line) for every non-blank line."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = clean_json(json.loads(line))
        except json.JSONDecodeError as exc:
            yield number, None, f"malformed JSON ({exc.msg})"
            continue
        except RecursionError:
            yield number, None, "malformed JSON (nested too deeply)"
            continue
        if not isinstance(record, dict):
            yield number, None, "not a JSON object"
            continue
        yield number, record, None


def read_items(stream: TextIO, fmt: str, field_name: str = "prompt") -> Iterator[Item]:
    """Every input record as an Item; a bad record becomes an Item with an error, never an exception."""
    if fmt == "txt":
        for number, line in enumerate(stream, start=1):
            text = line.rstrip("\n").rstrip("\r")
            if text.strip():  # blank lines are skipped, as in .jsonl; ids stay line numbers
                yield Item(str(number), number, text)
    elif fmt == "jsonl":
        for number, record, error in jsonl_objects(stream):
            if record is None:
                yield Item(str(number), number, None, f"line {number}: {error}")
                continue
            item_id = str(record["id"]) if record.get("id") is not None else str(number)
            prompt = record.get(field_name)
            if not isinstance(prompt, str):
                yield Item(item_id, number, None, f"line {number}: no string field '{field_name}'")
            else:
                yield Item(item_id, number, prompt, None if prompt.strip() else f"line {number}: empty prompt")
    else:
        csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
        reader = csv.DictReader(stream)
        try:
            header = reader.fieldnames
        except csv.Error as exc:
            raise UsageError(f"the CSV header cannot be read: {exc}") from None
        if header is None or field_name not in header:
            raise UsageError(f"the CSV has no column '{field_name}' (use --field)")
        unused = [name for name in header if name not in (field_name, "id")]
        if unused:  # said once, not dropped silently
            log.warning("the CSV's column%s %s %s not used: a record keeps only its id and the answer to '%s'",
                        "s" if len(unused) > 1 else "", ", ".join(unused[:5]), "are" if len(unused) > 1 else "is",
                        field_name)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # this row only: the reader goes on at the next line
                number = reader.line_num
                yield Item(f"line-{number}", number, None, f"line {number}: malformed CSV ({exc})")
                continue
            number = reader.line_num
            item_id = row.get("id") or str(number)
            prompt = row.get(field_name)
            if prompt is None:
                yield Item(item_id, number, None, f"line {number}: malformed CSV row")
            else:
                yield Item(item_id, number, prompt, None if prompt.strip() else f"line {number}: empty prompt")


class OutputStore:
    """The JSONL output: locked, repaired, appended one fsynced line at a time.

    Ids with a successful record are done; a rerun skips them. Error records of an earlier run are
    taken out (an atomic rewrite) so that a rerun tries those items again: each id keeps one line."""

    def __init__(self, path: Path):
        self.path = path
        self._lock: Any = None
        self._handle: Any = None
        self.done_ids: set[str] = set()
        self.repaired_bytes = 0
        self.retried = 0  # error records of an earlier run, taken out to be tried again

    def __enter__(self) -> OutputStore:
        from filelock import FileLock, Timeout

        check_writable_file(self.path, "--output")
        lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock = FileLock(str(lock_path), blocking=False)
        try:
            self._lock.acquire()
        except Timeout:
            raise ThinkError(f"{self.path} is being written by another `think batch` (lock {lock_path})") from None
        except OSError as exc:
            raise ThinkError(f"cannot lock {lock_path}: {exc.strerror}") from None
        try:
            self._repair_and_scan()
            self._handle = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            self._lock.release()
            raise ThinkError(f"cannot write {self.path}: {exc.strerror}") from None
        return self

    def _repair_and_scan(self) -> None:
        """Read what an earlier run wrote. Only a last line that does not parse (a crash mid-write) is
        cut; a file that holds anything but records is refused, untouched: it is not ours to edit."""
        if not self.path.exists():
            return
        if not self.path.is_file():
            raise UsageError(f"--output {self.path} is not a regular file")
        data = self.path.read_bytes()
        lines = data.splitlines(keepends=True)
        kept: list[bytes] = []
        newline_added = False
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                kept.append(line)
                continue
            record = _record_or_none(line)
            if record is None:
                if number == len(lines) and not line.endswith(b"\n"):  # a torn last line from a crash
                    self.repaired_bytes = len(line)
                    continue
                raise UsageError(f"--output {self.path} is not a think batch output (line {number} is not a record "
                                 "with an id): give a new file, or the JSONL of an earlier run")
            if not line.endswith(b"\n"):  # a whole record without its newline (saved by an editor): keep it
                line += b"\n"
                newline_added = True
            if record.get("error"):
                self.retried += 1
                continue
            self.done_ids.add(str(record["id"]))
            kept.append(line)
        if self.repaired_bytes or self.retried or newline_added:
            _atomic_write(self.path, b"".join(kept))

    def write(self, record: Json) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        if not record.get("error"):
            self.done_ids.add(str(record["id"]))

    def __exit__(self, *exc: object) -> None:
        if self._handle:
            self._handle.close()
        if self._lock:
            # Unlinked while still held, so no empty .lock stays behind. Safe: filelock re-checks
            # after flock that the inode it locked still has a name (st_nlink) and retries if not.
            Path(self._lock.lock_file).unlink(missing_ok=True)
            self._lock.release()


def _record_or_none(line: bytes) -> Json | None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) and "id" in record else None


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace a file's content so that a crash leaves either the old or the new file, whole."""
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def refuse_same_files(paths: dict[str, Path | None]) -> None:
    """Two roles on one file (`batch x.jsonl -o x.jsonl`, `--summary` = `-o`) would overwrite one with the
    other or feed a run its own output: refused before any work (links and `./` spellings included)."""
    named = [(role, path) for role, path in paths.items() if path is not None]
    for i, (role, path) in enumerate(named):
        for other_role, other in named[i + 1:]:
            same = path.resolve() == other.resolve()
            if not same and path.exists() and other.exists():
                try:
                    same = os.path.samefile(path, other)
                except OSError:
                    same = False
            if same:
                raise UsageError(f"{role} and {other_role} are the same file ({path}): give each its own")


def check_writable_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output path that cannot be written (never create directories)."""
    try:
        _check_writable(path, option)
    except OSError as exc:  # a name too long, a loop of links …
        raise UsageError(f"{option} {path}: {exc.strerror}") from None


def _check_writable(path: Path, option: str) -> None:
    if path.is_dir():
        raise UsageError(f"{option} {path} is a directory: give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: directory {parent} does not exist")
    if (path.exists() and not os.access(path, os.W_OK)) or (not path.exists() and not os.access(parent, os.W_OK)):
        raise UsageError(f"{option} {path}: permission denied")


@dataclass
class TierStats:
    count: int = 0
    thinking: list[int] = field(default_factory=list)
    answer: list[int] = field(default_factory=list)
    first_start: float | None = None
    last_end: float | None = None

    @property
    def wall_s(self) -> float:
        """Wall time from the tier's first item starting to its last finishing (items overlap)."""
        return (self.last_end - self.first_start) if self.first_start is not None and self.last_end else 0.0


@dataclass
class BatchSummary:
    tiers: dict[str, TierStats] = field(default_factory=lambda: defaultdict(TierStats))
    done: int = 0
    failed: int = 0
    skipped: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    fixed_budget: int = 0  # thinking tokens these items would cost at the deep tier's fixed budget
    endpoints: dict[str, int] = field(default_factory=dict)  # remote models: tokens each replica generated

    def add(self, record: Json, outcome: Outcome | None = None, deep_budget: int = 0) -> None:
        if record.get("error"):
            self.failed += 1
            return
        self.done += 1
        self.fixed_budget += deep_budget
        usage = record["usage"]
        stats = self.tiers[record["tier"]]
        stats.count += 1
        stats.thinking.append(spent_thinking_tokens(record))
        stats.answer.append(usage["answer_tokens"])
        if outcome is not None:
            start = outcome.started_at
            stats.first_start = start if stats.first_start is None else min(stats.first_start, start)
            stats.last_end = max(stats.last_end or 0.0, start + outcome.total_s)
        self.tokens += usage["thinking_tokens"] + usage["answer_tokens"]

    def as_dict(self) -> Json:
        tiers = {
            name: {
                "count": s.count,
                "mean_thinking_tokens": round(sum(s.thinking) / s.count, 1),
                "max_thinking_tokens": max(s.thinking),
                "mean_answer_tokens": round(sum(s.answer) / s.count, 1),
                "wall_s": round(s.wall_s, 2),
            }
            for name, s in sorted(self.tiers.items()) if s.count
        }
        spent = sum(sum(s.thinking) for s in self.tiers.values())
        fixed = self.fixed_budget
        return {
            "done": self.done,
            "failed": self.failed,
            "skipped": self.skipped,
            "elapsed_s": round(time.perf_counter() - self.started, 2),
            "tiers": tiers,
            "thinking_tokens": spent,
            "deep_fixed_budget_tokens": fixed,
            "fraction_of_deep_budget": round(spent / fixed, 4) if fixed else None,
            **({"replicas": dict(sorted(self.endpoints.items()))} if self.endpoints else {}),
        }


@dataclass(frozen=True)
class RecordWritten:
    record: Json


@dataclass(frozen=True)
class BatchProgress:
    summary: BatchSummary
    endpoints: dict[str, int] = field(default_factory=dict)  # remote models: tokens generated per replica


@dataclass(frozen=True)
class BatchDone:
    summary: BatchSummary


BatchEvent = Union[RecordWritten, BatchProgress, BatchDone]


def most_samples(runtime: Runtime, overrides: Overrides) -> int:
    """The most Best-of-N samples any item of a batch may ask for (sizes the decoder's slots)."""
    tiers = [t.samples for t in runtime.registry.tiers.values() if t.strategy == "vote"]
    return max([overrides.samples or 1, *tiers])


def run_batch(runtime: Runtime, items: Iterable[Item], store: OutputStore, overrides: Overrides,
              parallel: int = 1, keep_thinking: bool = False, source: str = "batch", workers: int = 1
              ) -> Iterator[BatchEvent]:
    """Process items not yet in the store through the one scheduler (or `workers` processes of it, see
    scheduler/pool.py); every item gets one record, written here."""
    summary = BatchSummary()
    lines: dict[str, Item] = {}
    first_line: dict[str, int] = {}
    early: deque[Json] = deque()  # records of items that fail before they are planned

    def fail(item: Item, error: str, plan: Plan | None = None, model: str | None = None) -> None:
        early.append(error_record(item.id, item.line, item.prompt, error, plan, model, keep_thinking))

    def tasks() -> Iterator[Task]:
        for item in items:
            if item.id in first_line:
                fail(item, f"line {item.line}: duplicate id '{item.id}' (first on line {first_line[item.id]})")
                continue
            first_line[item.id] = item.line
            if item.id in store.done_ids:
                summary.skipped += 1
                continue
            if item.error is not None or item.prompt is None:
                fail(item, item.error or "no prompt")
                continue
            try:
                plan = make_plan(item.prompt, runtime.registry, overrides, runtime.default_model)
            except Exception as exc:  # this item's error record; the batch goes on
                fail(item, f"line {item.line}: {failure_message(exc)}")
                continue
            lines[item.id] = item
            yield Task(item.id, item.prompt, plan, messages_for(item.prompt))

    def write(record: Json, outcome: Outcome | None = None) -> RecordWritten:
        store.write(record)
        summary.add(record, outcome, runtime.registry.deep_budget(outcome.plan.model) if outcome else 0)
        return RecordWritten(record)

    scheduler: Scheduler | WorkerPool
    if workers > 1:
        scheduler = WorkerPool(workers, WorkerOptions(parallel, most_samples(runtime, overrides), source,
                                                      runtime.engine.gpu_layers, log=runtime.log is not None))
    else:
        # records, not streams: no one reads a batch's text as it comes (a remote reply may come in one piece)
        scheduler = Scheduler(runtime, parallel=parallel, max_samples=most_samples(runtime, overrides), source=source,
                              streamed=False)
    last_progress = 0.0
    for event in scheduler.run(tasks()):
        while early:
            yield write(early.popleft())
        match event:
            case Outcome():
                item = lines.pop(event.key)
                yield write(batch_record(item.id, item.line, outcome_record(event, keep_thinking)), event)
            case Failed():
                item = lines.pop(event.key)
                fail(item, f"line {item.line}: {event.error}", event.plan,
                     event.plan.model if event.plan is not None else None)
                yield write(early.popleft())
        now = time.perf_counter()
        if now - last_progress > 0.2:
            last_progress = now
            per_endpoint = scheduler.last_decoder_stats.get("per_endpoint")
            yield BatchProgress(summary, dict(per_endpoint) if isinstance(per_endpoint, dict) else {})
    per_endpoint = scheduler.last_decoder_stats.get("per_endpoint")
    summary.endpoints = dict(per_endpoint) if isinstance(per_endpoint, dict) else {}
    for item in list(lines.values()):  # never lose an item silently, whatever went wrong
        fail(item, f"line {item.line}: no result (internal error; rerun to retry it)")
    while early:
        yield write(early.popleft())
    yield BatchDone(summary)


def open_input(path: str) -> TextIO:
    """The input as text; a UTF-8 byte-order mark (Excel's "CSV UTF-8") is dropped, bad bytes replaced."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="replace", newline="")
    source = Path(path)
    if not source.exists():
        raise ThinkError(f"input not found: {path}")
    if source.is_dir():
        raise ThinkError(f"input {path} is a directory")
    try:
        return open(source, encoding="utf-8-sig", errors="replace", newline="")
    except OSError as exc:
        raise ThinkError(f"cannot read {path}: {exc.strerror}") from None


def count_items(path: str, fmt: str) -> int | None:
    """How many records the input holds (for the progress bar); None for stdin."""
    if path == "-":
        return None
    with open(path, "rb") as handle:
        lines = handle.read().splitlines()
    records = sum(1 for line in lines if line.strip())
    return max(records - 1, 0) if fmt == "csv" else records

