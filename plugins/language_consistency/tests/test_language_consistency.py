"""Language consistency on the toy world's two languages and on real sentences in several languages."""

import json

import pytest

from r1lab.rewards.base import RewardSet
from r1lab.toy.corpus import column_trace
from r1lab.judging.language import UnknownLanguageError, chain_of_thought
from r1lab_language_consistency.reward import LanguageConsistencyReward


def completion(trace: str) -> str:
    return f"123 Wait, let me verify: {trace} so 5212</think><answer>5212</answer>"


def test_toy_traces_score_the_share_of_digit_columns():
    reward = LanguageConsistencyReward(target="digits", identifier="toy")
    pure = completion(column_trace(4821, 391, 4))
    letters = completion(column_trace(4821, 391, 4, second_language=True))
    mixed = completion(column_trace(4821, 391, 4, switch_at=1))  # 1 digit column, then 3 letter columns
    direct = "5212</think><answer>5212</answer>"
    # The guess "123" and the conclusion "5212" are digit words too; "Wait, let me verify" is neutral.
    # pure: 6 digit words of 6; letters: 2 of 2 + 4 letter columns; mixed: 2 + 1 digit column of 6.
    assert reward([""] * 4, [pure, letters, mixed, direct]) == pytest.approx([1.0, 2 / 6, 3 / 6, 1.0])
    assert reward.identifier.word_languages(chain_of_thought(mixed)) == {"digits": 3, "letters": 3}


def test_metrics_report_consistency_and_the_mixed_rate():
    reward = LanguageConsistencyReward(target="digits", identifier="toy")
    values = [1.0, 0.5, 0.0, float("nan")]
    assert reward.metrics(values, [""] * 4) == pytest.approx({"lang/consistency": 0.5, "lang/mixed_rate": 1 / 3})


# Real sentences (written for this test, ordinary prose in each language).
SENTENCES = {
    "en": "First I add the two numbers in the ones column, and then I carry the one to the tens column.",
    "de": "Zuerst addiere ich die beiden Zahlen in der Einerspalte und übertrage dann die Eins in die Zehnerspalte.",
    "fr": "D'abord j'additionne les deux nombres de la colonne des unités, puis je reporte la retenue aux dizaines.",
    "zh": "首先我把个位上的两个数相加，然后把进位加到十位上。",
    "es": "Primero sumo los dos números de la columna de las unidades y luego llevo uno a las decenas.",
}


@pytest.mark.parametrize("language", sorted(SENTENCES))
def test_natural_sentences_are_identified(language):
    reward = LanguageConsistencyReward(target=language)
    assert reward.share(SENTENCES[language] + "</think>") == 1.0
    other = "en" if language != "en" else "de"
    assert LanguageConsistencyReward(target=other).share(SENTENCES[language]) == 0.0


def test_a_mixed_chain_of_thought_scores_its_english_word_share():
    reward = LanguageConsistencyReward(target="en")
    text = SENTENCES["en"] + "\n" + SENTENCES["zh"] + "</think><answer>42</answer>"
    english_words = len(SENTENCES["en"].replace(",", "").replace(".", "").split())  # 20
    chinese_words = sum(1 for ch in SENTENCES["zh"] if "\u4e00" <= ch <= "\u9fff")  # ideographs
    assert reward.share(text) == pytest.approx(english_words / (english_words + chinese_words))
    assert 0 < reward.share(text) < 1
    assert reward.share("12 + 30 = 42</think>") == 1.0  # nothing in any language: nothing mixed


def test_gsm8k_questions_are_english(shared_data):
    rows = [json.loads(line) for line in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()[:50]]
    reward = LanguageConsistencyReward(target="en")
    shares = [reward.share(row["question"]) for row in rows]
    assert sum(shares) / len(shares) > 0.95


def test_unknown_targets_and_identifiers_are_clear_errors():
    with pytest.raises(UnknownLanguageError, match="target language 'klingon' is unknown to the 'natural' identifier"):
        LanguageConsistencyReward(target="klingon")
    with pytest.raises(UnknownLanguageError, match="it knows digits, letters"):
        LanguageConsistencyReward(target="en", identifier="toy")
    with pytest.raises(ValueError, match="choose one of natural, toy"):
        LanguageConsistencyReward(identifier="fasttext")


def test_the_reward_set_reports_the_terms_metrics():
    rewards = RewardSet({"language_consistency": (LanguageConsistencyReward("digits", "toy"), 0.5)})
    completions = [completion(column_trace(12, 34, 2)), completion(column_trace(12, 34, 2, switch_at=1))]
    scored = rewards(["", ""], completions, {})
    assert rewards.term_metrics(completions, {}, scored) == pytest.approx(
        {"lang/consistency": (1.0 + 3 / 4) / 2, "lang/mixed_rate": 0.5})


def test_the_experiment_runs_and_logs_the_language_metrics(tmp_path):
    from r1lab.testing import FAST, read_scalars, run_cli

    run_cli(["+experiment=language_consistency", "trainer.max_steps=2", *FAST, f"hydra.run.dir={tmp_path}"],
            cwd=tmp_path)
    scalars = read_scalars(tmp_path)
    for tag in ("train/reward/language_consistency", "lang/consistency", "lang/mixed_rate"):
        assert len(scalars[tag]) == 2, tag
    assert all(0 <= value <= 1 for _, value in scalars["lang/consistency"])
