"""The shipped toy base model and the aha moment it makes possible."""

import json
from importlib import resources
from pathlib import Path

import pytest

from conftest import compose_config, read_scalars
from r1lab.models import load_policy
from r1lab.toy.probe import probe_base_model
from r1lab.stages import run_stage

BASE_MODEL = Path(str(resources.files("r1lab.toy").joinpath("base_model")))


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((BASE_MODEL / "r1lab_toy.json").read_text())


def test_the_base_model_ships_small_and_loads_from_the_package():
    weights = BASE_MODEL / "model.safetensors"
    assert weights.stat().st_size <= 10 * 2 ** 20
    policy = load_policy("pkg://r1lab.toy/base_model")
    assert 0.5e6 < policy.model.num_parameters() < 2e6
    text = "User: 12+34\nAssistant: <think>46 Wait, let me verify: 2+4+0=06</think>"
    assert policy.tokenizer.decode(policy.tokenizer(text)["input_ids"]) == text


def test_the_base_model_has_its_documented_properties(card):
    policy = load_policy("pkg://r1lab.toy/base_model")
    probe = probe_base_model(policy.model.eval(), policy.tokenizer, problems=40, seed=11)
    documented = card["probe"]
    # Self-verification is latent: rare when sampling ...
    assert probe.verify_rate <= 0.15 and abs(probe.verify_rate - documented["verify_rate"]) < 0.08
    # ... direct answers to hard sums are mostly wrong, verified ones mostly right.
    assert probe.direct_accuracy[5] <= 0.15
    assert probe.forced_verification_accuracy[5] >= 0.6
    assert abs(probe.forced_verification_accuracy[5] - documented["forced_verification_accuracy"]["5"]) < 0.2


def test_grpo_on_the_toy_model_raises_the_self_verify_rate(tmp_path):
    # A shortened r1_zero: fewer prompts and steps, same model, rewards and algorithm.
    run_dir = tmp_path / "aha"
    run_stage(compose_config(["+experiment=r1_zero", "trainer.max_steps=12", "rl.prompts_per_step=8", "rl.optim.lr=1e-4",
                          "trainer.enable_progress_bar=false", "callbacks.policy=null", "seed=1"], output_dir=run_dir))
    verify = [v for _, v in read_scalars(run_dir)["aha/self_verify_rate"]]
    assert verify[0] <= 0.25
    assert sum(verify[-3:]) / 3 >= verify[0] + 0.3, verify
