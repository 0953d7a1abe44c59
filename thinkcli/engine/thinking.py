"""Split a model's text stream into thinking and answer, per family tags.

Tags may span several tokens (gpt-oss channels, `</think>` on a model that lacks it as one
token), so the parser works on text and holds back any tail that could still become a tag or a
stop string. Held-back text can be dropped: that is how an early close tag is replaced by "Wait".
"""

from __future__ import annotations

from dataclasses import dataclass

THINKING = "thinking"
ANSWER = "answer"
DONE = "done"


@dataclass
class Chunk:
    kind: str  # THINKING | ANSWER
    text: str


def _holdback_len(text: str, patterns: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of any pattern. Runs for every
    token: a suffix can only start where the pattern's first character sits in text's last
    len(pattern) - 1 characters, so only those places are tried (not every length, each a compare)."""
    best = 0
    end = len(text)
    for pattern in patterns:
        if not pattern:
            continue
        at = text.find(pattern[0], max(end - len(pattern) + 1, 0))
        while at >= 0 and end - at > best:
            if pattern.startswith(text[at:]):
                best = end - at
                break
            at = text.find(pattern[0], at + 1)
    return best


class ThinkingParser:
    def __init__(self, close_tag: str, thinking: bool, stop: tuple[str, ...] = (), answer_prefix: str = ""):
        self.close_tag = close_tag
        self.answer_prefix = answer_prefix.strip()  # scaffolding ("Answer:") that is not the answer
        self.stop = tuple(s for s in stop if s)
        self.phase = THINKING if thinking else ANSWER
        self.pending = ""  # held back: may be the start of a tag or stop string
        self._answer_started = False
        self.thinking_text: list[str] = []
        self.answer_text: list[str] = []

    def would_close(self, piece: str) -> bool:
        """Would appending `piece` complete the close tag? (Asked before accepting a token.)"""
        return self.phase == THINKING and self.close_tag in self.pending + piece

    def drop_pending(self) -> str:
        dropped, self.pending = self.pending, ""
        return dropped

    def feed(self, piece: str) -> list[Chunk]:
        out: list[Chunk] = []
        text = self.pending + piece
        self.pending = ""
        if self.phase == THINKING:
            at = text.find(self.close_tag)
            if at < 0:
                keep = _holdback_len(text, (self.close_tag,))
                self._emit(out, THINKING, text[: len(text) - keep])
                self.pending = text[len(text) - keep:]
                return out
            self._emit(out, THINKING, text[:at])
            self.phase = ANSWER
            text = text[at + len(self.close_tag):]
        if self.phase == ANSWER:
            if not self._answer_started:
                text = text.lstrip()
                prefix = self.answer_prefix
                if prefix and len(text) < len(prefix) and prefix.startswith(text):
                    self.pending = text  # may still become the prefix
                    return out
                if prefix and text.startswith(prefix):
                    text = text[len(prefix):].lstrip()
                if not text:
                    return out
                self._answer_started = True
            hits = [(text.find(s), s) for s in self.stop if s in text]
            if hits:
                self._emit(out, ANSWER, text[: min(hits)[0]])
                self.phase = DONE
                return out
            keep = _holdback_len(text, self.stop)
            self._emit(out, ANSWER, text[: len(text) - keep])
            self.pending = text[len(text) - keep:]
        return out

    def flush(self) -> list[Chunk]:
        """End of generation: whatever was held back is plain text after all."""
        out: list[Chunk] = []
        text = self.pending.rstrip() if self.phase == ANSWER else self.pending
        if text and self.phase in (THINKING, ANSWER) and text != self.answer_prefix:
            self._emit(out, self.phase, text)
        self.pending = ""
        return out

    def _emit(self, out: list[Chunk], kind: str, text: str) -> None:
        if text:
            (self.thinking_text if kind == THINKING else self.answer_text).append(text)
            out.append(Chunk(kind, text))

    @property
    def thinking(self) -> str:
        return "".join(self.thinking_text).strip()

    @property
    def answer(self) -> str:
        return "".join(self.answer_text).strip()
