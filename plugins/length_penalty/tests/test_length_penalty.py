"""The length rewards against hand-computed values of their papers' formulas."""

import math

import pytest

from r1lab.registry import REWARDS
from r1lab.rewards.base import RewardSet
from r1lab_length_penalty.rewards import CosineLengthReward, GroupLengthPenalty


def right(answer: str) -> str:
    return f"<think>x</think><answer>{answer}</answer>"


def test_group_length_penalty_follows_kimi_k15():
    penalty = GroupLengthPenalty()
    # Group 0 (index 0): lengths 10, 20, 30, 20; answers right, right, right, wrong.
    # λ = 0.5 - (len - 10) / 20  ->  0.5, 0.0, -0.5, 0.0; wrong answers get min(0, λ).
    # Group 1 (index 1): lengths 5, 15; wrong, right -> λ = 0.5, -0.5 -> min(0, 0.5) = 0, -0.5.
    completions = [right("3"), right("3"), right("3"), right("4"), right("9"), right("7")]
    columns = {"answer": ["3", "3", "3", "3", "7", "7"], "index": [0, 0, 0, 0, 1, 1],
               "completion_ids": [[0] * 10, [0] * 20, [0] * 30, [0] * 20, [0] * 5, [0] * 15]}
    scores = penalty(["p0"] * 4 + ["p1"] * 2, completions, **columns)
    assert scores == pytest.approx([0.5, 0.0, -0.5, 0.0, 0.0, -0.5])


def test_group_length_penalty_is_zero_when_a_group_has_one_length():
    scores = GroupLengthPenalty()(["p", "p"], [right("1"), right("2")], answer=["1", "1"], index=[4, 4],
                                  completion_ids=[[1, 2], [3, 4]])
    assert scores == [0.0, 0.0]


def test_cosine_length_reward_follows_its_formula():
    reward = CosineLengthReward(max_tokens=100, correct_short=2.0, correct_long=1.0, wrong_short=-10.0, wrong_long=0.0,
                                exceed_penalty=-5.0)
    lengths = [0, 50, 99, 0, 50, 100]
    completions = [right("1")] * 3 + [right("2")] * 3
    scores = reward(["p"] * 6, completions, answer=["1"] * 6, completion_ids=[[0] * n for n in lengths])
    cos99 = math.cos(math.pi * 0.99)
    assert scores == pytest.approx([2.0, 1.5, 1.0 + 0.5 * (1 + cos99), -10.0, -5.0, -5.0])


def test_cosine_length_rejects_an_empty_budget():
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        CosineLengthReward(max_tokens=0)


def test_the_plugin_registers_both_terms_and_they_compose_in_a_reward_set():
    assert {"length_penalty", "cosine_length"} <= set(REWARDS.names())
    rewards = RewardSet.from_config({
        "accuracy": {"_target_": "r1lab.rewards.accuracy.AccuracyReward"},
        "length_penalty": {"_target_": "r1lab_length_penalty.rewards.GroupLengthPenalty", "weight": 0.5}})
    scored = rewards(["p", "p"], [right("1"), right("1") + "  "], {"answer": ["1", "1"], "index": [0, 0],
                                                                     "completion_ids": [[0] * 4, [0] * 8]})
    assert scored.total.tolist() == pytest.approx([1.0 + 0.5 * 0.5, 1.0 - 0.5 * 0.5])


def test_the_length_penalty_experiment_runs_and_logs_the_term(tmp_path):
    from r1lab.testing import FAST, read_scalars, run_cli

    run_cli(["+experiment=length_penalty", "trainer.max_steps=2", *FAST, f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    scalars = read_scalars(tmp_path)
    for tag in ("train/reward/length_penalty", "train/completion_len", "aha/self_verify_rate"):
        assert len(scalars[tag]) == 2, tag
    assert all(-0.5 <= value <= 0.5 for _, value in scalars["train/reward/length_penalty"])
