"""Exceptions the CLI maps to one-line messages.

Everything the user can cause raises a ThinkError; the CLI prints `error: <message>` and exits
with `exit_code`. Anything else is a bug and shows a traceback only with THINK_DEBUG=1.
"""

from __future__ import annotations


class ThinkError(Exception):
    """A failure the user can act on: printed as one line, exit 1."""

    exit_code = 1


class UsageError(ThinkError):
    """Bad flags or arguments: exit 2, like Click's own usage errors."""

    exit_code = 2


class ConfigError(ThinkError):
    """A models.yaml (shipped or user) that does not validate."""


class ModelError(ThinkError):
    """A model that cannot be found, downloaded or loaded."""


class ContextOverflowError(ThinkError):
    """A prompt (or conversation) longer than the model's context window."""


class GenerationError(ThinkError):
    """llama.cpp refused a decode step (no KV slot, bad batch)."""
