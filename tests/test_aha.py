import pytest

from r1lab.callbacks.aha import AhaDetector
from r1lab.judging.selfcheck import self_verifies, self_verify_rate


@pytest.mark.parametrize("text", ["12 Wait, let me verify: 1+2", "hold on, that is wrong", "Actually it is 5",
                                  "let me re-check", "Let me recheck", "let me reconsider", "let me try again",
                                  "I made a mistake here", "On second thought, 7"])
def test_self_check_phrases_are_recognised(text):
    assert self_verifies(text)


@pytest.mark.parametrize("text", ["12+3=15", "awaiting the answer", "factually", "let me add", "mistaken"])
def test_ordinary_text_is_not_self_verification(text):
    assert not self_verifies(text)


def test_rate_is_the_share_of_verifying_completions():
    assert self_verify_rate(["wait", "no", "actually", "x"]) == 0.5


def run(detector, stream):
    fired = [detector.update(step, verify, length) for step, (verify, length) in enumerate(stream)]
    return [step for step in fired if step is not None]


def test_fires_once_when_both_conditions_hold_over_the_window():
    # Window 3; baseline length 20 (first three steps). Verify rate rises from step 3, length from step 5.
    stream = [(0.0, 20), (0.1, 20), (0.0, 20), (0.9, 20), (0.9, 20), (0.9, 30), (0.9, 30), (0.9, 30), (0.9, 40)]
    detector = AhaDetector(window=3, verify_threshold=0.5, length_ratio=1.3)
    # Step 5: verify mean (0.9*3)=0.9 ≥ 0.5 but length mean 23.3 < 26. Step 6: length 26.7 ≥ 26 → fires.
    assert run(detector, stream) == [6]
    assert detector.aha_step == 6


def test_does_not_fire_on_verification_without_longer_completions():
    stream = [(0.0, 20)] * 3 + [(1.0, 21)] * 10
    assert run(AhaDetector(window=3), stream) == []


def test_does_not_fire_on_longer_completions_without_verification():
    stream = [(0.0, 20)] * 3 + [(0.2, 60)] * 10
    assert run(AhaDetector(window=3), stream) == []


def test_thresholds_are_configurable():
    stream = [(0.0, 20)] * 3 + [(0.3, 25)] * 5
    assert run(AhaDetector(window=3, verify_threshold=0.25, length_ratio=1.2), stream) == [5]
    assert run(AhaDetector(window=3, verify_threshold=0.35, length_ratio=1.2), stream) == []


def test_state_round_trips():
    detector = AhaDetector(window=2)
    assert run(detector, [(0.0, 10), (0.0, 10), (0.2, 12)]) == []
    copy = AhaDetector(window=2)
    copy.load_state_dict(detector.state_dict())
    assert copy.update(3, 1.0, 20) == detector.update(3, 1.0, 20) == 3


def test_bad_thresholds_are_errors():
    with pytest.raises(ValueError, match="verify_threshold"):
        AhaDetector(verify_threshold=0)
