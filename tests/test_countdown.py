"""Countdown: the safe arithmetic parser, the task's verdict on TinyZero's data (checked with solutions found by
brute force), TinyZero's reward, and the experiment's RL steps."""

import itertools
from fractions import Fraction

import pytest

from r1lab.judging.equations import NotAnEquation, evaluate, numbers_in, parse_equation, solves_countdown
from r1lab.rewards.countdown import CountdownReward
from r1lab.tasks.countdown import CountdownTask
from r1lab.testing import FAST, read_scalars, run_cli


def solve(numbers, target):
    """An equation using every number once that equals `target` (exhaustive search), or None."""
    def combos(items):
        if len(items) == 1:
            yield items[0]
            return
        for i, j in itertools.permutations(range(len(items)), 2):
            (a, ea), (b, eb) = items[i], items[j]
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            options = [(a + b, f"({ea} + {eb})"), (a - b, f"({ea} - {eb})"), (a * b, f"({ea} * {eb})")]
            if b != 0:
                options.append((a / b, f"({ea} / {eb})"))
            for value in options:
                yield from combos(rest + [value])

    for value, expression in combos([(Fraction(n), str(n)) for n in numbers]):
        if value == target:
            return expression
    return None


def test_the_parser_evaluates_arithmetic_exactly():
    assert evaluate(parse_equation("(1 + 2) / 3")) == 1
    assert evaluate(parse_equation("7 / 2 * 2")) == 7  # exact: no float rounding
    assert evaluate(parse_equation("-(5 - 9) + 1")) == 5
    assert evaluate(parse_equation("96 - 74 + 37 - 7 = 52")) == 52  # "expr = value": the left side
    assert sorted(numbers_in(parse_equation("(96 - 74) * 2"))) == [2, 74, 96]


@pytest.mark.parametrize(("text", "reason"), [
    ("__import__('os').system('touch /tmp/r1lab_pwned')", "Call is not allowed"),
    ("x + 1", "Name is not allowed"), ("2 ** 10", "Pow is not allowed"), ("7 // 2", "FloorDiv is not allowed"),
    ("1 / 0", "division by zero"), ("3.5 + 1", "3.5 is not an integer"), ("1" * 13, "at most 12 digits"),
    ("(" * 150 + "1" + ")" * 150, "longer than 200 characters"), ("", "empty expression"), ("1 +", "not an arithmetic"),
])
def test_the_parser_rejects_anything_but_integer_arithmetic_without_running_it(text, reason, tmp_path):
    with pytest.raises(NotAnEquation, match=reason):
        evaluate(parse_equation(text))


def test_each_number_exactly_once_and_the_target():
    assert solves_countdown("74 - 58 + 40", [40, 74, 58], 56)
    assert not solves_countdown("74 - 58 + 40 + 0", [40, 74, 58], 56)  # a number that was not given
    assert not solves_countdown("74 - 58", [40, 74, 58], 16)  # 40 unused
    assert not solves_countdown("40 + 40 - 24", [40, 74, 58], 56)  # 40 twice
    assert not solves_countdown("74 - 58 + 40", [40, 74, 58], 57)  # wrong value
    assert not solves_countdown("import os", [1], 1)


def test_the_task_reads_tinyzeros_data_and_its_verdict_accepts_real_solutions(shared_data):
    task = CountdownTask(str(shared_data / "countdown" / "test.parquet"), prompt_template="User: {question} Assistant:",
                         limit=40)
    assert len(task) == 40 and task.hard_difficulty == 4
    row = task[0]
    assert row["nums"] == [96, 7, 37, 74] and row["target"] == 55 and row["difficulty"] == 4
    assert row["prompt"].startswith("User: Using the numbers [96, 7, 37, 74], create an equation that equals 55.")
    solved = 0
    for row in task.rows:
        equation = solve(row["nums"], row["target"])
        if equation is None:
            continue
        solved += 1
        columns = {"nums": [row["nums"]] * 3, "target": [row["target"]] * 3}
        completions = [f"<think>search</think><answer>{equation}</answer>",
                       f"<think>close</think><answer>{equation} + 1 - 1</answer>",  # 1 is not one of the numbers
                       "<think>no answer</think>"]
        assert task.verify(completions, columns) == [1.0, 0.0, 0.0], row
    assert solved >= 30  # most generated problems have a solution


def test_a_bad_countdown_file_says_what_is_wrong(tmp_path):
    from r1lab.tasks.jsonl import TaskDataError

    with pytest.raises(TaskDataError, match="does not exist"):
        CountdownTask(str(tmp_path / "missing.parquet"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"target": 5}\n')
    with pytest.raises(TaskDataError, match="row 1 .* has no 'target' or 'nums'"):
        CountdownTask(str(bad))


def test_tinyzeros_reward_gives_a_little_for_a_wrong_answer_and_nothing_without_one():
    reward = CountdownReward()
    completions = ["<answer>1+2</answer>", "<answer>1+1</answer>", "no answer"]
    assert reward([""] * 3, completions, correct=[1.0, 0.0, 0.0]) == [1.0, 0.1, 0.0]
    with pytest.raises(KeyError, match="task=countdown"):
        reward([""], ["x"])


def test_the_countdown_experiment_runs_rl_steps(tmp_path):
    """On a tiny random model (Countdown needs a real one to learn): the task, verdict and reward run."""
    run_cli(["+experiment=countdown", "model=tiny_random", *FAST, "trainer.max_steps=2", "task.limit=16",
             "callbacks.diagnostics=null", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    scalars = read_scalars(tmp_path)
    assert [step for step, _ in scalars["train/reward/countdown"]] == [0, 1]
    assert "train/accuracy_hard" in scalars or "train/accuracy_d4" in scalars
