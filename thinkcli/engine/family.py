"""How a model family thinks, and how it likes to be sampled: engine types the registry builds.

A family names its thinking tags, the text that ends a thinking budget, the word that extends a
too-short thinking ("Wait"), an instruction for models that only think when told to, and the
layout for base models with no chat template. `detect_family` guesses one from a GGUF's template.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sampling:
    """Sampler settings of one sequence: the family's recommendation, then the user's overrides."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Family:
    """How a model thinks: its tags, what is inserted when a budget ends, how it is prompted."""

    name: str
    think_open: str
    think_close: str
    budget_message: str = "\n\nI have to answer now.\n"
    wait_word: str = "Wait"
    thinking_instruction: str = ""  # told to models without native thinking (the prompted family)
    plain_template: bool = False  # base model: a plain question/answer layout instead of a chat template
    answer_prefix: str = ""
    stop: tuple[str, ...] = ()
    sampling: Sampling = field(default_factory=Sampling)

    def sampling_for(self, temperature: float | None, seed: int) -> Sampling:
        """The family's sampling with the user's temperature (if given) and the sequence's seed."""
        s = self.sampling
        return Sampling(s.temperature if temperature is None else temperature, s.top_p, s.top_k, s.min_p,
                        s.repeat_penalty, seed)


def detect_family(template: str | None) -> str:
    """Guess a family for a bare .gguf from its chat template."""
    if not template:
        return "plain"
    if "<|channel|>" in template:
        return "gpt-oss"
    if "<|channel>thought" in template:
        return "gemma4"
    if "<think>" in template:
        if "/no_think" in template:
            return "smollm3"
        if "<｜Assistant｜><think>" in template or template.rstrip().endswith("<think>\\n'}}"):
            return "deepseek-r1"
        return "qwen3"
    return "prompted"
