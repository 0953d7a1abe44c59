"""engine/fastjson.py: orjson's speed without its strictness costing a stream (Python servers write NaN)."""

from __future__ import annotations

import json

import pytest

from thinkcli.engine import fastjson


def test_strict_json_python_style_json_and_garbage():
    chunk = '{"content":"1","tokens":[266],"completion_probabilities":[{"logprob":-3.5e-07}]}'
    assert fastjson.loads(chunk) == json.loads(chunk)
    assert fastjson.loads(chunk.encode()) == json.loads(chunk)
    values = fastjson.loads('{"token_logprobs": [NaN, -Infinity, 1000]}')["token_logprobs"]
    assert values[0] != values[0] and values[1] == float("-inf") and values[2] == 1000
    with pytest.raises(json.JSONDecodeError):  # what the remote engine's parsers catch and retry
        fastjson.loads('{"content": "1"')


def test_the_standard_library_alone_where_orjson_is_missing(monkeypatch):
    monkeypatch.setattr(fastjson, "orjson", None)
    assert fastjson.loads('{"a": [1, NaN]}')["a"][0] == 1
    with pytest.raises(json.JSONDecodeError):
        fastjson.loads("data: {")
