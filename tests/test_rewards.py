import json
import math

import pytest

from r1lab.rewards.accuracy import AccuracyReward
from r1lab.judging.answers import answers_match, extract_answer, last_boxed
from r1lab.rewards.base import RewardSet
from r1lab.rewards.format import FormatReward
from r1lab.tasks.jsonl import JsonlTask


def test_extraction_prefers_the_last_answer_tag_then_the_last_box():
    assert extract_answer("<think>maybe 3</think><answer>4</answer>") == "4"
    assert extract_answer("<answer>1</answer> wait <answer> 2 </answer>") == "2"
    assert extract_answer("so \\boxed{1} no, \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert extract_answer("<answer>\\boxed{7}</answer>") == "7"
    assert extract_answer("no answer here") is None
    assert extract_answer("<answer>unclosed") is None
    assert last_boxed("\\boxed {a{b}c}") == "a{b}c"
    assert last_boxed("\\boxed{unbalanced") is None


@pytest.mark.parametrize(("gold", "predicted", "same"), [
    ("0.5", "\\frac{1}{2}", True), ("1,000", "1000", True), ("18", "18.0", True), ("18", "19", False),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)", True), ("1,-2", "1, -2", True), ("x=5", "5", True),
])
def test_answers_match_under_math_verify(gold, predicted, same):
    assert answers_match(gold, predicted) is same


def test_the_plain_number_fast_path_agrees_with_math_verify():
    from math_verify import parse, verify

    pairs = [("18", "18"), ("18", "18.0"), ("18", "19"), ("-7", "-7"), ("-7", "7"), ("0.50", "0.5"), ("007", "7"),
             ("123456789", "123456789"), ("123456789", "123456788"), ("1.25", "1.250"), ("0", "-0"), ("3.1", "3.01")]
    for gold, predicted in pairs:
        reference = verify(parse(f"\\boxed{{{gold}}}"), parse(f"\\boxed{{{predicted}}}"))
        assert answers_match(gold, predicted) is reference, (gold, predicted)


def test_accuracy_and_format_follow_the_r1_template():
    prompts = ["Q"] * 4
    completions = ["<think>2+2</think> <answer>4</answer>", "<think>hm</think><answer>5</answer>",
                   "<answer>4</answer>", "4"]
    gold = ["4"] * 4
    assert AccuracyReward()(prompts, completions, answer=gold) == [1.0, 0.0, 1.0, 0.0]
    assert FormatReward()(prompts, completions, answer=gold) == [1.0, 1.0, 0.0, 0.0]
    # A prompt that ends in <think> (TinyZero style) supplies the opening tag.
    assert FormatReward()(["User: 1+1\nAssistant: <think>"], ["ok</think><answer>2</answer>"]) == [1.0]
    # Nested or repeated tags are not the template.
    assert FormatReward()(["Q"], ["<think>a<think>b</think><answer>1</answer>"]) == [0.0]


def test_accuracy_names_the_missing_column():
    with pytest.raises(KeyError, match="needs the task column 'answer'.*provides \\['gold'\\]"):
        AccuracyReward()(["Q"], ["<answer>1</answer>"], gold=["1"])


def test_every_gsm8k_solution_scores_one_against_its_own_gold(shared_data):
    task = JsonlTask(str(shared_data / "gsm8k/test.jsonl"), answer_regex=r"####\s*(.+?)\s*$", name="gsm8k")
    raw = [json.loads(line) for line in (shared_data / "gsm8k/test.jsonl").open()]
    assert len(task) == len(raw) == 1319
    # The worked solution as a completion: reasoning in <think>, the "#### n" line as the answer.
    completions = []
    for record, row in zip(raw, task.rows):
        reasoning, final = record["answer"].rsplit("####", 1)
        completions.append(f"<think>{reasoning.strip()}</think><answer>{final.strip()}</answer>")
    golds = [row["answer"] for row in task.rows]
    reward = AccuracyReward()
    assert reward([""] * len(golds), completions, answer=golds) == [1.0] * len(golds)
    perturbed = [f"<answer>{int(g.replace(',', '')) + 1}</answer>" for g in golds]
    assert reward([""] * len(golds), perturbed, answer=golds) == [0.0] * len(golds)


