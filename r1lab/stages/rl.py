"""`stage=rl` (the default): reinforcement learning on a task, the RL step in r1lab/rl/module.py driven by
Lightning."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from r1lab.callbacks.curriculum import CurriculumUpdate
from r1lab.curricula.base import build_curriculum
from r1lab.runs.checkpointing import (auto_resume, checkpoint_mismatch_explained, read_checkpoint, resolve_resume,
                                 resume_differences, run_identity)
from r1lab.runs.header import print_run_header
from r1lab.models.policy import check_fits_context
from r1lab.engines.patches import leave_no_ranks_behind
from r1lab.plugins import load_plugins
from r1lab.rewards.base import RewardSet
from r1lab.rl.collect import RolloutCollector
from r1lab.rl.module import RLModule
from r1lab.rl.settings import OptimSettings, ScheduleSettings
from r1lab.rl.step_metrics import StepMetrics
from r1lab.tasks.datamodule import PromptDataModule
from r1lab.trainer import make_trainer

log = logging.getLogger("r1lab")


def rl_stage(cfg: DictConfig, callbacks: Sequence[Callback] = ()) -> float | None:
    """Build the RL run from `cfg`, fit it, and return the last value of `cfg.optimized_metric`.

    `callbacks` are added to the config's (for programs that drive r1lab, e.g. benchmarks/vs_trl.py).
    """
    sampler = instantiate(cfg.sampler)  # cheap validation first: bad options fail before the model loads
    loss = instantiate(cfg.loss)
    advantage = instantiate(cfg.advantage)
    rewards = RewardSet.from_config(cfg.get("reward") or {})  # reward=[] leaves no key at all
    optim, schedule = OptimSettings(**cfg.rl.optim), ScheduleSettings(**cfg.rl.schedule)
    if cfg.model.get("gradient_checkpointing") and schedule.share_prompts:
        # A recomputed layer would drop (or extend twice) the shared prompt cache: every row runs its own prompt.
        log.info("model.gradient_checkpointing: rl.schedule.share_prompts is off (the prompt cache and recomputed "
                 "layers do not mix)")
        schedule = replace(schedule, share_prompts=False)
    task = instantiate(cfg.task)
    datamodule = PromptDataModule(task, build_curriculum(cfg.curriculum), cfg.rl.prompts_per_step, seed=cfg.seed)
    resume, run_dir = cfg.get("resume"), Path(cfg.paths.output_dir)
    checkpoint, resume_note = auto_resume(run_dir) if resume == "auto" else (resolve_resume(resume, run_dir), None)
    # Resuming (resume=auto without a checkpoint too: a run killed before its first one) continues from this
    # step; what an interrupted run logged from there on is dropped from view (logger, samples.jsonl).
    resume_step, saved_run = read_checkpoint(checkpoint) if checkpoint else ((0 if resume else None), {})
    identity = run_identity(cfg)
    differences = resume_differences(saved_run, identity, checkpoint) if checkpoint else []  # another model: refused
    for difference in differences:
        log.warning("resume: this run differs from the one that wrote %s: %s", checkpoint, difference)
    policy = instantiate(cfg.model)
    task.render_prompts(policy.tokenizer)  # task.prompt_format=chat: the policy's own chat template
    check_fits_context(policy, [row["prompt"] for row in task.rows], int(cfg.sampler.max_new_tokens))
    pad_token_id = policy.tokenizer.pad_token_id
    collector = RolloutCollector(rewards, task.verify, pad_token_id, dynamic_sampling=cfg.rl.dynamic_sampling.enabled,
                                 max_draws=cfg.rl.dynamic_sampling.max_draws)
    monitor = [cfg.get("optimized_metric")] + [c.get("monitor") for c in cfg.callbacks.values() if c is not None]
    step_metrics = StepMetrics(rewards, pad_token_id, task.hard_difficulty, getattr(task, "answer_format", "auto"))
    module = RLModule(policy, sampler, collector, advantage, loss, step_metrics, optim, schedule, monitor=monitor,
                      seed=cfg.seed)
    module.resumed_at, module.run_identity = resume_step, identity

    trainer = make_trainer(cfg, callbacks=[CurriculumUpdate(), *callbacks], model=policy.model,
                           max_grad_norm=optim.max_grad_norm, resume_step=resume_step)
    if trainer.is_global_zero:
        print_run_header(cfg, load_plugins(), cfg.paths.output_dir, policy.source,
                         resumed=f"{checkpoint} (from RL step {module.resumed_at})" if checkpoint else None,
                         warnings=([resume_note] if resume_note else []) +
                         [f"resumed into another {d}" for d in differences])
    with leave_no_ranks_behind(), checkpoint_mismatch_explained(checkpoint):
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
        finally:
            sampler.close()  # vLLM's engine goes while the process group it uses still exists

    value = module.last_metrics.get(cfg.get("optimized_metric") or "")
    return None if value is None or not math.isfinite(float(value)) else float(value)
