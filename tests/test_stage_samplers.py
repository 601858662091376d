"""Every stage that samples outside the RL step (evaluation, rejection sampling, the pipeline's evaluation, the
diagnostics' ablation) samples with the configured sampler: `Sampler.with_settings` gives each its own
decoding settings on the same engine."""

import json

import pytest

from r1lab.samplers.base import GREEDY
from r1lab.samplers.hf import HFSampler
from r1lab.testing import run_cli


def test_a_variant_takes_new_settings_and_leaves_the_sampler_as_it_was():
    sampler = HFSampler(group_size=8, temperature=1.0, top_p=1.0, max_new_tokens=64, engine="generate")
    evaluation = sampler.with_settings(group_size=1, max_new_tokens=16, record_logprobs=False, **GREEDY)
    assert (evaluation.group_size, evaluation.top_k, evaluation.max_new_tokens, evaluation.record_logprobs) == (1, 1, 16, False)
    assert evaluation.engine == "generate"  # what the run configured and the stage did not change stays
    assert (sampler.group_size, sampler.top_k, sampler.max_new_tokens, sampler.record_logprobs) == (8, 0, 64, True)


def test_a_variant_rejects_settings_the_sampler_does_not_have_or_cannot_use():
    sampler = HFSampler(group_size=4)
    with pytest.raises(ValueError, match="HFSampler has no setting beam_width; it has group_size, max_new_tokens, "
                                         "record_logprobs, temperature, top_k, top_p"):
        sampler.with_settings(beam_width=4)
    with pytest.raises(ValueError, match="group_size must be >= 1"):
        sampler.with_settings(group_size=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sampler.with_settings(temperature=0.0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        sampler.with_settings(top_p=1.5)


def test_a_one_member_group_samples_outside_the_rl_step(policy):
    from r1lab.rollout import PromptBatch

    batch = PromptBatch(["User: 1+2", "User: 30+4"], {"answer": ["3", "34"]}, [0, 1])
    greedy = HFSampler(group_size=4, max_new_tokens=12).with_settings(group_size=1, **GREEDY)
    first, again = (greedy.rollout(policy.model, policy.tokenizer, batch) for _ in range(2))
    assert len(first.completions) == 2 and first.completions == again.completions  # argmax: deterministic


def test_evaluation_samples_with_the_configured_sampler(tmp_path):
    """sampler.top_k=1 reaches the evaluation (the stage sets T and top-p, not top-k): every sample is the
    argmax completion, so the n samples of a problem agree (pass@1 = pass@n = cons@n) and match greedy
    decoding. Sampled at T = 0.6 instead, the toy model's pass@1 and pass@4 differ on these problems."""
    run_cli(["eval", "model=toy", "task=toy_addition", "n=4", "k=1,4", "limit=48", "max_new_tokens=48",
             "sampler.top_k=1", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    report = json.loads((tmp_path / "eval.json").read_text())
    metrics = report["results"]["all"]
    assert report["sampler"] == "HFSampler" and report["n"] == 4
    assert metrics["pass@1"] > 0  # some problems right: agreement is not just all-wrong
    assert metrics["pass@1"] == metrics["pass@4"] == metrics["cons@4"]
    assert metrics["pass@1"] == pytest.approx(metrics["greedy"], abs=1 / 48 + 1e-9)  # at most one argmax tie apart


def test_evaluation_with_one_sample_per_problem(tmp_path):
    run_cli(["eval", "model=toy", "task=toy_addition", "n=1", "k=1", "limit=4", "max_new_tokens=48",
             "greedy=false", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    metrics = json.loads((tmp_path / "eval.json").read_text())["results"]["all"]
    assert metrics["samples_per_problem"] == 1 and set(metrics) == {"problems", "samples_per_problem", "pass@1",
                                                                     "cons@1"}


def test_rejection_sampling_samples_with_the_configured_sampler(tmp_path):
    """sampler.top_k=1: the samples of a prompt are identical, so dedupe keeps one per prompt it sees."""
    run_cli(["+experiment=rejection_sample", "model=toy", "task=toy_addition", "stage.limit=6",
             "stage.samples_per_prompt=3", "stage.filters.accuracy=false", "stage.filters.format=false", "stage.filters.language=null",
             "sampler.max_new_tokens=48", "sampler.top_k=1", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    dedupe = next(f for f in summary["filters"] if f["filter"] == "dedupe")
    assert summary["sampled"] == 18 and summary["sampler"] == "HFSampler"
    assert (dedupe["in"], dedupe["kept"]) == (18, 6)
