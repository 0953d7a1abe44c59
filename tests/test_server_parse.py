"""The request parser on any JSON at all (hypothesis): a 2xx plan or a 4xx error, never a 5xx."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thinkcli.frontends.serve.protocol import ApiError, Limits, parse_request

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ("messages", "prompt", "model", "reasoning_effort", "tier", "max_tokens", "max_completion_tokens",
          "max_thinking", "min_thinking", "samples", "temperature", "seed", "n", "stop", "stream", "stream_options",
          "probe")
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "developer", "robot"]) | JSON,
                                 "content": st.text(max_size=30) | JSON})
BODY = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6) | st.fixed_dictionaries(
    {"messages": st.lists(MESSAGE, min_size=1, max_size=3)},
    optional={name: JSON for name in FIELDS if name != "messages"})


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    from thinkcli.scheduler.runtime import Runtime

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("THINK_HOME", str(tmp_path_factory.mktemp("parse_home")))
        yield Runtime.create(log=False)


def _parse(body, runtime, chat: bool) -> None:
    try:
        parse_request(body, runtime, Limits(), chat)
    except ApiError as exc:
        assert 400 <= exc.status < 500, (exc.status, exc.message)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSON | BODY, chat=st.booleans())
def test_any_json_is_a_plan_or_a_4xx(runtime, body, chat):
    _parse(body, runtime, chat)


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": "x"}], "reasoning_effort": []},
    {"messages": [{"role": "user", "content": "x"}], "reasoning_effort": {}},
    {"messages": [{"role": "user", "content": "x"}], "tier": ["deep"]},
    {"messages": [{"role": "user", "content": "x"}], "seed": -1},
    {"messages": [{"role": "user", "content": "x"}], "seed": 2**32 - 1},
    {"messages": [{"role": "user", "content": "x"}], "temperature": float("nan")},
    {"messages": [{"role": ["user"], "content": "x"}]},
], ids=["effort-list", "effort-dict", "tier-list", "seed-negative", "seed-random", "nan", "role-list"])
def test_the_bodies_that_were_500s_are_4xx(runtime, body):
    with pytest.raises(ApiError) as refused:
        parse_request(body, runtime, Limits(), chat=True)
    assert 400 <= refused.value.status < 500
