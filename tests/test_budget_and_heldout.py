"""The generation budget (stop at N generated tokens) and the held-out greedy evaluation, in real runs of the
toy model."""

import json

import pytest
from omegaconf import OmegaConf

from conftest import FAST, compose_config, read_scalars
from r1lab.models import load_policy
from r1lab.rollout import PromptBatch
from r1lab.samplers.base import GREEDY
from r1lab.samplers.hf import HFSampler
from r1lab.stages import run_stage
from r1lab.tasks.arithmetic import AdditionTask

QUIET = ["callbacks.diagnostics=null", "callbacks.samples=null", "callbacks.checkpoint=null"]


def run(tmp_path, name, overrides):
    run_dir = tmp_path / name
    run_stage(compose_config(["+experiment=r1_zero", *FAST, *QUIET, *overrides], output_dir=run_dir))
    return run_dir


def test_the_run_stops_after_the_step_that_reaches_the_token_budget(tmp_path):
    run_dir = run(tmp_path, "budget", ["trainer.max_steps=50", "callbacks.budget.max_tokens=150",
                                       "callbacks.policy=null"])
    scalars = read_scalars(run_dir)
    spent = [v for _, v in scalars["perf/generated_tokens"]]
    per_completion = [v for _, v in scalars["perf/tokens_per_completion"]]
    # The running total adds each step's generated tokens (2 prompts × 4 completions) ...
    completions = 2 * 4
    assert spent == pytest.approx([completions * sum(per_completion[:i + 1]) for i in range(len(spent))])
    # ... and the run ends at the first step where it reaches the budget: far before max_steps.
    assert spent[-1] >= 150 and (len(spent) == 1 or spent[-2] < 150)
    assert len(scalars["train/reward"]) == len(spent) < 50


def test_a_budget_below_one_token_is_refused(tmp_path):
    with pytest.raises(Exception, match="callbacks.budget.max_tokens must be >= 1"):
        run(tmp_path, "bad", ["trainer.max_steps=1", "callbacks.budget.max_tokens=0"])


def test_held_out_greedy_accuracy_is_logged_on_problems_the_run_never_saw(tmp_path):
    # Held-out: 2-digit sums under another seed (some of them are training problems too, and are dropped).
    heldout = ["callbacks.heldout.task=${task}", "+callbacks.heldout.overrides={seed: 4321, min_digits: 2, "
               "max_digits: 2, digit_weights: null, num_problems: 400}", "callbacks.heldout.limit=48",
               "callbacks.heldout.max_new_tokens=24"]
    run_dir = run(tmp_path, "heldout", ["trainer.max_steps=2", *heldout])
    report = json.loads((run_dir / "heldout.json").read_text())
    scalars = read_scalars(run_dir)
    accuracy = report["results"]["eval/heldout_greedy"]
    assert report["problems"] == 48 and report["step"] == 1
    assert scalars["eval/heldout_greedy"] == [(1, pytest.approx(accuracy))]
    assert scalars["eval/heldout_greedy_d2"] == [(1, pytest.approx(accuracy))]  # one difficulty: the same

    # The same 48 problems, rebuilt here: none is a training problem ...
    cfg = compose_config(["+experiment=r1_zero"])
    options = {k: v for k, v in OmegaConf.to_container(cfg.task, resolve=True).items() if k != "_target_"}
    training = {row["question"] for row in AdditionTask(**options).rows}
    task = AdditionTask(**options | {"seed": 4321, "min_digits": 2, "max_digits": 2, "digit_weights": None,
                                     "num_problems": 400})
    rows = [row for row in task.rows if row["question"] not in training][:48]
    assert len(rows) == 48 and any(row["question"] in training for row in task.rows[:60])  # some were dropped
    # ... and model.generate's greedy answers of the saved policy (another decoding engine) score the same.
    policy = load_policy(str(run_dir / "policy"))
    sampler = HFSampler(engine="generate", record_logprobs=False).with_settings(group_size=1, max_new_tokens=24,
                                                                                **GREEDY)
    rollout = sampler.rollout(policy.model.eval(), policy.tokenizer, PromptBatch.collate(rows))
    correct = task.verify(rollout.completions, rollout.columns)
    assert sum(correct) > 0  # the toy model answers some 2-digit sums greedily: the number says something
    assert accuracy == pytest.approx(sum(correct) / len(correct))


def test_a_held_out_task_identical_to_the_training_task_is_refused(tmp_path):
    with pytest.raises(ValueError, match="every problem of the held-out task .* is also a training problem"):
        run(tmp_path, "same", ["trainer.max_steps=1", "callbacks.heldout.task=${task}", "callbacks.policy=null"])
