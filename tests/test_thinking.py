from thinkcli.engine.thinking import ANSWER, DONE, THINKING, ThinkingParser


def feed_all(parser: ThinkingParser, pieces: list[str]) -> list[tuple[str, str]]:
    out = []
    for piece in pieces:
        out += [(c.kind, c.text) for c in parser.feed(piece)]
    out += [(c.kind, c.text) for c in parser.flush()]
    return out


def test_splits_thinking_and_answer_across_a_tag_split_in_pieces():
    parser = ThinkingParser("</think>", thinking=True)
    chunks = feed_all(parser, ["I reason", " here</", "thi", "nk>\n\nThe answer", " is 4"])
    assert "".join(t for k, t in chunks if k == THINKING) == "I reason here"
    assert "".join(t for k, t in chunks if k == ANSWER) == "The answer is 4"
    assert parser.thinking == "I reason here" and parser.answer == "The answer is 4"


def test_partial_close_tag_is_held_back_then_released_when_it_is_not_a_tag():
    parser = ThinkingParser("</think>", thinking=True)
    assert [c.text for c in parser.feed("a </th")] == ["a "]
    assert parser.would_close("ink>")
    assert not parser.would_close("x")
    assert [c.text for c in parser.feed("x")] == ["</thx"]
    assert parser.phase == THINKING


def test_drop_pending_discards_a_partial_tag():
    parser = ThinkingParser("</think>", thinking=True)
    parser.feed("so </thi")
    assert parser.drop_pending() == "</thi"
    assert [c.text for c in parser.feed(" Wait")] == [" Wait"]


def test_without_thinking_everything_is_answer():
    parser = ThinkingParser("</think>", thinking=False)
    assert feed_all(parser, ["  Paris", "."]) == [(ANSWER, "Paris"), (ANSWER, ".")]


def test_stop_string_ends_the_answer():
    parser = ThinkingParser("</think>", thinking=False, stop=("\nQuestion:",))
    chunks = feed_all(parser, ["Paris\nQue", "stion: next"])
    assert "".join(t for _, t in chunks) == "Paris"
    assert parser.phase == DONE


def test_answer_prefix_is_scaffolding_not_answer():
    parser = ThinkingParser("</think>", thinking=True, answer_prefix="\nAnswer:")
    chunks = feed_all(parser, ["hmm", "</think>", "\nAns", "wer:", " 42"])
    assert parser.answer == "42"
    assert (ANSWER, "42") in chunks


def test_multi_token_channel_tags_of_gpt_oss():
    close = "<|end|><|start|>assistant<|channel|>final<|message|>"
    parser = ThinkingParser(close, thinking=True)
    feed_all(parser, ["think", "ing<|end|>", "<|start|>assistant", "<|channel|>final<|message|>", "Hi"])
    assert parser.thinking == "thinking" and parser.answer == "Hi"


def test_a_stop_string_is_held_back_until_it_is_certain_then_ends_the_answer():
    """A request's `stop` (think serve) is cut here, where the hold-back lives (it was a server-side filter)."""
    parser = ThinkingParser("</think>", thinking=False, stop=("END",))
    assert _texts(parser.feed("abcE")) == ["abc"] and parser.feed("N") == []
    assert parser.feed("D tail") == [] and parser.phase == "done" and parser.answer == "abc"
    free = ThinkingParser("</think>", thinking=False)
    assert _texts(free.feed("x")) == ["x"] and free.flush() == []
    hashes = ThinkingParser("</think>", thinking=False, stop=("##",))
    assert _texts(hashes.feed("one # two ## three")) == ["one # two "] and hashes.phase == "done"


def _texts(chunks):
    return [chunk.text for chunk in chunks]
