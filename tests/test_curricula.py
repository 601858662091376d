"""Difficulty, ramp and pass-rate curricula: what they draw, that they resume exactly, what they log."""

from collections import Counter

import pytest
import torch

from r1lab.curricula.difficulty import DifficultyCurriculum, RampCurriculum
from r1lab.curricula.pass_rate import PassRateCurriculum
from r1lab.curricula.uniform import UniformCurriculum
from r1lab.testing import FAST, read_scalars, run_cli

ROWS = [{"index": i, "prompt": f"p{i}", "difficulty": 2 + i % 4} for i in range(40)]  # labels 2, 3, 4, 5


def drawn(curriculum, steps=100):
    return [ROWS[i]["difficulty"] for step in range(steps) for i in curriculum.batch_at(step)]


def test_difficulty_mixture_follows_its_weights_and_is_a_function_of_the_step():
    only_easy = DifficultyCurriculum({2: 1.0}, seed=1)
    only_easy.setup(ROWS, 8)
    assert set(drawn(only_easy)) == {2}
    mixed = DifficultyCurriculum([[2, 1.0], [5, 3.0]], seed=1)  # pairs, as in configs
    mixed.setup(ROWS, 8)
    counts = Counter(drawn(mixed))
    assert set(counts) == {2, 5} and 0.70 < counts[5] / 800 < 0.80
    again = DifficultyCurriculum({2: 1.0, 5: 3.0}, seed=1)
    again.setup(ROWS, 8)
    assert again.batch_at(37) == mixed.batch_at(37) != mixed.batch_at(38)


def test_unknown_labels_and_bad_weights_are_errors():
    with pytest.raises(ValueError, match=r"labels \['7'\] that the task does not have; its labels are \['2', '3', '4', '5'\]"):
        DifficultyCurriculum({7: 1.0}).setup(ROWS, 4)
    with pytest.raises(ValueError, match="non-negative with a positive sum"):
        DifficultyCurriculum({2: 0.0}).setup(ROWS, 4)
    with pytest.raises(ValueError, match=r"must be \[label, weight\] pairs"):
        DifficultyCurriculum([[2, 1.0, 3]]).setup(ROWS, 4)
    uniform = DifficultyCurriculum(None)
    uniform.setup(ROWS, 8)
    assert set(drawn(uniform, 20)) == {2, 3, 4, 5}
    with pytest.raises(ValueError, match="needs a difficulty column"):
        DifficultyCurriculum({2: 1.0}).setup([{"index": 0, "prompt": "x"}], 4)


def test_ramp_moves_from_start_to_end():
    ramp = RampCurriculum(start={2: 1.0}, end={4: 1.0, 5: 3.0}, ramp_steps=10)
    ramp.setup(ROWS, 8)
    assert ramp.weights_at(0) == {"2": 1.0, "3": 0.0, "4": 0.0, "5": 0.0}
    assert ramp.weights_at(5) == pytest.approx({"2": 0.5, "3": 0.0, "4": 0.125, "5": 0.375})
    assert ramp.weights_at(10) == ramp.weights_at(99) == pytest.approx({"2": 0.0, "3": 0.0, "4": 0.25, "5": 0.75})
    assert {ROWS[i]["difficulty"] for i in ramp.batch_at(0)} == {2}
    assert ramp.metrics(ramp.batch_at(0)) == {"curriculum/mean_difficulty": 2.0}


def test_pass_rate_draws_from_the_band_and_reports_it():
    curriculum = PassRateCurriculum(band=(0.1, 0.9), explore=0.0, smoothing=1.0, seed=3)
    curriculum.setup(ROWS[:4], 6)
    curriculum.update([0, 1, 2], {"accuracy": [1.0, 0.5, 0.0]})  # 0 solved, 2 hopeless, 1 learnable, 3 unseen
    curriculum.update([3], {"accuracy": [0.25]})
    drawn_now = {i for step in range(2, 40) for i in curriculum.batch_at(step)}
    assert drawn_now == {1, 3}
    assert curriculum.band_fraction([0, 1, 2, 3]) == 0.5
    assert curriculum.metrics([1, 3])["curriculum/band_frac"] == 1.0
    # The moving average: smoothing 0.5 halves the way to each new pass rate.
    averaged = PassRateCurriculum(smoothing=0.5)
    averaged.setup(ROWS[:4], 2)
    averaged.update([0], {"accuracy": [1.0]})
    averaged.update([0], {"accuracy": [0.0]})
    assert averaged.rates[0] == 0.5


