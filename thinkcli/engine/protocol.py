"""What both engines promise: the local llama.cpp decoder and the remote one over HTTP.

The scheduler drives a `SequenceDecoder` and asks a `ModelHandle` for templates and tokens; it
never knows which engine it has. `Request` (one sequence to generate) and `WAIT` ("nothing to
start now") are what a request source yields to either of them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Union

from .events import EngineEvent, FinishReason

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from .budget import SequencePolicy
    from .family import Sampling
    from .model import ModelInfo


class Wait:
    """Yielded by a request source instead of a Request: nothing to start now, ask again next step."""


WAIT = Wait()


@dataclass
class Request:
    key: Hashable
    prompt: list[int]
    policy: SequencePolicy
    sampling: Sampling
    score_tokens: bool = False  # read token probabilities off the logits (confidence)
    keep_cache: bool = False  # keep generated tokens cached after the end (chat)
    group: Hashable = None  # requests of one prompt (Best-of-N samples); None: the request alone
    text: str = ""  # the rendered prompt (a remote engine sends the text, not the ids)
    # the conversation, where a remote server renders exactly `text` from it (it may then keep the budget)
    messages: tuple[dict[str, str], ...] | None = None
    # someone reads the text as it comes (ask, chat, serve); False (batch, eval): only the finished
    # sequence matters, so a remote engine may take a reply in one piece where no rule reads it token by token
    streamed: bool = True


Pending = Union[Request, Wait]


class ModelHandle(Protocol):
    """A model as the engine sees it: a local GGUF or a served model."""

    key: str  # what the engine caches its decoders by: the file's path, or the server's URLs and model
    info: ModelInfo
    bos: int
    eos: int

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]: ...

    def prompt_tokens(self, text: str) -> list[int]: ...

    def prompt_bound(self, text: str) -> int | None:
        """At least as many tokens as the prompt has, where counting them costs a round trip (a server);
        None where counting is cheap (a local GGUF): `fit` then counts exactly."""
        ...

    def piece(self, token: int) -> bytes: ...

    def is_end(self, token: int) -> bool: ...

    def close(self) -> None: ...


class SequenceDecoder(Protocol):
    """Many sequences generated together; events out, tagged with each request's key."""

    n_seq: int
    seq_room: int

    @property
    def stats(self) -> DataclassInstance: ...

    def run(self, requests: Iterable[Pending], parallel: int | None = None,
            admit: Callable[[], bool] | None = None) -> Iterator[EngineEvent]: ...

    def cancel(self, key: Hashable, reason: FinishReason = "stopped_early") -> None: ...

    def close(self) -> None: ...
