"""`think batch`: many prompts through one engine, resumable, nothing lost, nothing twice.

Inputs are read lazily (.txt, .jsonl, .csv, or stdin). Results go to a JSONL file one complete,
fsynced line per item; a rerun skips ids already there, a torn last line (a crash mid-write) is
cut off, and an flock keeps a second process away. Items run through the shared decoder with
continuous batching (`parallel` slots); vote-tier items run their own Best-of-N afterwards.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from .engine.events import SequenceDone
from .engine.session import Job, sampling_for
from .errors import ThinkError, UsageError
from .pipeline import Runtime
from .plan import Overrides, Plan, make_plan

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


def read_items(stream: TextIO, fmt: str, field_name: str = "prompt") -> Iterator[Item]:
    """Every input record as an Item; a bad record becomes an Item with an error, never an exception."""
    if fmt == "txt":
        for number, line in enumerate(stream, start=1):
            text = line.rstrip("\n").rstrip("\r")
            yield Item(str(number), number, text, None if text.strip() else "empty prompt")
    elif fmt == "jsonl":
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Item(str(number), number, None, f"line {number}: malformed JSON ({exc.msg})")
                continue
            if not isinstance(record, dict):
                yield Item(str(number), number, None, f"line {number}: not a JSON object")
                continue
            item_id = str(record["id"]) if record.get("id") is not None else str(number)
            prompt = record.get(field_name)
            if not isinstance(prompt, str):
                yield Item(item_id, number, None, f"line {number}: no string field '{field_name}'")
            else:
                yield Item(item_id, number, prompt, None if prompt.strip() else f"line {number}: empty prompt")
    else:
        reader = csv.DictReader(stream)
        if reader.fieldnames is None or field_name not in reader.fieldnames:
            raise UsageError(f"the CSV has no column '{field_name}' (use --field)")
        for row in reader:
            number = reader.line_num
            item_id = row.get("id") or str(number)
            prompt = row.get(field_name)
            if prompt is None:
                yield Item(item_id, number, None, f"line {number}: malformed CSV row")
            else:
                yield Item(item_id, number, prompt, None if prompt.strip() else f"line {number}: empty prompt")


class OutputStore:
    """The JSONL output: locked, repaired, appended one fsynced line at a time."""

    def __init__(self, path: Path):
        self.path = path
        self._lock_handle: Any = None
        self._handle: Any = None
        self.done_ids: set[str] = set()
        self.repaired_bytes = 0

    def __enter__(self) -> "OutputStore":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_handle = open(lock_path, "a+")
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_handle.close()
            raise ThinkError(f"{self.path} is being written by another `think batch` (lock {lock_path})") from None
        self._repair_and_scan()
        self._handle = open(self.path, "a", encoding="utf-8")
        return self

    def _repair_and_scan(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line from a crash: cut it off
            self.repaired_bytes = len(data) - end
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
                handle.flush()
                os.fsync(handle.fileno())
            data = data[:end]
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "id" in record:
                self.done_ids.add(str(record["id"]))

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.done_ids.add(str(record["id"]))

    def __exit__(self, *exc: object) -> None:
        if self._handle:
            self._handle.close()
        if self._lock_handle:
            self._lock_handle.close()


@dataclass
class TierStats:
    count: int = 0
    thinking: list[int] = field(default_factory=list)
    answer: list[int] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class BatchSummary:
    tiers: dict[str, TierStats] = field(default_factory=lambda: defaultdict(TierStats))
    done: int = 0
    failed: int = 0
    skipped: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    deep_budget: int = 0

    def add(self, record: dict[str, Any], elapsed: float) -> None:
        if record.get("error"):
            self.failed += 1
            return
        self.done += 1
        usage = record["usage"]
        stats = self.tiers[record["tier"]]
        stats.count += 1
        stats.thinking.append(usage["thinking_tokens"])
        stats.answer.append(usage["answer_tokens"])
        stats.seconds += elapsed
        self.tokens += usage["thinking_tokens"] + usage["answer_tokens"]

    def as_dict(self) -> dict[str, Any]:
        tiers = {
            name: {
                "count": s.count,
                "mean_thinking_tokens": round(sum(s.thinking) / s.count, 1),
                "max_thinking_tokens": max(s.thinking),
                "mean_answer_tokens": round(sum(s.answer) / s.count, 1),
                "seconds": round(s.seconds, 2),
            }
            for name, s in sorted(self.tiers.items()) if s.count
        }
        spent = sum(sum(s.thinking) for s in self.tiers.values())
        fixed = self.deep_budget * self.done
        return {
            "done": self.done,
            "failed": self.failed,
            "skipped": self.skipped,
            "elapsed_s": round(time.perf_counter() - self.started, 2),
            "tiers": tiers,
            "thinking_tokens": spent,
            "deep_fixed_budget_tokens": fixed,
            "fraction_of_deep_budget": round(spent / fixed, 4) if fixed else None,
        }


def _record(item: Item, plan: Plan | None, done: SequenceDone | None, error: str | None,
            keep_thinking: bool, vote: dict[str, Any] | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"id": item.id, "line": item.line, "prompt": item.prompt}
    if plan is not None:
        record["tier"] = plan.difficulty.tier
    if done is not None:
        record["answer"] = done.answer
        record["finish_reason"] = done.finish_reason
        record["usage"] = done.usage.as_dict()
        record["timings"] = {
            "first_token_s": round(done.first_token_s, 4) if done.first_token_s is not None else None,
            "total_s": round(done.elapsed_s, 4),
        }
        if keep_thinking:
            record["thinking"] = done.thinking
        if vote is not None:
            record["vote"] = vote
    record["error"] = error
    return record


def run_batch(runtime: Runtime, items: Iterable[Item], store: OutputStore, overrides: Overrides,
              parallel: int = 1, keep_thinking: bool = False) -> Iterator[tuple[str, Any]]:
    """Process items not yet in the store; yields ('record', dict) and ('progress', summary)."""
    summary = BatchSummary(deep_budget=runtime.registry.tiers["deep"].max_thinking)
    plans: dict[str, tuple[Item, Plan]] = {}
    votes: list[tuple[Item, Plan]] = []
    seen: set[str] = set()

    def finish(record: dict[str, Any], elapsed: float) -> dict[str, Any]:
        store.write(record)
        summary.add(record, elapsed)
        return record

    def pending() -> Iterator[tuple[Item, Plan]]:
        for item in items:
            if item.id in store.done_ids or item.id in seen:
                summary.skipped += 1
                continue
            seen.add(item.id)
            if item.error is not None:
                yield item, None  # type: ignore[misc]
                continue
            yield item, make_plan(item.prompt or "", runtime.registry, overrides, runtime.default_model)

    loaded_by_model: dict[str, Any] = {}

    def loaded_for(model: str) -> Any:
        if model not in loaded_by_model:
            loaded_by_model[model] = runtime.load(model)
        return loaded_by_model[model]

    errors: list[dict[str, Any]] = []

    def requests(model: str, source: Iterator[tuple[Item, Plan]]) -> Iterator[Any]:
        """Requests for the decoder; items that cannot run become error records instead."""
        for item, plan in source:
            if plan is None:
                errors.append(_record(item, None, None, item.error, keep_thinking))
                continue
            if plan.strategy == "vote" and plan.samples > 1:
                votes.append((item, plan))
                continue
            if plan.model != model:
                errors.append(_record(item, plan, None, f"tier {plan.tier.name} routes to model {plan.model}; "
                                      "run it in a separate batch with -m", keep_thinking))
                continue
            job = Job(item.id, [{"role": "user", "content": item.prompt or ""}], plan.budget,
                      sampling_for(loaded.family, plan.temperature, plan.seed),
                      score_tokens=plan.budget.needs_confidence)
            request = runtime.engine.request(loaded, job)
            room = decoder.n_ctx // max(parallel, 1)
            if len(request.prompt) + plan.budget.max_thinking + plan.budget.max_answer + 64 > room:
                errors.append(_record(item, plan, None, f"line {item.line}: prompt of {len(request.prompt)} tokens "
                                      f"plus its budget does not fit the context ({room} tokens per slot)", keep_thinking))
                continue
            plans[item.id] = (item, plan)
            yield request

    model = overrides.model or runtime.default_model
    loaded = loaded_for(model)
    decoder = runtime.engine.decoder(loaded, parallel, n_ctx=runtime.engine.n_ctx * max(parallel, 1))
    last_progress = 0.0
    for event in decoder.run(requests(model, pending()), parallel):
        while errors:
            yield "record", finish(errors.pop(0), 0.0)
        if isinstance(event, SequenceDone):
            item, plan = plans.pop(str(event.seq))
            yield "record", finish(_record(item, plan, event, None, keep_thinking), event.elapsed_s)
        now = time.perf_counter()
        if now - last_progress > 0.2:
            last_progress = now
            yield "progress", summary
    while errors:
        yield "record", finish(errors.pop(0), 0.0)

    from .engine.vote import run_vote

    for item, plan in votes:
        vote_loaded = loaded_for(plan.model)
        sampling = sampling_for(vote_loaded.family, plan.temperature, plan.seed)
        generator = run_vote(runtime.engine, vote_loaded, [{"role": "user", "content": item.prompt or ""}], plan, sampling)
        try:
            while True:
                next(generator)
        except StopIteration as stop:
            best, _samples, vote = stop.value
        except ThinkError as exc:
            yield "record", finish(_record(item, plan, None, str(exc), keep_thinking), 0.0)
            continue
        yield "record", finish(_record(item, plan, best, None, keep_thinking, vote), best.elapsed_s)
        yield "progress", summary
    yield "summary", summary


def open_input(path: str) -> TextIO:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    source = Path(path)
    if not source.exists():
        raise ThinkError(f"input not found: {path}")
    return open(source, encoding="utf-8", errors="replace", newline="")


def count_items(path: str, fmt: str) -> int | None:
    """How many records the input holds (for the progress bar); None for stdin."""
    if path == "-":
        return None
    with open(path, "rb") as handle:
        lines = handle.read().splitlines()
    if fmt == "txt":
        return len(lines)
    records = sum(1 for line in lines if line.strip())
    return max(records - 1, 0) if fmt == "csv" else records

