"""Algorithm variants in real runs: DAPO's dynamic sampling, PPO epochs and clipping, overlong handling."""

import pytest
import torch

from conftest import compose_config, read_scalars
from r1lab.models import load_policy
from r1lab.rewards.overlong import OverlongPenalty
from r1lab.rl.logprobs import completion_logprobs
from r1lab.rollout import PromptBatch, Rollout
from r1lab.samplers.hf import HFSampler
from r1lab.stages import run_stage

QUICK = ["trainer.enable_progress_bar=false", "callbacks.policy=null", "callbacks.checkpoint=null"]


def train_and_read(run_dir, overrides: list[str]) -> dict[str, list[tuple[int, float]]]:
    """A short real run; its TensorBoard scalars."""
    run_stage(compose_config([*overrides, *QUICK], output_dir=run_dir))
    return read_scalars(run_dir)


def test_overlong_penalty_by_hand():
    reward = OverlongPenalty(max_tokens=10, cache_tokens=4)
    ids = [[1] * n for n in (3, 6, 7, 9, 10, 12)]
    assert reward([""] * 6, [""] * 6, completion_ids=ids) == pytest.approx([0, 0, -0.25, -0.75, -1.0, -1.0])
    with pytest.raises(ValueError, match="0 < cache_tokens <= max_tokens"):
        OverlongPenalty(max_tokens=4, cache_tokens=8)


def test_concatenated_rollouts_keep_every_token_in_place():
    torch.manual_seed(0)
    policy = load_policy("pkg://r1lab.toy/base_model")
    sampler = HFSampler(group_size=2, max_new_tokens=30)
    short = sampler.rollout(policy.model, policy.tokenizer, PromptBatch(["User: 1+2\nAssistant: <think>"], {}, [0]))
    long = sampler.rollout(policy.model, policy.tokenizer,
                           PromptBatch(["User: 12345+67890\nAssistant: <think>"], {}, [1]))
    merged = Rollout.concat([short, long], policy.tokenizer.pad_token_id)
    assert merged.completions == short.completions + long.completions
    assert merged.completion_token_lists() == short.completion_token_lists() + long.completion_token_lists()
    with torch.no_grad():
        together = completion_logprobs(policy.model, merged)
        apart = [completion_logprobs(policy.model, r) for r in (short, long)]
    for rows, part in ((slice(0, 2), apart[0]), (slice(2, 4), apart[1])):
        width = part.shape[1]
        mask = merged.completion_mask[rows, :width]
        assert ((together[rows, :width] - part).abs() * mask).max() < 1e-4
    assert merged.columns["index"] == [0, 0, 1, 1]


def test_dapo_dynamic_sampling_trains_only_on_groups_that_differ(tmp_path):
    scalars = train_and_read(tmp_path / "dapo", ["+experiment=dapo", "trainer.max_steps=3", "rl.prompts_per_step=4",
                                                 "sampler.group_size=4", "seed=3"])
    draws = [v for _, v in scalars["train/dynamic_sampling_draws"]]
    zero_std = [v for _, v in scalars["train/zero_std_frac"]]
    assert all(1 <= d <= 3 for d in draws)
    for d, z in zip(draws, zero_std):
        assert z == 0.0 or d == 3  # a full batch of informative groups, or the draws ran out
    assert "train/reward/overlong" in scalars and "train/truncated_frac" in scalars


def test_dynamic_sampling_gives_up_after_max_draws_when_no_group_differs(tmp_path):
    # A random model never answers: every group's rewards are equal.
    scalars = train_and_read(tmp_path / "flat", ["+experiment=dapo", "model=tiny_random", "reward=[accuracy]",
                                                 "trainer.max_steps=2", "rl.prompts_per_step=2",
                                                 "sampler.group_size=2", "sampler.max_new_tokens=8"])
    assert [v for _, v in scalars["train/dynamic_sampling_draws"]] == [3.0, 3.0]
    assert [v for _, v in scalars["train/zero_std_frac"]] == [1.0, 1.0]


def test_several_ppo_epochs_make_the_ratio_and_clipping_matter(tmp_path):
    scalars = train_and_read(tmp_path / "ppo", ["+experiment=r1_zero", "trainer.max_steps=8", "rl.prompts_per_step=4",
                                                "rl.schedule.ppo_epochs=2", "rl.schedule.num_minibatches=2",
                                                "rl.optim.lr=1e-3", "loss.eps=0.05"])
    # Four optimizer steps per RL step: trainer.max_steps counts optimizer steps.
    assert len(scalars["train/clip_frac"]) == 2
    assert max(v for _, v in scalars["train/clip_frac"]) > 0
    assert max(v for _, v in scalars["perf/logprob_mismatch"]) < 1e-3  # sampler and trainer agree
    assert all(v > 0 for _, v in scalars["train/entropy"])


def test_reinforce_pp_with_the_kl_penalty_in_the_reward_trains(tmp_path):
    scalars = train_and_read(tmp_path / "rpp", ["+experiment=r1_zero", "trainer.max_steps=3", "rl.prompts_per_step=4",
                                                "advantage=reinforce_pp", "loss.kl_in_reward=true",
                                                "loss.kl_estimator=k1", "rl.optim.lr=1e-3"])
    assert [s for s, _ in scalars["train/loss"]] == [0, 1, 2]
    # The KL is measured (and charged in the reward) once the policy has moved away from the reference.
    assert scalars["train/kl"][-1][1] != 0.0
    assert all(abs(v) < 1e3 for _, v in scalars["train/loss"])