def lightning_order(curriculum, steps, rates):
    """Fetch one batch ahead of training, as Lightning does; update with made-up pass rates."""
    stream, batches = iter(curriculum), []
    pending = next(stream)
    for _ in range(steps):
        current, pending = pending, next(stream)
        batches.append(current)
        curriculum.update(current, {"accuracy": [rates[i] for i in current]})
    return batches


def test_a_resumed_pass_rate_curriculum_draws_what_the_uninterrupted_one_draws():
    rates = {row["index"]: (row["index"] % 5) / 4 for row in ROWS}
    full = PassRateCurriculum(seed=9)
    full.setup(ROWS, 4)
    everything = lightning_order(full, 12, rates)
    first = PassRateCurriculum(seed=9)
    first.setup(ROWS, 4)
    head = lightning_order(first, 5, rates)
    resumed = PassRateCurriculum(seed=9)
    resumed.setup(ROWS, 4)
    resumed.load_state_dict(first.state_dict())
    assert head + lightning_order(resumed, 7, rates) == everything


def test_runs_log_the_curriculum(tmp_path):
    easy = tmp_path / "easy"
    run_cli(["+experiment=easy_only", "trainer.max_steps=2", *FAST, f"hydra.run.dir={easy}"], cwd=tmp_path)
    assert [v for _, v in read_scalars(easy)["curriculum/mean_difficulty"]] == [1.0, 1.0]
    online = tmp_path / "pass_rate"
    run_cli(["+experiment=r1_zero", "curriculum=pass_rate", "trainer.max_steps=3", *FAST, "rl.prompts_per_step=4",
             "curriculum.explore=0.5", f"hydra.run.dir={online}"], cwd=tmp_path)
    scalars = read_scalars(online)
    assert len(scalars["curriculum/mean_difficulty"]) == 3
    assert all(0 <= v <= 1 for _, v in scalars.get("curriculum/band_frac", []))


def test_pass_rate_learns_from_the_task_verdict_whatever_the_reward_terms_are_called(tmp_path):
    # Regression: the curriculum once read the reward term named "accuracy"; renamed or absent, it learned
    # nothing while train/accuracy still logged. Now it reads the verdict the step stores once.
    run_dir = tmp_path / "renamed"
    run_cli(["+experiment=r1_zero", "curriculum=pass_rate", "reward=[format]",
             "+reward.correctness._target_=r1lab.rewards.accuracy.AccuracyReward", "trainer.max_steps=3", *FAST,
             "rl.prompts_per_step=4", "task.num_problems=4", "curriculum.explore=0.0", f"hydra.run.dir={run_dir}"],
            cwd=tmp_path)
    scalars = read_scalars(run_dir)
    # Every prompt was measured at step 0, so the band is known from step 1 on.
    assert [step for step, _ in scalars["curriculum/band_frac"]] == [1, 2]
    rates = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["PromptDataModule"]["curriculum"]["rates"]
    assert sorted(index for index, _ in rates) == [0, 1, 2, 3] and all(0 <= rate <= 1 for _, rate in rates)
    # The renamed reward term scores the same verdict that train/accuracy reports.
    assert scalars["train/reward/correctness"] == scalars["train/accuracy"]


def test_rows_read_before_setup_say_where_they_come_from():
    class ReadsRowsTooEarly(UniformCurriculum):
        def __init__(self, seed=0):
            super().__init__(seed)
            self.size = len(self.rows)

    with pytest.raises(AttributeError, match=r"ReadsRowsTooEarly.rows is set by setup\(rows, batch_size\)"):
        ReadsRowsTooEarly()
    curriculum = UniformCurriculum(seed=1)
    curriculum.setup(ROWS, 4)
    assert curriculum.rows is ROWS and curriculum.batch_size == 4 and len(curriculum.batch_at(0)) == 4
