"""A model behind an OpenAI-compatible server: llama-server, vLLM, SGLang, llama-cpp-python's server.

The policy stays on the client. The prompt is rendered here (the server's chat template from
llama-server's `/props`, or the model entry's `template:` file), sent as text to `/v1/completions`,
and the stream is read token by token through the same `SequencePolicy` as the local decoder:
thinking caps, "Wait", confidence stop (from streamed logprobs) and the probe behave the same. When
the policy inserts text (the budget message and close tag, "Wait"), the stream is closed and a new
request continues from the prompt plus everything so far — the server's prompt cache makes that
cheap. A stream that breaks is continued the same way, after a short backoff. Best-of-N is N
concurrent requests; `RemoteDecoder.run` has the local decoder's interface, so the scheduler drives
both alike.

Where the server keeps the budget (llama-server, vLLM, SGLang: `_kept`), a capped item is one chat
request; where, besides, no rule reads the item token by token and no one watches it come (a batch with
the loop breaker off: `_whole`), that request is not streamed at all and its reply is parsed once.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from ..errors import ModelError, ThinkError
from ..text import Json
from .budget import SequencePolicy, Step, chunk_events, step_events
from .events import (
    EngineEvent,
    FinishReason,
    Progress,
    SequenceDone,
    SequenceFailed,
    Started,
    Usage,
)
from .family import Family, Sampling
from .fastjson import loads
from .model import ModelInfo
from .protocol import Pending, Request, Wait
from .thinking import THINKING

log = logging.getLogger("thinkcli")
T = TypeVar("T")

REMOTE_END = -1  # the "token" a remote stream ends with (EOS or a stop string on the server)
PIECE = 0  # the "token" of any streamed piece: the policy needs the text, not the id
RETRIES = 3
DOWN_S = 10.0  # a replica that failed is skipped this long (its share goes to the others)
DEFAULT_TIMEOUT = 30.0  # seconds of silence from a server before a generation request is given up
META_TIMEOUT = 5.0  # /models, /props, /tokenize: answered at once by a live server
WAITING_NOTE_S = 5.0  # a request silent this long gets one "waiting for the server" line


@dataclass(frozen=True)
class Endpoint:
    """Where a remote model is served: one or more base URLs (…/v1) and its name there."""

    urls: tuple[str, ...]
    model: str
    api_key_env: str | None = None
    template: str | None = None  # a chat template (text) given by the model entry
    timeout: float = DEFAULT_TIMEOUT
    parallel: int = 0  # sequences in flight per replica at most (0: no limit but --parallel)
    server_budget: str = "auto"  # who keeps a capped item's budget: auto, llama-server, vllm, sglang, off

    @property
    def key(self) -> str:
        return f"{self.urls[0]}#{self.model}"

    def headers(self) -> dict[str, str]:
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ModelError(f"the API key variable {self.api_key_env} is not set")
        return {"Authorization": f"Bearer {key}"}


def default_timeout() -> float:
    """THINK_REMOTE_TIMEOUT, else DEFAULT_TIMEOUT: how long a server may stay silent."""
    raw = os.environ.get("THINK_REMOTE_TIMEOUT")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ModelError(f"THINK_REMOTE_TIMEOUT must be a number of seconds, got {raw[:40]!r}") from None
    if not 0.1 <= value <= 86400:
        raise ModelError(f"THINK_REMOTE_TIMEOUT must be between 0.1 and 86400 seconds, got {value:g}")
    return value


def parse_remote_ref(ref: str) -> Endpoint | None:
    """`http://host:8080/v1#model-name` (ad hoc, no models.yaml entry) → an Endpoint. The name may be
    left out (the server's only model is used); `?timeout=S` sets the seconds of silence allowed."""
    if not ref.startswith(("http://", "https://")):
        return None
    from urllib.parse import parse_qs, urlsplit, urlunsplit

    url, _, model = ref.partition("#")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError as exc:
        raise ModelError(f"not a valid server URL: {url[:80]} ({exc})") from None
    if not parts.hostname:
        raise ModelError(f"not a valid server URL: {url[:80]} (no host)")
    timeout = default_timeout()
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"timeout"})
    if unknown:
        raise ModelError(f"unknown option '{unknown[0]}' in {url[:80]} (only ?timeout=SECONDS)")
    if "timeout" in query:
        try:
            timeout = float(query["timeout"][-1])
        except ValueError:
            timeout = -1.0
        if not 0.1 <= timeout <= 86400:
            raise ModelError(f"?timeout= must be seconds between 0.1 and 86400: {url[:80]}")
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")).rstrip("/")
    return Endpoint((base,), model, timeout=timeout)


def _served(data: object) -> list[Json]:
    """The model objects a `/v1/models` answer lists (anything malformed is left out)."""
    listed = data.get("data") if isinstance(data, dict) else None
    models = listed if isinstance(listed, list) else (data.get("models") if isinstance(data, dict) else None)
    return [m for m in (models if isinstance(models, list) else []) if isinstance(m, dict)]


def _served_names(data: object) -> list[str]:
    """The model names a `/v1/models` answer lists."""
    return [str(m.get("id") or m.get("name") or m.get("model")) for m in _served(data)]


def _aliases(model: Json) -> set[str]:
    """Every name a served model answers to: its id, aliases, and the file stem of a path id
    (llama-server lists a model by the path it was started with)."""
    names = {str(model[key]) for key in ("id", "name", "model") if isinstance(model.get(key), str)}
    aliases = model.get("aliases")
    if isinstance(aliases, list):
        names |= {str(a) for a in aliases if isinstance(a, str)}
    for name in list(names):
        stem = name.replace("\\", "/").rsplit("/", 1)[-1]
        names |= {stem, stem.removesuffix(".gguf")}
    return names


def match_served(data: object, wanted: str) -> str | None:
    """The id to send for `wanted` (empty: the server's only model), or None if it is not served."""
    models = _served(data)
    if not models:
        return wanted or None  # a server that lists nothing: take the name as given
    if not wanted:
        return str(models[0].get("id") or "") or None if len(models) == 1 else None
    for model in models:
        if wanted in _aliases(model):
            return str(model.get("id") or wanted)
    return None


def _not_served(url: str, names: list[str], model: str) -> str | None:
    """Why a replica cannot serve `model` (None: it can, or it lists nothing)."""
    if not names:
        return None
    if not model:
        return f"{url} serves {len(names)} models ({', '.join(names[:5])}): name one after '#'"
    return f"{url} serves {', '.join(names[:5])}, not '{model}'"


