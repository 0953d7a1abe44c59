"""Several scheduler processes for one batch: past the one core a single client process has.

Against a fast inference server the client's own work per token (parsing the stream, the policy)
caps what one Python process delivers (benchmarks/bench_client_cpu.py). `think batch --workers N`
starts N processes, each with its own runtime, scheduler and connections; this process plans the
items, hands them out in turn, and receives each item's Outcome or Failed — so the one writer of
the results file stays here, and every item is still written exactly once. Workers write the run
log themselves (SQLite in WAL mode takes several writers).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..errors import ThinkError
from ..output.records import Outcome
from .results import Failed, RunEvent, Task

POLL_S = 0.5  # how often a wait for results also checks that the workers are alive


@dataclass(frozen=True)
class WorkerOptions:
    parallel: int
    max_samples: int
    source: str
    gpu_layers: int | None = None
    log: bool = True


@dataclass(frozen=True)
class _Done:
    """A worker ran out of tasks; its decoders' per-endpoint token counts come with it."""

    worker: int
    per_endpoint: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Died:
    error: str


def _work(index: int, inbox: multiprocessing.Queue, outbox: multiprocessing.Queue, options: WorkerOptions) -> None:
    """A worker process: its own runtime and scheduler over the tasks it is handed (None: no more)."""
    import signal

    from .run import Scheduler
    from .runtime import Runtime

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers

    def tasks() -> Iterator[Task]:
        while (task := inbox.get()) is not None:
            yield task

    try:
        runtime = Runtime.create(gpu_layers=options.gpu_layers, log=options.log)
        scheduler = Scheduler(runtime, parallel=options.parallel, max_samples=options.max_samples,
                              source=options.source, streamed=False)  # a batch's worker: records, not streams
        for event in scheduler.run(tasks()):
            if isinstance(event, (Outcome, Failed)):
                outbox.put(event)
        per_endpoint = scheduler.last_decoder_stats.get("per_endpoint")
        outbox.put(_Done(index, dict(per_endpoint) if isinstance(per_endpoint, dict) else {}))
    except BaseException as exc:  # said to the parent in one line; its unfinished items become failed records
        outbox.put(_Died(str(exc) if isinstance(exc, ThinkError) else f"{type(exc).__name__}: {exc}"))


class WorkerPool:
    """The Scheduler's `run` over N processes (only task ends come back: no token events)."""

    def __init__(self, workers: int, options: WorkerOptions):
        self.workers, self.options = workers, options
        self.last_decoder_stats: dict[str, object] = {}

    def run(self, tasks: Iterable[Task]) -> Iterator[RunEvent]:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads and a loaded model
        inboxes = [context.Queue() for _ in range(self.workers)]
        outbox: multiprocessing.Queue = context.Queue()
        processes = [context.Process(target=_work, args=(i, inbox, outbox, self.options), daemon=True,
                                     name=f"think-batch-{i}") for i, inbox in enumerate(inboxes)]
        for process in processes:
            process.start()
        failure: list[BaseException] = []
        stopped = threading.Event()

        def feed() -> None:  # in turn, as the items are read and planned
            try:
                for index, task in enumerate(tasks):
                    if stopped.is_set():
                        return
                    inboxes[index % self.workers].put(task)
            except BaseException as exc:
                if not stopped.is_set():
                    failure.append(exc)
            finally:
                with contextlib.suppress(ValueError, OSError):  # the queues are closed once the run ended
                    for inbox in inboxes:
                        inbox.put(None)

        feeder = threading.Thread(target=feed, daemon=True, name="batch-feeder")
        feeder.start()
        per_endpoint: dict[str, int] = {}
        running = set(range(self.workers))
        try:
            while running:
                try:
                    item = outbox.get(timeout=POLL_S)
                except queue.Empty:
                    running = {i for i in running if processes[i].is_alive()}  # one that died without a word
                    continue
                if isinstance(item, _Done):
                    for url, count in item.per_endpoint.items():
                        per_endpoint[url] = per_endpoint.get(url, 0) + count
                    running.discard(item.worker)
                elif isinstance(item, _Died):
                    raise ThinkError(f"a batch worker failed: {item.error}")
                else:
                    yield item
            feeder.join(timeout=5)
            if failure:
                raise failure[0]
        finally:
            stopped.set()
            self.last_decoder_stats = {"per_endpoint": per_endpoint}
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=10)
            for box in (*inboxes, outbox):  # tasks never read must not hold this process at its exit
                box.cancel_join_thread()
                box.close()
