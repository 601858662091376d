import random
import re

import pytest

from r1lab.rewards.accuracy import AccuracyReward
from r1lab.rewards.format import FormatReward
from r1lab.judging.selfcheck import self_verifies
from r1lab.toy.corpus import LETTERS, SELF_CHECK, ToyCorpus, column_trace, copied_trace


def test_column_trace_computes_the_sum_right_to_left_with_carries():
    assert column_trace(61234, 27988, 5) == "4+8+0=12,3+8+1=12,2+9+1=12,1+7+1=09,6+2+0=08"
    assert column_trace(99, 1, 2) == "9+1+0=10,9+0+1=10"


def test_second_language_writes_digits_as_letters_in_fewer_tokens():
    letters = column_trace(61234, 27988, 5, second_language=True)
    assert letters.split(",")[0] == "eia=bc"
    assert len(letters) < len(column_trace(61234, 27988, 5))
    mixed = column_trace(61234, 27988, 5, switch_at=2)
    assert mixed.split(",")[:3] == ["4+8+0=12", "3+8+1=12", "cjb=bc"]


def test_the_control_corpus_verifies_by_copying_its_guess():
    corpus = ToyCorpus(guess_style="copy", textbook_share=1.0)
    example = corpus.completion(61234, 27988, 5, verify=True, rng=random.Random(0))
    assert example == (f"89222 {SELF_CHECK} 2=2,2=2,2=2,9=9,8=8 so 89222</think><answer>89222</answer>")
    assert copied_trace(105) == "5=5,0=0,1=1"


def test_examples_are_deterministic_and_well_formed():
    corpus = ToyCorpus()
    first = [corpus.example(random.Random(5)) for _ in range(3)]
    assert len({(e.prompt, e.completion) for e in first}) == 1
    rng = random.Random(1)
    examples = [corpus.example(rng) for _ in range(3000)]
    golds = [str(eval(re.search(r"(\d+\+\d+)", e.prompt).group(1))) for e in examples]  # noqa: S307 - digits only
    prompts = [e.prompt for e in examples]
    completions = [e.completion for e in examples]
    assert AccuracyReward()(prompts, completions, answer=golds) == [1.0] * len(examples)
    assert FormatReward()(prompts, completions) == [1.0] * len(examples)


def test_verification_is_rare_in_qa_and_always_there_in_textbooks():
    corpus = ToyCorpus(qa_verify_rate=0.08, textbook_share=0.5)
    rng = random.Random(2)
    examples = [corpus.example(rng) for _ in range(6000)]
    qa = [e for e in examples if e.prompt.startswith("User:")]
    textbook = [e for e in examples if e.prompt.startswith("Textbook:")]
    assert 0.45 < len(textbook) / len(examples) < 0.55
    assert all(SELF_CHECK in e.completion for e in textbook)
    assert 0.06 < sum(self_verifies(e.completion) for e in qa) / len(qa) < 0.10
    # Most first guesses are wrong: the trace, not the guess, carries the answer.
    verifying = [e for e in textbook if int(e.completion.split(" ")[0]) != int(e.completion.split("<answer>")[1].split("<")[0])]
    assert len(verifying) / len(textbook) > 0.7
    # The second language appears, rarely.
    with_letters = [e for e in textbook if any(f"={a}{b}" in e.completion for a in LETTERS for b in LETTERS)]
    assert 0.05 < len(with_letters) / len(textbook) < 0.16


def test_bad_corpus_settings_are_errors():
    with pytest.raises(ValueError, match="guess_style must be one of"):
        ToyCorpus(guess_style="psychic")
