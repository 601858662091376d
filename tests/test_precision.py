"""bf16 on a CPU: mixed precision trains the policy it samples, and a CPU without fast bf16 falls back or warns."""

import pytest
import torch

from conftest import compose_config, read_scalars
from r1lab.engines.precision import bf16_is_slow_here, matmul_gflops, resolve_cpu_bf16
from r1lab.rl.step_metrics import LOGPROB_TOLERANCE, logprob_agreement
from r1lab.stages import run_stage
from r1lab.testing import FAST, run_cli

QUICK = [*FAST, "callbacks.policy=null", "callbacks.checkpoint=null", "+experiment=r1_zero"]
SLOW_BF16 = bf16_is_slow_here()


def test_the_matmul_rates_are_measured_for_both_dtypes():
    rates = matmul_gflops()
    assert set(rates) == {"float32", "bfloat16"} and all(r > 0 for r in rates.values())


@pytest.mark.parametrize("overrides", [["trainer.precision=bf16-mixed"], ["model.dtype=bfloat16", "model.peft=lora"]])
def test_bf16_on_a_cpu_without_fast_bf16_falls_back_to_fp32_with_the_reason(overrides):
    cfg = compose_config(["+experiment=r1_zero", *overrides])
    warnings = resolve_cpu_bf16(cfg)
    if not SLOW_BF16:  # this CPU multiplies bf16 faster than fp32: the run keeps what it asked for
        assert warnings == [] and cfg.trainer.precision == compose_config(["+experiment=r1_zero", *overrides]).trainer.precision
        return
    assert cfg.trainer.precision == "32-true" and cfg.model.dtype == "float32"
    assert len(warnings) == 1 and "GFLOP/s" in warnings[0] and "training in fp32 instead" in warnings[0]
    assert "cpu_bf16=keep" in warnings[0]


def test_cpu_bf16_keep_keeps_bf16_and_a_bad_choice_lists_the_choices():
    cfg = compose_config(["+experiment=r1_zero", "trainer.precision=bf16-mixed", "cpu_bf16=keep"])
    warnings = resolve_cpu_bf16(cfg)
    assert cfg.trainer.precision == "bf16-mixed"
    assert (len(warnings) == 1 and "training in bf16 anyway" in warnings[0]) if SLOW_BF16 else warnings == []
    with pytest.raises(ValueError, match="cpu_bf16='fast': choose fallback or keep"):
        resolve_cpu_bf16(compose_config(["cpu_bf16=fast"]))


def test_bf16_weights_with_full_fine_tuning_are_warned_about():
    cfg = compose_config(["+experiment=r1_zero", "model.dtype=bfloat16", "cpu_bf16=keep"])
    assert any("AdamW steps smaller than bf16's resolution" in w for w in resolve_cpu_bf16(cfg))
    lora = compose_config(["+experiment=r1_zero", "model.dtype=bfloat16", "model.peft=lora", "cpu_bf16=keep"])
    assert not any("AdamW" in w for w in resolve_cpu_bf16(lora))  # a frozen base loses nothing


def test_a_run_asking_for_bf16_says_what_it_does_in_its_log(tmp_path):
    run_cli(["+experiment=r1_zero", *FAST, "trainer.max_steps=1", "trainer.precision=bf16-mixed",
             f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    log = (tmp_path / "run" / "r1lab.log").read_text()
    if SLOW_BF16:
        assert "training in fp32 instead" in log
    else:
        assert "GFLOP/s" not in log


def test_the_agreement_of_sampler_and_trainer_log_probs_by_hand():
    sampler = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]])
    trainer = torch.tensor([[-1.1, -2.0, -2.0], [-0.5, -0.7, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # the third column is padding: not counted
    agreement = logprob_agreement(sampler, trainer, mask)
    assert agreement["perf/logprob_mismatch"] == pytest.approx(0.2)
    assert agreement["perf/logprob_mismatch_mean"] == pytest.approx((0.1 + 0 + 0 + 0.2) / 4)


def test_bf16_mixed_training_runs_and_its_sampler_agrees_with_its_trainer(tmp_path):
    scalars = read_scalars(_train(tmp_path / "bf16", ["trainer.precision=bf16-mixed", "cpu_bf16=keep",
                                                      "rl.schedule.ppo_epochs=2", "trainer.max_steps=4"]))
    gaps = [v for _, v in scalars["perf/logprob_mismatch_mean"]]
    assert len(gaps) == 2 and max(gaps) < LOGPROB_TOLERANCE[torch.bfloat16]
    assert max(gaps) > LOGPROB_TOLERANCE[torch.float32] / 100  # bf16 rounding shows: it really ran in bf16
    assert all(torch.isfinite(torch.tensor(v)) for _, v in scalars["train/loss"])


def test_fp32_runs_log_the_agreement_without_an_extra_pass(tmp_path):
    scalars = read_scalars(_train(tmp_path / "fp32", ["trainer.max_steps=2"]))
    gaps = [v for _, v in scalars["perf/logprob_mismatch_mean"]]
    assert len(gaps) == 2 and max(gaps) < LOGPROB_TOLERANCE[torch.float32]
    assert max(v for _, v in scalars["perf/logprob_mismatch"]) < 1e-3


def _train(run_dir, overrides):
    run_stage(compose_config([*QUICK, *overrides], output_dir=run_dir))
    return run_dir


def test_a_rollout_casts_each_weight_once_and_drops_the_copies_before_the_update():
    from r1lab.engines.precision import weights_cast_once

    linear, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):  # as Lightning's bf16-mixed
        with weights_cast_once(torch.device("cpu")):
            before = linear(x)
            with torch.no_grad():
                linear.weight.add_(1.0)  # (never happens while sampling) shows that the cast copy is reused
            assert torch.equal(linear(x), before)
        after = linear(x)  # outside: the updated weights, cast afresh
        assert not torch.equal(after, before)
    with weights_cast_once(torch.device("cpu")):  # no autocast: nothing to cache, fp32 as it was
        assert linear(x).dtype == torch.float32
