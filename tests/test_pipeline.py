"""The 4-stage R1 pipeline, shrunk to a smoke run: every stage runs, artifacts pass by path, the report lists them."""

import json

from r1lab.testing import compose_config
from r1lab.stages import run_stage

STAGES = ["1_cold_start", "2_reasoning_rl", "3a_rejection_sample", "3b_sft_from_base", "4_rl_all_scenarios"]


def test_the_r1_pipeline_runs_its_four_stages_in_order(tmp_path):
    # stage.smoke: each stage's own `smoke` overrides (a few steps, tiny batches) replace its settings.
    cfg = compose_config(["+experiment=r1_pipeline", "stage.smoke=true", "stage.evaluate.limit=4",
                          "stage.evaluate.samples=2", "stage.evaluate.max_new_tokens=32"], output_dir=tmp_path)
    run_stage(cfg)
    results = json.loads((tmp_path / "pipeline.json").read_text())
    assert list(results) == STAGES
    assert "trainer.max_steps=1" in results["2_reasoning_rl"]["overrides"]
    assert "trainer.max_steps=50" not in results["2_reasoning_rl"]["overrides"]
    for name in ("1_cold_start", "2_reasoning_rl", "3b_sft_from_base", "4_rl_all_scenarios"):
        assert (tmp_path / name / "policy" / "config.json").is_file(), name
        assert 0 <= results[name]["accuracy"] <= 1 and 0 <= results[name]["format_rate"] <= 1
    # Artifacts by path: stage 2 started from stage 1's policy, stage 3b from the base model (the paper's
    # detail) on stage 3a's data, stage 4 from 3b.
    assert f"model.name_or_path={tmp_path}/1_cold_start/policy" in results["2_reasoning_rl"]["overrides"]
    assert "model=toy" in results["3b_sft_from_base"]["overrides"]
    assert any(f"{tmp_path}/3a_rejection_sample/dataset.jsonl" in o for o in results["3b_sft_from_base"]["overrides"])
    assert f"model.name_or_path={tmp_path}/3b_sft_from_base/policy" in results["4_rl_all_scenarios"]["overrides"]
    assert "| 4_rl_all_scenarios |" in (tmp_path / "pipeline.md").read_text()


def test_a_pipeline_hands_its_command_line_sampler_to_every_stage():
    """`python -m r1lab +experiment=r1_pipeline sampler=vllm`: each stage samples with vLLM, unless it picks its own."""
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig

    from r1lab.stages.pipeline import inherited_sampler

    assert inherited_sampler(["+experiment=r1_zero"]) == []  # outside a Hydra app (tests, notebooks): nothing
    with initialize_config_module(config_module="r1lab.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["sampler=hf", "sampler.top_k=5", "seed=3"],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        assert inherited_sampler(["+experiment=r1_zero", "sampler.group_size=4"]) == ["sampler=hf", "sampler.top_k=5"]
        assert inherited_sampler(["+experiment=r1_zero", "sampler=mcts"]) == []
    finally:
        HydraConfig.instance().cfg = None
