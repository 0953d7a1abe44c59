"""The engine facade: loaded models, their decoders, and one generate() for every command.

`ask`, `chat` and `batch` all come through here and differ only in what they do with the
events. Models load lazily and stay cached per process (tier routing may use several).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .budget import BudgetSpec, ForcedText, SequencePolicy
from .decoder import Decoder
from .events import EngineEvent
from .family import Family, Sampling, detect_family
from .model import Model
from .prompt import RenderedPrompt, render_prompt, render_raw
from .protocol import ModelHandle, Request, SequenceDecoder
from .remote import Endpoint, RemoteDecoder, RemoteModel
from .thinking import ThinkingParser


@dataclass(frozen=True)
class Loaded:
    """A model ready to generate: weights, its family, and when it took to load."""

    name: str
    model: ModelHandle  # a local GGUF (model.Model) or a served one (remote.RemoteModel)
    family: Family
    load_s: float


@dataclass
class Job:
    """One sequence to generate: a conversation, its budget, and sampling."""

    key: Hashable
    messages: list[dict[str, str]]
    budget: BudgetSpec
    sampling: Sampling
    keep_cache: bool = False
    score_tokens: bool = False
    group: Hashable = None  # jobs of one prompt (Best-of-N samples) share a group
    stop: tuple[str, ...] = ()  # extra stop strings for the answer (the family's own always apply)
    raw: bool = False  # the last message is the model's text as it is (no chat template)
    streamed: bool = True  # someone reads the text as it comes (Request.streamed)


@dataclass
class Engine:
    gpu_layers: int = 0
    threads: int = 0
    n_ctx: int = 4096
    _loaded: dict[str, Loaded] = field(default_factory=dict)
    _decoders: dict[str, Decoder] = field(default_factory=dict)
    _forced: dict[str, ForcedText] = field(default_factory=dict)  # per model: tokenized once
    _remote: dict[str, RemoteDecoder] = field(default_factory=dict)

    def load(self, name: str, path: Path, family: Family | None, families: dict[str, Family]) -> Loaded:
        key = str(path)
        if key not in self._loaded:
            started = time.perf_counter()
            model = Model(path, gpu_layers=self.gpu_layers, threads=self.threads)
            chosen = family or families[detect_family(model.info.chat_template)]
            self._loaded[key] = Loaded(name, model, chosen, time.perf_counter() - started)
        return self._loaded[key]

    def load_remote(self, name: str, endpoint: Endpoint, family: Family | None,
                    families: dict[str, Family]) -> Loaded:
        """A model on a server: asked for its template and context once, kept per process."""
        if endpoint.key not in self._loaded:
            started = time.perf_counter()
            model = RemoteModel(name, endpoint)
            chosen = family or families[detect_family(model.info.chat_template)]
            self._loaded[endpoint.key] = Loaded(name, model, chosen, time.perf_counter() - started)
        return self._loaded[endpoint.key]

    def decoder(self, loaded: Loaded, n_seq: int, seq_room: int | None = None) -> SequenceDecoder:
        """A context where n_seq sequences of `seq_room` tokens fit together (unified KV cache).

        Kept per model (chat reuses its cache across turns); rebuilt only when too small. A remote
        model gets a RemoteDecoder: the same interface over HTTP."""
        key = loaded.model.key
        room = seq_room or min(self.n_ctx, max(loaded.model.info.n_ctx_train, 512))
        if isinstance(loaded.model, RemoteModel):
            remote = self._remote.get(key)
            if remote is None or remote.n_seq < n_seq:
                remote = RemoteDecoder(loaded.model, n_seq, room)
                self._remote[key] = remote
            return remote
        assert isinstance(loaded.model, Model)
        current = self._decoders.get(key)
        if current is None or current.n_seq < n_seq or current.seq_room < room:
            if current is not None:
                current.close()
            current = Decoder(loaded.model, n_ctx=room * n_seq, n_seq=n_seq, seq_room=room)
            self._decoders[key] = current
        return current

    def render(self, loaded: Loaded, messages: list[dict[str, str]], thinking: bool, raw: bool = False) -> RenderedPrompt:
        if raw:  # a text completion: the last message is the model's text as it is
            return render_raw(messages[-1]["content"], loaded.family, thinking)
        model = loaded.model
        bos = model.piece(model.bos).decode("utf-8", "replace") if model.bos >= 0 else ""
        eos = model.piece(model.eos).decode("utf-8", "replace") if model.eos >= 0 else ""
        return render_prompt(messages, loaded.family, thinking, model.info.chat_template, bos, eos)

    def request(self, loaded: Loaded, job: Job, prompt: list[int] | None = None, text: str = "") -> Request:
        """A decoder request for a job; pass `prompt` (and its `text`) when the job was already tokenized."""
        if prompt is None:
            text = self.render(loaded, job.messages, job.budget.thinking).text
            prompt = loaded.model.prompt_tokens(text)
        policy = make_policy(loaded, job.budget, self.forced(loaded), job.stop)
        # A server that renders the same prompt itself may take the messages and keep the budget (remote.py)
        chat = (isinstance(loaded.model, RemoteModel) and not job.raw
                and loaded.model.opens_thinking(loaded.family))
        return Request(job.key, prompt, policy, job.sampling, job.score_tokens, job.keep_cache, job.group, text,
                       tuple(job.messages) if chat else None, job.streamed)

    def forced(self, loaded: Loaded) -> ForcedText:
        """The texts a policy may insert for this model, tokenized once per model."""
        key = loaded.model.key
        if key not in self._forced:
            self._forced[key] = forced_text(loaded)
        return self._forced[key]

    def generate(self, loaded: Loaded, jobs: Iterable[Job], parallel: int = 1) -> Iterator[EngineEvent]:
        """Jobs straight to the decoder (tests, benchmarks); front ends go through run.Scheduler."""
        decoder = self.decoder(loaded, parallel)
        requests = (self.request(loaded, job) for job in jobs)
        return decoder.run(requests, parallel)

    def close(self) -> None:
        for decoder in self._decoders.values():
            decoder.close()
        for remote in self._remote.values():
            remote.close()
        for loaded in self._loaded.values():
            loaded.model.close()
        self._decoders.clear()
        self._remote.clear()
        self._loaded.clear()
        self._forced.clear()


def forced_text(loaded: Loaded) -> ForcedText:
    """The texts a policy may insert for this model's family, with their tokens."""
    family, model = loaded.family, loaded.model

    def forced(text: str) -> tuple[list[int], str]:
        return (model.tokenize(text, add_bos=False, special=True) if text else [], text)

    close = family.think_close + ("\n" if not family.answer_prefix else "") + family.answer_prefix
    return ForcedText(
        close=forced(close),
        budget=forced(family.budget_message + close),
        wait=forced("\n" + family.wait_word + ","),
        answer_prefix=forced(family.answer_prefix),
        message=family.budget_message,
    )


def make_policy(loaded: Loaded, budget: BudgetSpec, forced: ForcedText, stop: tuple[str, ...] = ()) -> SequencePolicy:
    """A sequence's policy; the parser cuts the answer at a stop string (and holds back what may start one)."""
    family = loaded.family
    parser = ThinkingParser(family.think_close, budget.thinking, (*family.stop, *stop), family.answer_prefix)
    return SequencePolicy(budget, parser, forced, loaded.model.is_end)
