"""Many clients, one scheduler per model: the bridge between a server's requests and the scheduler.

Each model gets a decoding thread that runs `Scheduler.run` over a bounded queue of tasks, so
concurrent requests are decoded together (continuous batching, shared prompt prefixes) and a
request that arrives while others stream joins at the next step. Events go back to the task's
listener (called on the decoding thread; the server hands them to its event loop). A full queue
refuses new work at once (the server answers 429) instead of queueing without bound.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ...errors import ThinkError
from ...output.records import Outcome
from ...scheduler.results import Failed, Planned, RunEvent, Task
from ...scheduler.run import Scheduler
from ...scheduler.runtime import Runtime
from ...text import Json

Listener = Callable[[RunEvent], None]


class Busy(ThinkError):
    """The queue is full: come back later."""


def task_key(event: RunEvent) -> str:
    if isinstance(event, (Planned, Failed, Outcome)):
        return event.key
    return str(event.seq[0])  # type: ignore[index]


@dataclass
class _Worker:
    """One model's decoding thread, its queue and its scheduler."""

    model: str
    scheduler: Scheduler
    inbox: queue.Queue[Task | None]
    thread: threading.Thread | None = None
    live: set[str] = field(default_factory=set)


class Service:
    def __init__(self, runtime: Runtime, parallel: int = 4, queue_size: int = 16, max_samples: int = 4):
        self.runtime = runtime
        self.parallel = parallel
        self.queue_size = queue_size
        self.max_samples = max_samples
        self._workers: dict[str, _Worker] = {}
        self._listeners: dict[str, Listener] = {}
        self._lock = threading.Lock()
        self.closing = False
        self.counts = {"completed": 0, "failed": 0, "cancelled": 0, "rejected": 0}

    # -- from the server's threads ----------------------------------------------------------
    def submit_all(self, tasks: list[tuple[Task, Listener]]) -> None:
        """Queue one request's tasks (its n draws) together or not at all. Raises Busy when the queue
        is full; a request is always taken when nothing waits, however many draws it has."""
        if self.closing:
            raise Busy("the server is shutting down")
        with self._lock:  # held while queueing: a worker whose model failed takes its queue along, whole
            worker = self._worker(tasks[0][0].plan.model)
            waiting = worker.inbox.qsize()
            if waiting and waiting + len(tasks) > self.queue_size:
                self.counts["rejected"] += 1
                raise Busy(f"{self.queue_size} requests are already waiting")
            for task, listener in tasks:
                self._listeners[task.key] = listener
                worker.inbox.put_nowait(task)

    def cancel(self, key: str) -> None:
        """The client went away: stop the task (queued or running) and drop its events."""
        with self._lock:
            if self._listeners.pop(key, None) is None:
                return  # already finished
            self.counts["cancelled"] += 1
            workers = list(self._workers.values())
        for worker in workers:
            worker.scheduler.cancel(key)

    def stats(self) -> Json:
        with self._lock:
            workers = {name: {"queued": w.inbox.qsize(), "running": len(w.live),
                              "decoder": dict(w.scheduler.last_decoder_stats)} for name, w in self._workers.items()}
            return {"models": workers, **self.counts}

    def drain(self) -> None:
        """Stop taking work; what runs goes on (until `shutdown`)."""
        self.closing = True

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._listeners)

    def shutdown(self) -> None:
        """Stop taking work and end every task now: each ends as `cancelled` and its listener still
        hears it, so a client gets a last chunk (or a reply) that says it was cut, not a cut connection."""
        with self._lock:
            self.closing = True
            keys = list(self._listeners)
            workers = list(self._workers.values())
        for worker in workers:
            for key in keys:
                worker.scheduler.cancel(key)

    def close(self) -> None:
        """Stop taking work; running tasks are cancelled, the decoding threads end."""
        with self._lock:
            workers = list(self._workers.values())
            keys = list(self._listeners)
        for key in keys:
            self.cancel(key)
        for worker in workers:
            worker.inbox.put(None)
        for worker in workers:
            if worker.thread is not None:
                worker.thread.join(timeout=30)

    # -- the decoding threads ---------------------------------------------------------------
    def _worker(self, model: str) -> _Worker:
        """The model's worker (call with the lock held), started on first use."""
        worker = self._workers.get(model)
        if worker is None:
            scheduler = Scheduler(self.runtime, parallel=self.parallel, max_samples=self.max_samples,
                                  source="serve")
            worker = _Worker(model, scheduler, queue.Queue())  # bounded by submit_all
            worker.thread = threading.Thread(target=self._loop, args=(worker,), name=f"decode:{model}",
                                             daemon=True)
            self._workers[model] = worker
            worker.thread.start()
        return worker

    def _loop(self, worker: _Worker) -> None:
        try:
            self.runtime.load(worker.model)  # on this thread: loading never blocks the event loop
        except ThinkError as exc:  # no worker stays behind for a model that does not load
            with self._lock:
                del self._workers[worker.model]
            while not worker.inbox.empty():
                task = worker.inbox.get_nowait()
                if task is not None:
                    self._dispatch(worker, Failed(task.key, task.plan, str(exc), task.prompt))
            return
        finished = threading.Event()

        def source() -> Iterator[Task]:
            while True:
                task = worker.inbox.get()
                if task is None:
                    finished.set()
                    return
                worker.live.add(task.key)
                yield task

        tasks = source()
        while not finished.is_set():
            try:
                for event in worker.scheduler.run(tasks, ready=lambda: not worker.inbox.empty()):
                    self._dispatch(worker, event)
            except ThinkError as exc:  # llama.cpp refused a step: fail what was running, go on
                for key in list(worker.live):
                    self._dispatch(worker, Failed(key, None, str(exc)))
            except Exception as exc:  # never let the decoding thread die silently
                for key in list(worker.live):
                    self._dispatch(worker, Failed(key, None, f"internal error: {exc}"))

    def _dispatch(self, worker: _Worker, event: RunEvent) -> None:
        key = task_key(event)
        final = isinstance(event, (Outcome, Failed))
        with self._lock:
            listener = self._listeners.pop(key, None) if final else self._listeners.get(key)
            if final:
                worker.live.discard(key)
                if listener is not None:
                    self.counts["completed" if isinstance(event, Outcome) else "failed"] += 1
        if listener is not None:
            listener(event)
