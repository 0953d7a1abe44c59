"""Text from outside (argv, stdin, files, HTTP bodies) made safe to tokenize, store and print.

Python lets two kinds of invalid text through: arguments with bytes that are not UTF-8 arrive as
surrogate escapes, and JSON may spell a lone surrogate (`"\\ud800"`). Neither can be encoded as
UTF-8, so either would fail far from where it came in (the tokenizer, a JSONL line, the run log).
Each is replaced by U+FFFD where text enters, and the tokenizer does the same as a last net.
"""

from __future__ import annotations

import re
from typing import Any

Json = dict[str, Any]
"""A JSON object from outside or on its way out (a record, a request body, a server's reply): its
values are whatever JSON holds, checked where they are read. The one place the code says Any for it."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` with every surrogate (escaped bytes, lone JSON escapes) replaced by U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


def clean_json(value: object) -> object:
    """A decoded JSON value with every string (keys too) cleaned."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text shown on a terminal with its control characters (escape sequences) made visible."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