def test_every_math500_reference_answer_scores_one_against_its_own_gold(shared_data):
    task = JsonlTask(str(shared_data / "math500/test.jsonl"), question_key="problem", name="math500")
    raw = [json.loads(line) for line in (shared_data / "math500/test.jsonl").open()]
    golds = [row["answer"] for row in task.rows]
    assert len(golds) == 500
    reward = AccuracyReward()
    # The reference answer in the R1 template, and the full reference solution (its last \boxed{}).
    tagged = [f"<think>...</think><answer>{g}</answer>" for g in golds]
    assert reward([""] * 500, tagged, answer=golds) == [1.0] * 500
    solutions = [r["solution"] for r in raw]
    scores = reward([""] * 500, solutions, answer=golds)
    assert scores == [1.0] * 500, [(g, extract_answer(s)) for g, s, v in zip(golds, solutions, scores) if not v][:10]
    # Perturbed: the next problem's answer, where the two differ as strings ("x=5" and "5" do not).
    def bare(answer):
        return answer.replace(" ", "").split("=")[-1]

    pairs = [(g, n) for g, n in zip(golds, golds[1:] + golds[:1]) if bare(g) != bare(n)]
    wrong = reward([""] * len(pairs), [f"<answer>{n}</answer>" for _, n in pairs], answer=[g for g, _ in pairs])
    assert len(pairs) > 450 and wrong == [0.0] * len(pairs)


def test_reward_set_weights_terms_and_treats_none_as_absent():
    def half(prompts, completions, **columns):
        return [0.5 if c else None for c in completions]

    rewards = RewardSet({"accuracy": (AccuracyReward(), 1.0), "format": (FormatReward(), 0.1), "half": (half, 2.0)})
    scored = rewards(["Q", "Q"], ["<think>x</think><answer>4</answer>", ""], {"answer": ["4", "4"]})
    assert scored.total.tolist() == pytest.approx([1.0 + 0.1 + 1.0, 0.0])
    assert scored.terms["half"][0].item() == 0.5 and math.isnan(scored.terms["half"][1].item())
    assert scored.nonfinite == 0


def test_a_term_that_raises_scores_only_the_failing_completions_none():
    def fragile(prompts, completions, **columns):
        if any("boom" in c for c in completions):
            raise RuntimeError("cannot score boom")
        return [1.0] * len(completions)

    scored = RewardSet({"fragile": (fragile, 1.0)})(["Q"] * 3, ["a", "boom", "c"], {})
    assert scored.failures == {"fragile": 1}
    assert scored.total.tolist() == [1.0, 0.0, 1.0]
    assert math.isnan(scored.terms["fragile"][1].item())


def test_non_finite_reward_values_are_counted():
    scored = RewardSet({"bad": (lambda p, c, **k: [float("nan"), 1.0], 1.0)})(["Q", "Q"], ["a", "b"], {})
    assert scored.nonfinite == 1


def test_reward_set_from_config_pops_weights_and_drops_null_terms():
    rewards = RewardSet.from_config({"accuracy": {"_target_": "r1lab.rewards.accuracy.AccuracyReward", "weight": 2.0},
                                     "format": None})
    assert rewards.names == ["accuracy"] and rewards.terms["accuracy"][1] == 2.0
    with pytest.raises(ValueError, match="at least one term"):
        RewardSet.from_config({"format": None})


@pytest.mark.parametrize(("gold", "predicted", "same"), [
    ("50", "50\\%", True), ("50", "50%", True), ("18", "18 dollars", True), ("18", "\\$18", True),
    ("18", "$18.00", True), ("1000", "1,000", True), ("1000", "1\\,000", True), ("5", "5 \\text{ cm}", True),
    ("18", "18.", True), ("-7", "-7 degrees", True),
    ("18", "19 dollars", False), ("18", "18 or 19", False), ("3", "3x", False), ("2", "2 pi", False),
])
def test_units_percent_signs_and_separators_are_normalised_as_graders_do(gold, predicted, same):
    assert answers_match(gold, predicted) is same


def test_a_question_that_ends_in_punctuation_keeps_only_its_own(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps({"question": q, "answer": "#### 1"}) for q in
                              ["How many are left?", "Compute 3+4.", "Add 1 and 2", "Wow!  "]) + "\n")
    task = JsonlTask(str(path), answer_regex=r"####\s*(.+?)\s*$", prompt_template="User: {question}. Assistant:")
    assert [row["prompt"] for row in task.rows] == [
        "User: How many are left? Assistant:", "User: Compute 3+4. Assistant:", "User: Add 1 and 2. Assistant:",
        "User: Wow! Assistant:"]
    braces = JsonlTask(str(path), answer_regex=r"####\s*(.+?)\s*$", prompt_template="{{x}} {question}", limit=1)
    assert braces.rows[0]["prompt"] == "{x} How many are left?"  # "{{" in a template stands for "{"
