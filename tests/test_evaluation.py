"""pass@k against the unbiased estimator on hand cases, cons@k's vote, and the eval command on the toy model."""

import json

import pytest

from r1lab.tasks.base import PromptTask
from r1lab.stages.eval import cons_at_k, default_ks, majority_answer, pass_at_k, summarise
from r1lab.testing import run_cli


def test_pass_at_k_hand_cases():
    # n = 5 samples, c = 2 correct: pass@1 = 1 - C(3,1)/C(5,1) = 2/5; pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10.
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 3, 3) == 1.0 and pass_at_k(5, 5, 1) == 1.0
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(5, 2, 6)


def test_cons_at_k_groups_equivalent_answers_and_breaks_ties_by_first_appearance():
    def answer(a):
        return f"<think>x</think><answer>{a}</answer>"

    # 0.5 and \frac{1}{2} are one answer (2 votes) against 3 (2 votes): the tie goes to the first seen, 0.5.
    votes = [answer("0.5"), answer("3"), answer("\\frac{1}{2}"), answer("3"), "no answer"]
    assert majority_answer(["0.5", "3", "\\frac{1}{2}", "3", None]) == "0.5"
    task = PromptTask()
    gold_half, gold_three = (task.verify(votes, {"answer": [gold] * 5}) for gold in ("1/2", "3"))
    assert gold_half == [1.0, 0.0, 1.0, 0.0, 0.0]  # the task's verdicts that cons@k reads
    assert cons_at_k(votes, gold_half, 5) == 1.0 and cons_at_k(votes, gold_three, 5) == 0.0
    assert cons_at_k(votes, gold_three, 2) == 0.0  # first two: 0.5 then 3, tie → 0.5
    assert cons_at_k(["nothing", "parsable"], [0.0, 0.0], 2) == 0.0


def test_summarise_averages_over_problems():
    correct = [[1.0, 0.0, 1.0, 0.0, 0.0], [0.0] * 5]
    completions = [["<answer>2</answer>"] * 5, ["<answer>9</answer>"] * 5]
    metrics = summarise(correct, completions, ks=[1, 2], greedy=[1.0, 0.0])
    assert metrics["pass@1"] == pytest.approx((0.4 + 0.0) / 2)
    assert metrics["pass@2"] == pytest.approx((0.7 + 0.0) / 2)
    assert metrics["cons@2"] == 0.5 and metrics["greedy"] == 0.5


def test_the_eval_command_on_the_toy_model(tmp_path):
    # No k: it follows n (1, 2, 4), where a fixed default holding 8 would stop an n=4 run.
    run_cli(["eval", "model=toy", "task=toy_addition", "n=4", "limit=8", "max_new_tokens=48",
             f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    report = json.loads((tmp_path / "eval.json").read_text())
    everything = report["results"]["all"]
    assert everything["problems"] == 8 and report["n"] == 4 and report["temperature"] == 0.6
    assert 0 <= everything["pass@1"] <= everything["pass@2"] <= everything["pass@4"] <= 1
    assert {"cons@2", "cons@4", "greedy"} <= set(everything) and "pass@8" not in everything
    assert "| all | 8 |" in (tmp_path / "eval.md").read_text()


def test_the_default_k_are_1_then_powers_of_2_up_to_n_and_an_explicit_k_above_n_is_refused(tmp_path):
    assert default_ks(1) == [1] and default_ks(4) == [1, 2, 4] and default_ks(12) == [1, 2, 4, 8]
    refused = run_cli(["eval", "model=toy", "task=toy_addition", "n=4", "k=1,8", "limit=2",
                       f"hydra.run.dir={tmp_path / 'eval'}"], cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "k=8 cannot be estimated from n=4 samples" in refused.stderr


def test_cons_at_k_votes_on_answers_read_where_the_task_reads_them():
    """A task that reads the last number (instruct models answering in prose): the vote reads it too."""
    prose = ["23 + 58 = 81.", "It is 81", "I think 80", "81!"]
    verdicts = [1.0, 1.0, 0.0, 1.0]
    assert cons_at_k(prose, verdicts, 4, "last_number") == 1.0
    assert cons_at_k(prose, verdicts, 4) == 0.0  # read as <answer>/\boxed{}: nothing votes
    assert cons_at_k(["80", "79", "81", "81"], [0.0, 0.0, 1.0, 1.0], 4, "last_number") == 1.0
    metrics = summarise([verdicts], [prose], ks=[4], answer_format="last_number")
    assert metrics["cons@4"] == 1.0 and metrics["pass@1"] == 0.75

