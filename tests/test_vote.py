from collections import Counter

from thinkcli.engine.vote import cannot_be_overtaken, extract_answer, tally


def test_extraction_priorities():
    assert extract_answer("so \\boxed{42} and later 7") == "42"
    assert extract_answer("Final answer: 3.50") == "3.50"
    assert extract_answer("The answer is Paris.") == "paris"
    assert extract_answer("we get 12 then 1,000") == "1000"
    assert extract_answer("Blue") == "blue"
    assert extract_answer("") is None
    assert extract_answer("a long rambling sentence with no numbers at all in it anywhere") is None


def test_tally_majority_and_confidence_tiebreak():
    assert tally([("4", 0.5), ("4", 0.5), ("5", 0.9)]).winner == "4"
    tie = tally([("4", 0.2), ("5", 0.9)])
    assert tie.winner == "5" and tie.method == "confidence-tiebreak"
    assert tally([(None, 0.9), (None, 0.1)]).winner is None


def test_adaptive_stop_rule():
    assert cannot_be_overtaken(Counter({"4": 3}), running=1)
    assert not cannot_be_overtaken(Counter({"4": 2, "5": 1}), running=1)
    assert not cannot_be_overtaken(Counter(), running=0)


def test_the_leader_is_safe_when_its_posterior_share_passes_the_threshold():
    from thinkcli.engine.vote import leader_is_safe, leader_share_above_half

    assert leader_share_above_half(2, 0) == 0.875 and leader_share_above_half(4, 0) == 0.96875
    assert not leader_is_safe(Counter({"5": 3})) and leader_is_safe(Counter({"5": 4}))
    assert not leader_is_safe(Counter({"5": 5, "6": 2})) and not leader_is_safe(Counter())
