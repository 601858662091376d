"""`stage=pipeline`: several r1lab runs in order, each in its own sub-folder of the run directory, later
ones reading earlier ones' artifacts by path (`{run_dir}` in an override is replaced by this run's directory).

After each stage that leaves a policy (`<stage dir>/policy`), a quick evaluation on the task measures
accuracy and readability (format rate, language mixing, completion length); `pipeline.md` tabulates them.
A stage with `evaluate: false` is not evaluated (a teacher prompted in another format than the task's).
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from r1lab.judging.diagnostics import mixes_languages
from r1lab.judging.language import make_identifier
from r1lab.models import load_policy
from r1lab.rewards.format import FormatReward
from r1lab.rollout import PromptBatch
from r1lab.stages.run import run_stage


def compose_stage(overrides: list[str], output_dir: Path) -> DictConfig:
    """The config of one pipeline stage, composed like a command line (inside a running Hydra app)."""
    if GlobalHydra.instance().is_initialized():
        cfg = compose(config_name="config", overrides=overrides)
    else:  # called outside `python -m r1lab` (tests, notebooks)
        with initialize_config_module(config_module="r1lab.conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def inherited_sampler(stage_overrides: list[str]) -> list[str]:
    """The pipeline's own sampler overrides from its command line (`sampler=vllm`, `sampler.kv_cache_gb=1`), put
    before each stage's: every stage samples as asked; a stage that picks its own sampler keeps it."""
    from hydra.core.hydra_config import HydraConfig

    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")

    if not HydraConfig.initialized() or any(key(o) == "sampler" for o in stage_overrides):
        return []
    return [o for o in HydraConfig.get().overrides.task if key(o) == "sampler" or key(o).startswith("sampler.")]


def readability(policy_dir: Path, task_cfg: DictConfig, sampler_cfg: DictConfig, samples: int, limit: int,
                max_new_tokens: int, seed: int) -> dict[str, float]:
    """Accuracy (the task's verifier), format rate, language-mixing rate and mean completion length of a
    policy on the task, sampled with the configured sampler at the R1 paper's evaluation settings."""
    torch.manual_seed(seed)
    task, policy = instantiate(task_cfg), load_policy(str(policy_dir))
    task.render_prompts(policy.tokenizer)
    rows = [task[i] for i in range(min(limit, len(task)))]
    sampler = instantiate(sampler_cfg).with_settings(group_size=samples, temperature=0.6, top_p=0.95,
                                                     max_new_tokens=max_new_tokens, record_logprobs=False)
    with torch.no_grad(), closing(sampler):
        rollout = sampler.rollout(policy.model.eval(), policy.tokenizer, PromptBatch.collate(rows))
    completions, prompts = rollout.completions, rollout.prompts
    toy = make_identifier("toy")
    n = len(completions)
    return {"accuracy": sum(task.verify(completions, rollout.columns)) / n,
            "format_rate": sum(FormatReward()(prompts, completions)) / n,
            "mixed_rate": sum(mixes_languages(c, toy) for c in completions) / n,
            "completion_len": float(rollout.completion_lengths.mean())}


def pipeline_stage(cfg, stages: list[dict[str, Any]], evaluate: dict[str, Any] | None = None,
                   smoke: bool = False) -> float | None:
    """Run `stages` ({name, overrides, smoke, evaluate}) in order; evaluate each stage's policy (unless its
    `evaluate` is false); write pipeline.json/.md.

    With `smoke`, each stage's `smoke` overrides (a few steps, tiny batches) replace its own for the same keys.
    """
    run_dir = Path(cfg.paths.output_dir)
    evaluate = dict(evaluate or {})
    results: dict[str, dict[str, Any]] = {}
    for stage in stages:
        name = stage["name"]
        overrides = list(stage["overrides"])
        if smoke:
            small = list(stage.get("smoke") or [])
            keys = {o.split("=", 1)[0] for o in small}
            overrides = [o for o in overrides if o.split("=", 1)[0] not in keys] + small
        overrides = [o.replace("{run_dir}", str(run_dir)) for o in inherited_sampler(overrides) + overrides]
        stage_dir = run_dir / name
        stage_cfg = compose_stage(overrides, stage_dir)
        print(f"[pipeline] {name}: python -m r1lab {' '.join(overrides)}  ->  {stage_dir}", flush=True)
        value = run_stage(stage_cfg)
        results[name] = {"dir": str(stage_dir), "overrides": overrides, "value": value}
        policy_saved = any((stage_dir / "policy" / name).is_file() for name in ("config.json", "adapter_config.json"))
        if evaluate and stage.get("evaluate", True) and policy_saved:
            # e.g. held-out problems: the task under another seed (resolved first: the merge leaves the root behind)
            task_cfg = OmegaConf.merge(OmegaConf.to_container(cfg.task, resolve=True), evaluate.get("task_overrides") or {})
            results[name] |= readability(stage_dir / "policy", task_cfg, cfg.sampler, evaluate.get("samples", 4),
                                         evaluate.get("limit", 64), evaluate.get("max_new_tokens", 100), cfg.seed)
        (run_dir / "pipeline.json").write_text(json.dumps(results, indent=2))  # after each stage: partial too
    keys = ["accuracy", "format_rate", "mixed_rate", "completion_len"]
    lines = ["| stage | " + " | ".join(keys) + " | run dir |", "|---" * (len(keys) + 2) + "|"]
    for name, result in results.items():
        cells = [f"{result[k]:.3f}" if k in result else "" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {result['dir']} |")
    (run_dir / "pipeline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    last = [r for r in results.values() if "accuracy" in r]
    return last[-1]["accuracy"] if last else None