def check_endpoint(endpoint: Endpoint, timeout: float = 3.0) -> list[str]:
    """`think doctor`: for each replica, whether it answers and serves the model (one line each)."""
    import httpx

    lines = []
    for url in endpoint.urls:
        try:
            headers = endpoint.headers()
            response = httpx.get(f"{url}/models", headers=headers, timeout=timeout)
            if response.status_code in (401, 403):
                lines.append(f"{url}: refuses the API key ({response.status_code})")
                continue
            data = response.json()
            served = match_served(data, endpoint.model)
            problem = None if served else _not_served(url, _served_names(data), endpoint.model)
            lines.append(f"{url}: answers" + (f", but {problem}" if problem else ""))
        except ModelError as exc:
            lines.append(f"{url}: {exc}")
        except (httpx.HTTPError, ValueError) as exc:
            lines.append(f"{url}: does not answer ({type(exc).__name__})")
    return lines


def _root(url: str) -> str:
    """The server root of a …/v1 base URL (llama-server's /props, /tokenize live there)."""
    return url[: -len("/v1")] if url.endswith("/v1") else url


class RemoteModel:
    """What the scheduler asks of a model (template, context, tokens), answered by the server."""

    bos = -1
    eos = -1

    def __init__(self, name: str, endpoint: Endpoint):
        import httpx

        from .wire import Wire, usable

        self.key = endpoint.key
        # plain HTTP with no proxy: generation requests and their token streams take the lean client
        # (wire.py), and httpx needs no TLS context (it never speaks TLS there: no proxy, redirects not
        # followed), whose CA bundle costs 50-200 ms of every start; https:// or a proxy verify as always
        plain = all(usable(url) for url in endpoint.urls)
        # generation may be silent up to `timeout` (prompt evaluation); the rest answers at once
        self.client = httpx.Client(timeout=httpx.Timeout(endpoint.timeout, connect=min(endpoint.timeout, 10.0)),
                                   headers=endpoint.headers(), verify=not plain)
        self.meta_timeout = httpx.Timeout(min(endpoint.timeout, META_TIMEOUT), connect=min(endpoint.timeout, 3.0))
        self.wire = Wire(endpoint.headers(), endpoint.timeout, min(endpoint.timeout, 10.0)) if plain else None
        self._tokenizer: str | None = None
        self.waiting = _Waiting(endpoint.timeout)
        served: Json | None = None
        failures: list[str] = []
        for url in endpoint.urls:  # the first replica that answers describes the model
            try:
                served = self._get(f"{url}/models")
                break
            except ModelError as exc:
                failures.append(str(exc))
        else:
            raise ModelError(failures[0] if len(failures) == 1 else
                             f"no replica of '{name}' answers ({'; '.join(failures)})")
        self.base = url
        model = match_served(served, endpoint.model)
        if model is None:
            raise ModelError(_not_served(url, _served_names(served), endpoint.model) or
                             f"{url} lists no model: name one after '#'")
        from dataclasses import replace

        self.endpoint = replace(endpoint, model=model)  # the server's own id (a file stem or alias was given)
        props = self._get(f"{_root(url)}/props", missing_ok=True) or {}
        template = endpoint.template or props.get("chat_template") or None
        if not isinstance(template, str):
            template = None
        settings = props.get("default_generation_settings")
        settings = settings if isinstance(settings, dict) else {}
        n_ctx = _positive_int(settings.get("n_ctx")) or _positive_int(props.get("n_ctx")) or 4096
        bos = props.get("bos_token")
        self.bos_text = bos if isinstance(bos, str) else ""
        self.server_budget = _budget_keeper(endpoint, served, props)
        self._opens: dict[str, bool] = {}
        self.info = ModelInfo(path=None, name=name, n_ctx_train=n_ctx, n_vocab=0, n_params=0, size_bytes=0,
                              chat_template=template, gpu_layers=0)

    # -- HTTP ------------------------------------------------------------------------------
    def _get(self, url: str, missing_ok: bool = False) -> Json | None:
        import httpx

        try:
            response = self.client.get(url, timeout=self.meta_timeout)
        except httpx.TimeoutException:
            raise ModelError(f"the server at {url} did not answer within {self.meta_timeout.read:g} s") from None
        except httpx.HTTPError as exc:
            raise ModelError(f"cannot reach the server at {url} ({type(exc).__name__})") from None
        if response.status_code in (401, 403):
            raise ModelError(f"the server at {url} refused the API key ({response.status_code})")
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise ModelError(f"the server at {url} answered {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise ModelError(f"the server at {url} did not answer JSON") from None
        return data if isinstance(data, dict) else None

    # -- what the engine asks of a model ---------------------------------------------------
    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        """Token ids from the server (llama-server, llama-cpp-python, vLLM each have an endpoint);
        a server without one gets an estimate of 4 characters a token (counts only, never sent)."""
        if not text:
            return []
        root = _root(self.base)
        attempts: dict[str, tuple[str, Json]] = {
            "llama-server": (f"{root}/tokenize", {"content": text, "add_special": add_bos, "parse_special": special}),
            "llama-cpp-python": (f"{root}/extras/tokenize", {"input": text}),
            "vllm": (f"{root}/tokenize", {"model": self.endpoint.model, "prompt": text, "add_special_tokens": add_bos}),
        }
        for kind in ([self._tokenizer] if self._tokenizer else list(attempts)):
            if kind == "estimate":
                break
            url, body = attempts[kind]
            try:
                status, data = self.call(url, body)
                data = data if status == 200 else None
            except Exception:
                data = None
            ids = _token_ids(data.get("tokens") if isinstance(data, dict) else None)
            if ids is not None:
                self._tokenizer = kind
                return ids
        self._tokenizer = "estimate"
        return [0] * max(1, len(text) // 4)

    def open(self, url: str, body: Json, timeout: float | None = None) -> Any:
        """A POST whose reply is read as it comes (a context manager: `status_code`, `iter_lines`, `read`);
        `timeout`: how long the server may stay silent, where not the endpoint's."""
        if self.wire is not None:
            return self.wire.post(url, body, timeout)
        import httpx

        return self.client.stream("POST", url, json=body, timeout=timeout or httpx.USE_CLIENT_DEFAULT)

    def call(self, url: str, body: Json) -> tuple[int, Any]:
        """(status, JSON reply or None) of a POST that a live server answers at once (tokenize, control)."""
        if self.wire is not None:
            with self.wire.post(url, body, self.meta_timeout.read) as reply:
                raw = reply.read()
                status = reply.status_code
        else:
            response = self.client.post(url, json=body, timeout=self.meta_timeout)
            raw, status = response.content, response.status_code
        try:
            return status, loads(raw) if raw else None
        except ValueError:
            return status, None

    def opens_thinking(self, family: Family) -> bool:
        """Whether the server may render the conversation itself and keep the budget: it can keep one, it
        renders with the very template we do (its own), and that template opens the thinking block (so the
        server knows the text it streams is thinking; Qwen3.5, R1 distills). Asked once per family."""
        if self.server_budget is None or family.thinking_instruction:
            return False
        if self.server_budget != "llama-server":
            return True  # vLLM, SGLang: their own template and reasoning parser (named in models.yaml or found)
        if family.name not in self._opens:
            from .prompt import ends_inside_thinking, render_chat_template

            template = self.info.chat_template
            opens = False
            if template and not self.endpoint.template:
                try:
                    text = render_chat_template(template, [{"role": "user", "content": "1"}], True, self.bos_text, "")
                    opens = ends_inside_thinking(text, family)
                except ModelError:
                    opens = False
            self._opens[family.name] = opens
        return self._opens[family.name]

    @property
    def takes_n(self) -> bool:
        """Whether the server honours `n` (llama-server and vLLM do; llama-cpp-python's ignores it)."""
        return self._server_kind() in ("llama-server", "vllm")

    @property
    def exact_tokens(self) -> bool:
        """Whether prompt ids are the server's own (so they can be sent back as the prompt)."""
        return self._server_kind() == "llama-server"

    def _server_kind(self) -> str | None:
        """Which tokenize endpoint answers (it tells the servers apart): found by the first prompt counted, or,
        where `fit` counted none (bytes proved them short), by one word asked once."""
        if self._tokenizer is None:
            self.tokenize("1")
        return self._tokenizer

    def prompt_tokens(self, text: str) -> list[int]:
        return self.tokenize(text, add_bos=not (self.bos_text and text.startswith(self.bos_text)))

    def prompt_bound(self, text: str) -> int | None:
        """Every token a tokenizer makes holds at least one byte of the text (byte fallback included), apart
        from a BOS and a leading blank that SentencePiece may add: so a prompt that fits by this bound needs
        no /tokenize request before it is sent."""
        return len(text.encode("utf-8")) + 2

    def piece(self, token: int) -> bytes:
        return b""

    def is_end(self, token: int) -> bool:
        return token == REMOTE_END

    def close(self) -> None:
        self.client.close()
        if self.wire is not None:
            self.wire.close()


def _sampling_fields(sampling: Sampling) -> Json:
    """Sampling beyond the OpenAI surface, but read by llama-server, vLLM, SGLang and llama-cpp-python alike."""
    fields: Json = {}
    if sampling.top_k > 0:
        fields["top_k"] = sampling.top_k
    if sampling.min_p > 0:
        fields["min_p"] = sampling.min_p
    if sampling.repeat_penalty != 1.0:
        fields["repeat_penalty"] = sampling.repeat_penalty
    return fields


def _budget_keeper(endpoint: Endpoint, served: Json | None, props: Json) -> str | None:
    """Which server keeps a thinking budget per request, as models.yaml says or as the server shows:
    llama-server answers /props; vLLM and SGLang name themselves as `owned_by` in /v1/models."""
    if endpoint.server_budget != "auto":
        return None if endpoint.server_budget == "off" else endpoint.server_budget
    if isinstance(props.get("default_generation_settings"), dict) and "chat_template" in props:
        return "llama-server"
    owners = {str(m.get("owned_by", "")).lower() for m in _served(served)}
    return next((kind for kind in ("vllm", "sglang") if kind in owners), None)


def _positive_int(value: object) -> int:
    """A count a server reports (n_ctx), or 0 when it sent something else."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31 else 0


def _token_ids(tokens: object) -> list[int] | None:
    """Token ids from a tokenize answer (ints, or {"id": int} objects); None for anything else."""
    if not isinstance(tokens, list):
        return None
    ids: list[int] = []
    for token in tokens:
        value = token.get("id") if isinstance(token, dict) else token
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        ids.append(value)
    return ids


def _probability(logprob: float | None) -> float | None:
    """A parsed logprob (finite, see _logprob) as a probability; a server's "logprob" above 0 counts as 1."""
    return math.exp(min(logprob, 0.0)) if logprob is not None else None


class _Waiting:
    """One "waiting for the server" line for a request still silent after WAITING_NOTE_S: a single
    watch thread for all requests (started when the first one waits), none per request."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.note_s = min(WAITING_NOTE_S, timeout / 2)  # said before the request is given up
        self._since: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, ident: int, url: str) -> None:
        with self._lock:
            self._since[ident] = (url, time.monotonic())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, daemon=True, name="remote-wait")
                self._thread.start()

    def heard(self, ident: int) -> None:
        """Called for every streamed line: no lock (a dict's pop is atomic; the watcher reads a copy)."""
        if ident in self._since:
            self._since.pop(ident, None)

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.note_s / 2))
            now = time.monotonic()
            with self._lock:
                if not self._since:
                    self._thread = None
                    return
                late = [(i, url) for i, (url, since) in list(self._since.items()) if now - since >= self.note_s]
                for ident, _url in late:
                    self._since.pop(ident, None)
            for _ident, url in late[:1]:  # one line, however many wait on it
                log.warning("waiting for the server at %s (silent for %g s; gives up after %g s)", url,
                            self.note_s, self.timeout)


@dataclass(eq=False)
class _Live:
    request: Request
    events: queue.Queue[Reported]  # the queue of the run() that started it (a later run never sees its events)
    home: str  # the replica it runs on (a continuation goes back there: its cache is there)
    cancelled: FinishReason | None = None
    prompt: list[int] | None = None  # the prompt's ids once known (`fit` leaves them out where bytes prove it fits)
    prompt_count: int = 0  # the prompt's tokens as the server counted them (a whole reply's usage)


@dataclass
class _State:
    """Where one sequence stands: what it added to the prompt, as text and (while known) as ids."""

    started: float
    exact: bool  # the ids are the server's own: continuations go as ids to llama-server's /completion
    pieces: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    first_token: float | None = None
    replica: str | None = None  # where its cache is
    finish: FinishReason | None = None
    restart: bool = False  # the policy inserted text: ask again with it
    got_any: bool = False
    attempt: int = 0


@dataclass
class RemoteStats:
    requests: int = 0  # HTTP requests made (continuations included)
    grouped_requests: int = 0  # Best-of-N first parts sent as one request with `n`
    retries: int = 0
    tokens_generated: int = 0
    max_step_sequences: int = 0  # the most sequences in flight at once
    controls: int = 0  # reasoning_end calls (a confidence stop on a server that keeps the budget)
    per_endpoint: dict[str, int] = field(default_factory=dict)  # tokens per base URL


@dataclass(frozen=True)
class _Finished:
    key: Hashable


@dataclass(frozen=True)
class _Crashed:
    key: Hashable
    error: str


Reported = Union[EngineEvent, _Finished, _Crashed]  # what a stream's thread puts on its run's queue


class RemoteDecoder:
    """The local Decoder's interface over HTTP: each live request streams in its own thread."""

    def __init__(self, model: RemoteModel, n_seq: int, seq_room: int):
        self.model = model
        self.n_seq = n_seq
        self.seq_room = seq_room
        self.stats = RemoteStats()
        self._live: dict[Hashable, _Live] = {}
        self._events: queue.Queue[Reported] = queue.Queue()
        self._next_url = 0
        self._down: dict[str, float] = {}  # replica → until when it is skipped
        self._in_flight: dict[str, int] = {}  # replica → sequences running there
        self._warned = False
        self._lock = threading.Lock()

    def run(self, requests: Iterable[Pending], parallel: int | None = None,
            admit: Callable[[], bool] | None = None) -> Iterator[EngineEvent]:
        limit = min(parallel or self.n_seq, self.n_seq)
        cap = self.model.endpoint.parallel
        if cap:
            limit = min(limit, cap * len(self.model.endpoint.urls))
        self._events = queue.Queue()  # this run's: streams cancelled by an earlier run report elsewhere
        pending = iter(requests)
        exhausted = False
        admitted: list[_Live] = []
        try:
            while True:
                waiting = False
                while not exhausted and len(self._live) < limit and (admit is None or admit()):
                    request = next(pending, None)
                    if request is None:
                        exhausted = True
                        break
                    if isinstance(request, Wait):
                        waiting = True
                        break
                    admitted.append(self._admit(request))
                self._launch(admitted)
                admitted = []
                if not self._live:
                    if exhausted or waiting:
                        return
                    continue
                try:
                    item = self._events.get(timeout=0.05 if waiting else None)
                except queue.Empty:
                    continue
                if isinstance(item, _Finished):
                    self._release(item.key)
                    continue
                if isinstance(item, _Crashed):
                    self._release(item.key)
                    yield SequenceFailed(item.key, item.error)
                    continue
                yield item
        finally:
            for live in self._live.values():  # interrupted: stop every stream, wait for none
                live.cancelled = live.cancelled or "cancelled"
            self._live.clear()

    def cancel(self, key: Hashable, reason: FinishReason = "stopped_early") -> None:
        live = self._live.get(key)
        if live is not None:
            live.cancelled = reason

    def close(self) -> None:
        self.model.close()

    # -- one sequence ----------------------------------------------------------------------
    def _admit(self, request: Request) -> _Live:
        live = _Live(request, self._events, self._url(free=True))
        with self._lock:
            self._in_flight[live.home] = self._in_flight.get(live.home, 0) + 1
        self._live[request.key] = live
        self.stats.max_step_sequences = max(self.stats.max_step_sequences, len(self._live))
        return live

    def _launch(self, lives: list[_Live]) -> None:
        """Start what was admitted: the samples of one Best-of-N group share one request with `n` for
        their first part where the server takes `n` (the prompt is evaluated once); the rest alone."""
        groups: dict[Hashable, list[_Live]] = {}
        for live in lives:
            if live.request.group is not None and self.model.takes_n:
                groups.setdefault(live.request.group, []).append(live)
            else:
                _spawn(self._work, live)
        for members in groups.values():
            if len(members) == 1:
                _spawn(self._work, members[0])
            else:
                _spawn(self._work_group, members)

    def _release(self, key: Hashable) -> None:
        live = self._live.pop(key, None)
        if live is not None:
            with self._lock:
                self._in_flight[live.home] = max(0, self._in_flight.get(live.home, 0) - 1)

    def _url(self, free: bool = False) -> str:
        """The next replica in turn, skipping one that failed in the last few seconds (while another is
        up) and, for a new sequence (`free`), one already running its `parallel` sequences."""
        urls = self.model.endpoint.urls
        cap = self.model.endpoint.parallel
        now = time.monotonic()
        with self._lock:
            for _ in range(len(urls)):
                self._next_url = (self._next_url + 1) % len(urls)
                url = urls[self._next_url]
                if self._down.get(url, 0.0) <= now and not (free and cap and self._in_flight.get(url, 0) >= cap):
                    return url
            return min(urls, key=lambda u: self._down.get(u, 0.0))  # all failed lately: the earliest back

    def _mark_down(self, url: str) -> None:
        if len(self.model.endpoint.urls) > 1:
            with self._lock:
                self._down[url] = time.monotonic() + DOWN_S

    def _work_group(self, members: list[_Live]) -> None:
        """One streamed request with n = the group's size for the samples' first part; then each sample
        goes on alone from where it is (a server that ignored `n` streamed only sample 0: the others
        simply start alone)."""
        states = [_State(time.perf_counter(), self.model.exact_tokens) for _ in members]
        ids = self._prompt(members[0])  # one prompt: asked once (where `fit` left it out)
        for live in members:
            live.prompt = live.prompt or ids
            live.events.put(Started(live.request.key, len(ids), 0))
        try:
            body = self._body(members[0], states[0])
            body.update(n=len(members), logprobs=1)  # scores and, from llama-server, token ids
            self.stats.grouped_requests += 1
            stream = self._stream(body, members[0].home, native=False)
            for url, piece, logprob, reason, token_id, index in stream:
                if index is None or not 0 <= index < len(members):
                    continue
                live, state = members[index], states[index]
                if state.finish or state.restart or live.cancelled:
                    continue  # this sample goes on alone after the shared request
                state.replica = url
                for event in self._feed(live, state, url, piece, logprob, reason, token_id):
                    live.events.put(event)
            stream.close()
        except Exception as exc:  # never let the group's thread die silently: its samples would never end
            error = str(exc) if isinstance(exc, ThinkError) else f"remote request failed: {exc}"
            for live in members:
                live.events.put(_Crashed(live.request.key, error))
            return
        for live, state in zip(members, states, strict=True):
            state.attempt = 1  # a sample that got nothing (a server that ignored `n`) simply starts alone
            _spawn(self._work, live, state)

    def _work(self, live: _Live, state: _State | None = None) -> None:
        request = live.request
        try:
            for event in self._sequence(live, state):
                live.events.put(event)
        except ThinkError as exc:
            live.events.put(_Crashed(request.key, str(exc)))
            return
        except Exception as exc:  # never let a worker die silently
            live.events.put(_Crashed(request.key, f"remote request failed: {exc}"))
            return
        live.events.put(_Finished(request.key))

    def _body(self, live: _Live, state: _State) -> Json:
        """The next request of a sequence: what its policy still allows, from where it stands."""
        request, policy = live.request, live.request.policy
        # While thinking, ask for exactly what the cap leaves: the server stops there by itself, so no
        # token is generated past it while our disconnect travels (an early close then needs one more
        # request for the answer). While answering: what the answer cap leaves.
        if policy.parser.phase == THINKING and policy.spec.thinking:
            max_tokens = max(policy.spec.max_thinking - policy.thinking_total, 1)
        else:
            max_tokens = max(policy.spec.max_answer - policy.answer_tokens, 1)
        sampling = request.sampling
        prompt: str | list[int] = ([*self._prompt(live), *state.tokens] if state.exact
                                   else request.text + "".join(state.pieces))
        body: Json = {
            "model": self.model.endpoint.model, "prompt": prompt, "max_tokens": max_tokens,
            "stream": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
            "seed": sampling.seed + state.attempt,
        }
        if state.exact:  # llama-server's own /completion: token ids in and out, logprobs only when scored
            body.update(n_predict=max_tokens, return_tokens=True, cache_prompt=True)
            if request.score_tokens:
                body["n_probs"] = 1
        body.update(_sampling_fields(sampling))
        if request.score_tokens and not state.exact:
            body["logprobs"] = 1
        return body

    def _feed(self, live: _Live, state: _State, url: str, piece: str, logprob: float | None, reason: str | None,
              token_id: int | None) -> list[EngineEvent]:
        """One streamed chunk through the sequence's policy: its events; `state` learns whether the
        sequence finished or must be asked again with the text the policy inserted."""
        request, policy = live.request, live.request.policy
        events: list[EngineEvent] = []
        steps = []
        if piece:
            state.got_any = True
            if state.first_token is None:
                state.first_token = time.perf_counter()
            self.stats.tokens_generated += 1
            self.stats.per_endpoint[url] = self.stats.per_endpoint.get(url, 0) + 1
            prob = _probability(logprob)
            if request.score_tokens and logprob is None and not self._warned:
                self._warned = True
                log.warning("%s sends no logprobs: the confidence stop and the probe fall back to the cap", url)
            if token_id is None:
                state.exact = False  # this server does not say: text from here on
            steps.append((piece, policy.decide(PIECE if token_id is None else token_id, piece, prob)))
        if reason == "stop" and not (steps and (steps[-1][1].finish or steps[-1][1].forced_text)):
            steps.append(("", policy.decide(REMOTE_END, "", None)))  # the model ended its turn
        for text, step in steps:
            if step.rollback:
                del state.pieces[-step.rollback:]
                del state.tokens[-step.rollback:]
            if step.accepted:
                state.pieces.append(text)
            state.tokens.extend(step.tokens)  # the sampled token (if kept) and what the policy forced
            events.extend(_events(request, step))
            if step.finish:
                state.finish = step.finish
                break
            if step.forced_text:
                state.pieces.append(step.forced_text)
                state.restart = True
                break
        return events

    def _sequence(self, live: _Live, state: _State | None = None) -> Iterator[EngineEvent]:
        request = live.request
        policy = request.policy
        key = request.key
        if state is None:
            kept = self._server_keeps(request)
            whole = kept and _whole(request)  # no one reads Started's count as it comes: the reply's usage has it
            count = len(request.prompt) if whole else len(self._prompt(live))
            state = _State(time.perf_counter(), self.model.exact_tokens)
            yield Started(key, count, 0)
            if kept:
                yield from self._kept(live, state)
        while state.finish is None:
            if live.cancelled:
                state.finish = live.cancelled
                break
            body = self._body(live, state)
            state.restart = state.got_any = False
            # back to the replica that holds this sequence so far (its cache); the server picks the slot
            stream = self._stream(body, state.replica or live.home, native=state.exact)
            for url, piece, logprob, reason, token_id, _index in stream:
                state.replica = url
                if live.cancelled:
                    state.finish = live.cancelled
                    break
                yield from self._feed(live, state, url, piece, logprob, reason, token_id)
                if state.finish or state.restart or reason == "length":
                    break  # "length": our max_tokens; the loop asks again for what the policy still allows
            stream.close()  # now, on this thread (a stream left to the garbage collector closes anywhere)
            if state.finish is None and not state.restart and not state.got_any:
                state.finish = "length"  # the server returned nothing more: do not ask forever
            state.attempt += 1
        flushed = policy.parser.flush()
        if request.streamed:
            yield from chunk_events(key, policy, flushed)
        prompt = live.prompt_count or len(self._prompt(live))
        usage = Usage(prompt, 0, policy.thinking_tokens, policy.answer_tokens, policy.forced_tokens)
        finish = state.finish
        yield SequenceDone(key, finish, policy.parser.thinking, policy.parser.answer, usage, policy.trace_confidence,
                           state.first_token - state.started if state.first_token else None,
                           time.perf_counter() - state.started, tuple(policy.events), trace=policy.token_trace())

    # -- a budget the server keeps ------------------------------------------------------------
    def _server_keeps(self, request: Request) -> bool:
        """Whether this sequence's cap can be the server's: it keeps budgets, renders this conversation as we
        do, and the plan needs nothing the server cannot do for us ("Wait" before a minimum, the probe)."""
        spec = request.policy.spec
        return (request.messages is not None and self.model.server_budget is not None and spec.thinking
                and spec.min_thinking == 0 and spec.max_thinking > 0 and not request.policy.probing)

    def _chat_body(self, live: _Live, policy: SequencePolicy) -> Json:
        """One chat request for thinking, budget message and answer: the cap is the server's field."""
        request, spec, sampling = live.request, policy.spec, live.request.sampling
        kind = self.model.server_budget
        message_room = len(policy.forced.budget[0]) + 8
        body: Json = {
            "model": self.model.endpoint.model, "messages": [dict(m) for m in request.messages or ()],
            "stream": True, "max_tokens": spec.max_thinking + message_room + spec.max_answer,
            "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
        }
        if kind == "llama-server":
            body.update(reasoning_budget_tokens=spec.max_thinking, reasoning_budget_message=policy.forced.message)
            if policy.server_ends:
                body["reasoning_control"] = True
        elif kind == "vllm":
            body["thinking_token_budget"] = spec.max_thinking
        elif kind == "sglang":
            body["custom_params"] = {"thinking_budget": spec.max_thinking}
        body.update(_sampling_fields(sampling))
        if request.score_tokens:
            body["logprobs"] = True
        return body

    def _kept(self, live: _Live, state: _State) -> Iterator[EngineEvent]:
        """The sequence's first request, its cap kept by the server: /v1/chat/completions with the server's
        budget field (and, on llama-server, `reasoning_end` for an early stop), so a capped item is one
        request. Verified, not trusted: a server that streams no separate thinking, or thinks on past its
        cap, is told once (a warning) and the budget is kept here again — this item goes on the usual way."""
        policy = live.request.policy
        policy.server_cap = True
        policy.server_ends = self.model.server_budget == "llama-server" and policy.spec.confidence > 0
        state.exact = False  # a chat stream names no token ids: a continuation goes as text
        try:
            if _whole(live.request):
                yield from self._kept_whole(live, state, policy)
            else:
                yield from self._kept_stream(live, state, policy)
        finally:
            policy.server_cap = policy.server_ends = False
            state.attempt += 1
        if policy.awaiting is not None and policy.parser.phase == THINKING and not (state.finish or state.restart):
            yield from self._insert(live, state, policy.force_budget())  # cut before its message: ours, then

    def _kept_stream(self, live: _Live, state: _State, policy: SequencePolicy) -> Iterator[EngineEvent]:
        message = _squeeze(policy.forced.message)
        held: list[tuple[str, float | None]] = []  # what may be the server's budget message
        thought = asked = False
        ident: str | None = None
        stream = self._request(self._chat_body(live, policy), live.home, "/chat/completions", _parse_chat)
        try:
            for url, chunk in stream:
                state.replica, ident = url, ident or chunk.ident
                if live.cancelled:
                    state.finish = live.cancelled
                    return
                if chunk.kind == "reasoning":
                    thought = True
                    if policy.awaiting is None:
                        yield from self._feed(live, state, url, chunk.text, chunk.logprob, None, None)
                    else:
                        held.append((chunk.text, chunk.logprob))
                        if message.startswith(_squeeze("".join(text for text, _ in held))):
                            continue
                        if policy.awaiting == "cap":  # past its cap without the message: it ignored the budget
                            self._fell_short(url, "thinks on past the budget it was given")
                            yield from self._insert(live, state, policy.force_budget())
                            return
                        mine, held = held, []  # the end asked for is not here yet: these were the model's
                        for text, logprob in mine:
                            yield from self._feed(live, state, url, text, logprob, None, None)
                    if policy.awaiting == "confidence" and not asked and ident:
                        asked = True
                        self._reasoning_end(url, ident)
                elif chunk.kind == "content":
                    if not thought:  # no thinking apart: the server does not split it (nothing was fed yet)
                        self._start_over(url, state, "does not stream the thinking apart (reasoning_content)")
                        return
                    if policy.parser.phase == THINKING:
                        if policy.awaiting == "confidence" and not held:
                            policy.awaiting = None  # it closed by itself before the end asked for came
                        if policy.awaiting is not None:  # the server's message (vLLM's cap inserts none)
                            yield from self._insert(live, state, policy.server_forced(
                                "".join(text for text, _ in held), len(held)), restart=False)
                            held = []
                        else:  # the model closed its thinking itself
                            yield from self._feed(live, state, url, policy.parser.close_tag, None, None, None)
                    yield from self._feed(live, state, url, chunk.text, chunk.logprob, None, None)
                if state.finish or state.restart:
                    return
                if chunk.reason == "stop":
                    yield from self._feed(live, state, url, "", None, "stop", None)
                if chunk.reason is not None:
                    return  # "length" or the end: the usual loop goes on from here if need be
        finally:
            stream.close()

    def _kept_whole(self, live: _Live, state: _State, policy: SequencePolicy) -> Iterator[EngineEvent]:
        """No rule reads this item token by token and no one watches it come (see `_whole`): one chat request,
        not streamed, parsed once. Verified as the stream is: the server's budget message ending the thinking
        says it kept the cap; thinking longer than the cap without it is a server that ignored the field
        (told once; the item starts again the usual way, nothing of it fed yet)."""
        body = self._chat_body(live, policy)
        # the logprobs name each token (the parts are counted from them); one alternative each, not twenty:
        # llama-server sends 20 by default, and the reply is then 10 times the JSON to parse
        body.update(stream=False, logprobs=True, top_logprobs=1)
        found = list(self._request(body, live.home, "/chat/completions", _parse_whole, whole=True))
        if not found:
            raise ThinkError(f"the server at {live.home} sent no chat completion")
        url, reply = found[-1]
        state.replica, state.got_any = url, True
        live.prompt_count = reply.prompt_tokens
        self.stats.tokens_generated += reply.tokens
        self.stats.per_endpoint[url] = self.stats.per_endpoint.get(url, 0) + reply.tokens
        if live.cancelled:
            state.finish = live.cancelled
            return
        own, message = _split_message(reply.thinking, policy.forced.message)
        if reply.answer and not reply.thinking:
            self._start_over(url, state, "does not return the thinking apart (reasoning_content)")
            return
        spec = policy.spec
        counted = _token_counts(reply.pieces, own, message, reply.answer)
        if counted is None:  # a server that names no tokens: its tokenizer counts them
            counted = len(self.model.tokenize(reply.thinking)), len(self.model.tokenize(reply.answer))
        thought, answer_tokens = counted  # thought: every token of the thinking, the server's message too
        own_tokens = spec.max_thinking if message else thought  # capped: the cap the server kept, as a stream counts
        if not message and own_tokens > spec.max_thinking + 1:  # (+1: a blank that ends the thinking)
            self._start_over(url, state, "thinks on past the budget it was given")
            return
        message_tokens = max(thought - own_tokens, 1)
        state.pieces.append(own)
        yield from _events(live.request, policy.accept_run(own, own_tokens))
        if message:
            policy.awaiting = "cap"
            yield from self._insert(live, state, policy.server_forced(message, message_tokens), restart=False)
        elif reply.answer or reply.reason == "stop":  # the model closed its thinking itself
            yield from self._feed(live, state, url, policy.parser.close_tag, None, None, None)
        if reply.answer:
            state.pieces.append(reply.answer)
            yield from _events(live.request, policy.accept_run(reply.answer, answer_tokens))
            if policy.answer_tokens >= spec.max_answer:
                state.finish = "length"
        if state.finish is None and reply.reason == "stop":
            yield from self._feed(live, state, url, "", None, "stop", None)
        # otherwise ("length" short of the caps): the usual loop asks again for what the policy still allows

    def _insert(self, live: _Live, state: _State, step: Step, restart: bool = True) -> Iterator[EngineEvent]:
        """A policy step that put text in outside of `_feed` (the server's budget message, or ours after all)."""
        state.pieces.append(step.forced_text)
        state.restart = restart
        yield from _events(live.request, step)

    def _reasoning_end(self, url: str, ident: str) -> None:
        """Tell llama-server to end this completion's thinking now (its budget message goes in)."""
        try:
            self.stats.controls += 1
            status, _ = self.model.call(f"{url}/chat/completions/control", {"id": ident, "action": "reasoning_end"})
            if status >= 400:
                log.warning("%s refused reasoning_end (%d): the thinking goes on to its cap", url, status)
        except Exception as exc:  # the cap still holds: the item is right, only later
            log.warning("%s: reasoning_end failed (%s): the thinking goes on to its cap", url, type(exc).__name__)

    def _start_over(self, url: str, state: _State, what: str) -> None:
        """The server fell short before any of this item was fed: told once, and the item starts again the
        usual way (the client keeps its budget; as ids where the server takes them)."""
        self._fell_short(url, what)
        state.exact, state.restart = self.model.exact_tokens, True

    def _prompt(self, live: _Live) -> list[int]:
        """The prompt's ids: `fit` left them out where its bytes prove it fits (a server-kept reply sends the
        conversation); a request that sends ids, or a count no server gave, asks for them here, once, on this
        sequence's own thread."""
        if live.prompt is None:
            request = live.request
            live.prompt = request.prompt or (self.model.prompt_tokens(request.text) if request.text else [])
        return live.prompt

    def _fell_short(self, url: str, what: str) -> None:
        """A server that does not keep the budget after all: said once; this client keeps it from now on."""
        if self.model.server_budget is not None:
            self.model.server_budget = None
            log.warning("%s %s: thinking budgets are kept by think instead (a second request per capped item)",
                        url, what)

    def _stream(self, body: Json, replica: str, native: bool = False
                ) -> Generator[tuple[str, str, float | None, str | None, int | None, int | None], None, None]:
        """(replica, text, logprob, finish_reason, token id, choice index) per streamed chunk of a text
        completion (llama-server's own /completion where `native`)."""
        target = "/completion" if native else "/completions"
        for url, chunk in self._request(body, replica, target, _parse_native if native else _parse_event):
            yield (url, *chunk)

    def _request(self, body: Json, replica: str, target: str, parse: Callable[[str], T | None], whole: bool = False
                 ) -> Generator[tuple[str, T], None, None]:
        """(replica, parsed chunk) per streamed line, from `replica` first (`target`: a path under its base
        URL; /completion under its root); `whole`: one reply, not streamed, parsed at once. Connection
        errors, timeouts, 429 and 5xx are retried with backoff, on the next replica when there are several;
        a stream that breaks after some text ends here, and the caller continues from what it has."""
        import httpx

        timeouts = 0
        # a whole reply is silent until it is done: its read timeout allows 10 tokens a second at the least
        timeout = max(self.model.endpoint.timeout, _positive_int(body.get("max_tokens")) / 10) if whole else None
        for attempt in range(RETRIES + 1):
            self.stats.requests += 1
            url = replica if attempt == 0 else self._url()
            got_text = left = False
            ident = id(body) + attempt
            if not whole:  # a whole reply is silent by design: no "waiting for the server" line
                self.model.waiting.start(ident, url)
            try:
                address = f"{_root(url)}{target}" if target == "/completion" else f"{url}{target}"
                with self.model.open(address, body, timeout) as response:
                    if response.status_code in (401, 403):
                        raise ThinkError(f"the server at {url} refused the API key ({response.status_code})")
                    if response.status_code == 404:
                        raise ThinkError(f"the server at {url} has no model '{body['model']}' (404)")
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _Retry(f"{url} answered {response.status_code}")
                    if response.status_code >= 400:
                        detail = response.read().decode("utf-8", "replace")[:200]
                        raise ThinkError(f"the server at {url} refused the request ({response.status_code}): {detail}")
                    lines = [response.read().decode("utf-8", "replace")] if whole else response.iter_lines()
                    for line in lines:
                        self.model.waiting.heard(ident)
                        chunk = parse(line)
                        if chunk is not None:
                            got_text = got_text or bool(_text_of(chunk))
                            try:
                                yield url, chunk
                            except GeneratorExit:
                                left = True  # the caller had what it needed and closed the stream
                                raise
                    return
            except (httpx.TransportError, _Retry) as exc:
                if left:
                    return  # an error while closing a stream we left is not the replica's fault
                self._mark_down(url)
                if got_text:
                    return  # continued by the caller from the text it has
                if isinstance(exc, httpx.TimeoutException):
                    timeouts += 1  # a server that accepts and stays silent: once more, not four times
                    if timeouts > 1 or attempt == RETRIES:
                        raise ThinkError(f"the server at {url} sent nothing for {self.model.endpoint.timeout:g} s "
                                         f"({timeouts} tries); raise its timeout (models.yaml timeout:, "
                                         "?timeout=S in the URL, THINK_REMOTE_TIMEOUT)") from None
                if attempt == RETRIES:
                    raise ThinkError(f"the server at {url} failed {RETRIES + 1} times ({type(exc).__name__}: "
                                     f"{str(exc)[:120]})") from None
                self.stats.retries += 1
                time.sleep(0.25 * 2**attempt)
            finally:
                self.model.waiting.heard(ident)


class _Retry(Exception):
    pass


def _spawn(target: Callable[..., None], *args: object) -> None:
    threading.Thread(target=target, args=args, daemon=True, name="remote").start()


# text, logprob, finish reason, token id, choice index (n > 1)
Chunk = tuple[str, float | None, str | None, int | None, int | None]


def _parse_native(line: str) -> Chunk | None:
    """A chunk of llama-server's own /completion stream (with return_tokens, maybe n_probs)."""
    if not line.startswith("data:"):
        return None
    try:
        data = loads(line[5:].strip())
    except json.JSONDecodeError:
        raise _Retry(f"the server sent something that is not JSON: {line[5:45]!r}") from None
    if not isinstance(data, dict):
        raise _Retry(f"the server sent a chunk that is not an object: {line[5:45]!r}")
    ids = _token_ids(data.get("tokens") or []) or []
    logprob: float | None = None
    probabilities = data.get("completion_probabilities")
    if isinstance(probabilities, list) and probabilities and isinstance(probabilities[0], dict):
        logprob = _logprob(probabilities[0].get("logprob"))
    reason = None
    if data.get("stop"):
        reason = "length" if data.get("stop_type") == "limit" else "stop"
    content = data.get("content")
    return content if isinstance(content, str) else "", logprob, reason, (ids[0] if len(ids) == 1 else None), 0


def _logprob(value: object) -> float | None:
    """A logprob as the server sent it, if it is a finite number (never trusted beyond that)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _choice(line: str) -> tuple[Json, Json] | None:
    """An SSE line of an OpenAI-style stream as (chunk, its first choice); None for anything without one."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if not payload or payload == "[DONE]":
        return None
    try:
        data = loads(payload)
    except json.JSONDecodeError:
        raise _Retry(f"the server sent something that is not JSON: {payload[:40]!r}") from None
    if not isinstance(data, dict):
        raise _Retry(f"the server sent a chunk that is not an object: {payload[:40]!r}")
    if "error" in data and not data.get("choices"):
        error = data["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise _Retry(f"the server reported an error mid-stream: {str(message)[:120]}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    choice = choices[0]
    if not isinstance(choice, dict):
        raise _Retry(f"the server sent a choice that is not an object: {payload[:40]!r}")
    return data, choice


def _choice_logprob(choice: Json) -> tuple[float | None, int | None]:
    """The streamed token's logprob (and, from llama-server, its id), however the server shapes it."""
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict):
        values = logprobs.get("token_logprobs")
        content = logprobs.get("content")
        if isinstance(values, list) and values and values[0] is not None:
            return _logprob(values[0]), None
        if isinstance(content, list) and len(content) == 1 and isinstance(content[0], dict):
            token = content[0].get("id")
            return _logprob(content[0].get("logprob", 0.0)), token if isinstance(token, int) else None
    return None, None


def _parse_event(line: str) -> Chunk | None:
    found = _choice(line)
    if found is None:
        return None
    _, choice = found
    logprob, token = _choice_logprob(choice)
    index = choice.get("index", 0)
    text = choice.get("text")
    reason = choice.get("finish_reason")
    return (text if isinstance(text, str) else "", logprob, reason if isinstance(reason, str) else None, token,
            index if isinstance(index, int) and not isinstance(index, bool) else 0)


@dataclass(frozen=True)
class ChatChunk:
    """A streamed chat delta: thinking (`reasoning_content`, or vLLM's `reasoning`) or answer."""

    kind: str  # "reasoning", "content" or "" (a chunk with no text: the role, the finish)
    text: str
    logprob: float | None
    reason: str | None
    ident: str | None  # the completion's id (llama-server's reasoning_end names it)


def _parse_chat(line: str) -> ChatChunk | None:
    found = _choice(line)
    if found is None:
        return None
    data, choice = found
    delta = choice.get("delta")
    delta = delta if isinstance(delta, dict) else {}
    kind, text = "", ""
    for key, name in (("reasoning_content", "reasoning"), ("reasoning", "reasoning"), ("content", "content")):
        value = delta.get(key)
        if isinstance(value, str) and value:
            kind, text = name, value
            break
    reason = choice.get("finish_reason")
    ident = data.get("id")
    return ChatChunk(kind, text, _choice_logprob(choice)[0], reason if isinstance(reason, str) else None,
                     ident if isinstance(ident, str) else None)


@dataclass(frozen=True)
class WholeChat:
    """A chat completion read in one piece: its thinking (`reasoning_content` or `reasoning`), answer,
    finish reason and generated token count."""

    thinking: str
    answer: str
    reason: str | None
    tokens: int
    pieces: list[str] | None  # each generated token's text (from the logprobs), where the server names them
    prompt_tokens: int = 0  # as the server counted them (0: it did not say)


def _parse_whole(text: str) -> WholeChat | None:
    try:
        data = loads(text)
    except ValueError:
        return None
    choices = data.get("choices") if isinstance(data, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    if choice is None:
        return None
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    thinking = next((value for key in ("reasoning_content", "reasoning")
                     if isinstance(value := message.get(key), str) and value), "")
    answer = message.get("content")
    reason = choice.get("finish_reason")
    usage = data.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    logprobs = choice.get("logprobs")
    entries = logprobs.get("content") if isinstance(logprobs, dict) else None
    named = [entry.get("token") for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []
    pieces = [piece for piece in named if isinstance(piece, str)]
    return WholeChat(thinking, answer if isinstance(answer, str) else "", reason if isinstance(reason, str) else None,
                     tokens if isinstance(tokens, int) and tokens > 0 else 0,
                     pieces if pieces and len(pieces) == len(named) else None,
                     prompt if isinstance(prompt, int) and prompt > 0 else 0)


def _token_counts(pieces: list[str] | None, thinking: str, message: str, answer: str) -> tuple[int, int] | None:
    """(tokens of the thinking — the server's budget message after it included — and of the answer) in a reply's
    token texts, as a stream counts them: the thinking is every token up to its last character and the blanks
    after it, the answer the tokens that hold it at the end (the close tag and an end token are neither).
    None where the texts do not hold them (no pieces, characters split across tokens)."""
    if not pieces:
        return None
    full = "".join(pieces)
    ends = list(itertools.accumulate(map(len, pieces)))  # where each token's text ends in `full`
    done = 0
    for part in (thinking.strip(), message.strip()):
        at = full.find(part, done)
        if at < 0:
            return None
        if part:
            done = at + len(part)
    while done and done < len(full) and full[done].isspace():  # the blanks that end the thinking are its own
        done += 1
    thought = bisect.bisect_right(ends, done - 1) + 1 if done else 0
    answer = answer.strip()
    at = full.rfind(answer) if answer else len(full)
    if at < done:
        return None
    said = bisect.bisect_right(ends, at + len(answer) - 1) - bisect.bisect_right(ends, at) + 1 if answer else 0
    return thought, said


def _whole(request: Request) -> bool:
    """Whether a server-kept item may come in one piece: no one watches it come and no rule reads it token by
    token (a confidence stop, the loop breaker, trials, the probe, or the scores of a vote or a trace)."""
    spec = request.policy.spec
    return not (request.streamed or request.score_tokens or request.policy.probing or spec.confidence
                or spec.trial_confidence or spec.loop_tokens)


def _split_message(thinking: str, message: str) -> tuple[str, str]:
    """(the model's own thinking, the server's budget message at its end, or "" where there is none)."""
    wanted = len(_squeeze(message))
    if not wanted or not _squeeze(thinking).endswith(_squeeze(message)):
        return thinking, ""
    at, seen = len(thinking), 0
    while seen < wanted:  # back over the message's visible characters, then the blanks before it
        at -= 1
        seen += not thinking[at].isspace()
    while at > 0 and thinking[at - 1].isspace():
        at -= 1
    return thinking[:at], thinking[at:]


def _squeeze(text: str) -> str:
    """Text compared without its whitespace (a server may trim or re-space the budget message)."""
    return "".join(text.split())


def _text_of(chunk: object) -> str:
    if isinstance(chunk, ChatChunk):
        return chunk.text
    if isinstance(chunk, WholeChat):
        return chunk.thinking + chunk.answer
    return chunk[0] if isinstance(chunk, tuple) and chunk and isinstance(chunk[0], str) else ""


def _events(request: Request, step: Step) -> Iterator[EngineEvent]:
    """A step's events, and a progress heartbeat every 8 tokens (as the local decoder sends). Where no one
    reads the text as it comes (batch, eval), neither: the finished sequence carries its text and counts, and
    a token's events would only cross the queue to be dropped."""
    key, policy = request.key, request.policy
    yield from step_events(key, policy, step, text=request.streamed)
    if not request.streamed:
        return
    total = policy.thinking_total + policy.answer_tokens
    if total % 8 == 0 and step.accepted:
        yield Progress(key, policy.parser.phase, policy.thinking_total, policy.answer_tokens, policy.window_confidence)
