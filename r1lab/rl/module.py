"""The RL step. Read `training_step` first: it is the whole algorithm.

One LightningModule with manual optimisation. The DataModule yields prompts only; the rollout, rewards and
advantages are computed here under no_grad, then the loss is minimised over `ppo_epochs` × `num_minibatches`
optimizer steps. Every part is a small object with one job, testable without Lightning: the collector
samples and scores (r1lab/rl/collect.py), the advantage estimator and the loss come from registries, and
StepMetrics gathers what is logged over ranks (r1lab/rl/step_metrics.py).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from r1lab.runs.checkpointing import restore_rng_state, rng_state
from r1lab.runs.errors import RunError
from r1lab.engines.distributed import all_ranks_agree, local_share, prompt_seeds, rank_and_world
from r1lab.models.peft import is_peft, trainable_names
from r1lab.models.policy import Policy
from r1lab.engines.precision import weights_cast_once
from r1lab.rl.advantages import AdvantageEstimator, checked_advantages
from r1lab.rl.collect import RolloutCollector
from r1lab.rl.logprobs import completion_logprobs
from r1lab.rl.losses import PolicyLoss
from r1lab.rl.settings import OptimSettings, ScheduleSettings
from r1lab.rl.step_metrics import LOGPROB_TOLERANCE, StepMetrics, logprob_agreement, peak_memory_gb
from r1lab.rollout import PromptBatch, Rollout, ScoredRollout
from r1lab.samplers.base import Sampler
from r1lab.samplers.lean_decode import compute_dtype
from r1lab.engines.strategies import generation_parameters, is_deepspeed, is_fsdp, is_fsdp2, shard_fully


log = logging.getLogger("r1lab")


class DivergedError(RunError):
    """Too many RL steps in a row had non-finite rewards or loss."""


@dataclass(frozen=True)
class StepOutput(Mapping):
    """What one RL step hands its callbacks (`outputs` in `on_train_batch_end`): the global batch's rollout
    and scores, the logged metrics, and the RL step they were logged at.

    A Mapping only because Lightning insists: a manual-optimisation `training_step` must return a Mapping,
    and callbacks receive its `.copy()`. This one copies as itself, so callbacks get the typed object
    (`outputs.rollout`, `outputs.scored`, ...).
    """

    rollout: Rollout
    scored: ScoredRollout
    metrics: dict[str, float]
    step: int

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def copy(self) -> StepOutput:
        return self

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


class RLModule(pl.LightningModule):
    def __init__(self, policy: Policy, sampler: Sampler, collector: RolloutCollector, advantage: AdvantageEstimator,
                 loss: PolicyLoss, step_metrics: StepMetrics, optim: OptimSettings = OptimSettings(),
                 schedule: ScheduleSettings = ScheduleSettings(), monitor: Sequence[str] = (), seed: int = 0):
        super().__init__()
        self.automatic_optimization = False  # rollouts, PPO epochs and minibatches are ours to schedule
        self.policy = policy.model
        self.tokenizer = policy.tokenizer
        # The reference policy is a frozen copy of the starting policy; only the KL term needs it. With LoRA it
        # is the base model itself, the adapters switched off: no second copy of the weights.
        self.ref_policy = (copy.deepcopy(policy.model).requires_grad_(False).eval()
                           if loss.needs_reference and not is_peft(policy.model) else None)
        self.strict_loading = not is_peft(policy.model)  # LoRA checkpoints hold the adapters only
        self.sampler, self.collector, self.advantage, self.loss = sampler, collector, advantage, loss
        self.step_metrics = step_metrics
        self.optim, self.schedule = optim, schedule
        self.consecutive_skips = 0
        self.seed = seed  # with the RL step, seeds each prompt's sampling (sampler.seeding=per_prompt)
        self.rl_step = 0  # RL steps done: the x-axis of every metric (optimizer steps may be more)
        self.resumed_at: int | None = None  # the RL step a resumed run continues from; None: not resuming
        self.run_identity: dict[str, Any] = {}  # saved with each checkpoint (checkpointing.run_identity)
        self.monitor = [name for name in monitor if name]  # metrics callbacks watch (trainer.callback_metrics)
        self.last_metrics: dict[str, float] = {}
        self.sampled_vs_trained: dict[str, float] | None = None  # perf/logprob_mismatch* of the current step
        self.drops_out = any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in policy.model.modules())

    def on_fit_start(self) -> None:
        shared_stream = rank_and_world()[1] > 1 and getattr(self.sampler, "seeding", None) == "global"
        if shared_stream and self.trainer.is_global_zero:
            # Every rank starts from the same global RNG state (and a resumed run restores rank 0's on all).
            log.warning("several ranks sample with the same global RNG stream; sampler.seeding=per_prompt gives "
                        "each prompt its own seed (and the same completions as a single process)")

    # ------------------------------------------------------------------------------------------ the step
    def training_step(self, batch: PromptBatch, batch_idx: int) -> StepOutput:
        started = time.perf_counter()
        with torch.no_grad():
            # 1-2. Rollout (G completions per prompt from the current policy), the task's verdict and the
            #      reward (a weighted sum of named terms) per completion; with dynamic sampling, more prompts
            #      until groups differ. With several ranks, each samples its share of the global batch.
            self.policy.eval()
            collected = self.collector.collect(self.sample, self.local_part(batch, draw=0), self.more_prompts)
            rollout, scored = collected.rollout, collected.scored
            rollout_s = time.perf_counter() - started
            # 3. Log-probs the loss compares against: the pre-update policy (needed when a rollout feeds
            #    several optimizer steps, or for a KL reward penalty) and the frozen reference (for the KL).
            if self.schedule.updates_per_rollout > 1 or self.loss.kl_in_reward or self.sampler.checks_logprobs:
                rollout.old_logprobs = self.logprobs(self.policy, rollout)
            if self.loss.needs_reference:
                rollout.ref_logprobs = self.reference_logprobs(rollout)
            rollout.rewards = scored.total.to(self.device) - self.loss.reward_penalty(rollout)
            # 4. Advantage: how much better each completion is than its baseline.
            rollout.advantages = checked_advantages(self.advantage, rollout)
        everyone, everyone_scored = self.step_metrics.global_batch(rollout, scored)  # metrics describe all ranks
        metrics = self.step_metrics.of_rollout(everyone, everyone_scored)

        # 5. Loss and optimizer steps: ppo_epochs passes over shuffled minibatches of the rollout.
        self.policy.train()
        self.sampled_vs_trained = None  # the first update's log-probs against the sampler's (same weights)
        if rollout.sampler_logprobs is not None and rollout.old_logprobs is not None:
            self.sampled_vs_trained = logprob_agreement(rollout.sampler_logprobs, rollout.old_logprobs,
                                                        rollout.completion_mask)
        updates: list[dict[str, float]] = []
        if all_ranks_agree(scored.nonfinite == 0):
            for _ in range(self.schedule.ppo_epochs):
                for minibatch in rollout.minibatches(self.schedule.num_minibatches):
                    updates.append(self.update(minibatch))
        self.stop_if_diverged(updates)
        metrics |= self.step_metrics.of_updates(updates, lr=self.optimizers().param_groups[0]["lr"])

        perf = {"train/dynamic_sampling_draws": float(collected.draws), "perf/rollout_s": rollout_s,
                "perf/step_s": time.perf_counter() - started, "perf/peak_mem_gb": peak_memory_gb(self.device)}
        if self.sampled_vs_trained is not None:
            perf |= self.sampled_vs_trained
            self.warn_if_policies_differ(self.sampled_vs_trained["perf/logprob_mismatch_mean"])
        metrics |= self.step_metrics.of_timing(perf, tokens=everyone.completion_lengths.sum().item())
        step = self.log_step(metrics)
        return StepOutput(everyone, everyone_scored, metrics, step)

    def local_part(self, batch: PromptBatch, draw: int) -> PromptBatch:
        """This rank's share of a global batch, each prompt with its sampling seed."""
        rank, world = rank_and_world()
        batch = replace(batch, seeds=prompt_seeds(self.seed, self.rl_step, draw, len(batch)))
        return batch.part(local_share(len(batch), rank, world))

    def more_prompts(self, draw: int) -> PromptBatch:
        """This rank's share of the prompts for extra sampling round `draw` (dynamic sampling)."""
        return self.local_part(self.trainer.datamodule.extra_batch(draw), draw=draw)

    def sample(self, batch: PromptBatch) -> Rollout:
        # ZeRO-3: gather once, not per token; bf16-mixed: cast each weight to bf16 once, not per token
        with generation_parameters(self.strategy, self.policy), weights_cast_once(self.device):
            return self.sampler.rollout(self.policy, self.tokenizer, batch)

    def update(self, minibatch: Rollout) -> dict[str, float]:
        """One optimizer step on a minibatch; skipped (and reported) when the loss is not finite."""
        optimizer = self.optimizers()
        logprobs, entropy = completion_logprobs(self.policy, minibatch, self.sampler.temperature, with_entropy=True,
                                                buckets=self.schedule.length_buckets,
                                                share_prompts=self.schedule.share_prompts)
        old = minibatch.old_logprobs if minibatch.old_logprobs is not None else logprobs.detach()
        if self.sampled_vs_trained is None and minibatch.sampler_logprobs is not None and not self.drops_out:
            # Free where no extra pass computed old_logprobs: before the first optimizer step these are the
            # log-probs of the policy that sampled (unless dropout, e.g. LoRA's, perturbs them in training).
            self.sampled_vs_trained = logprob_agreement(minibatch.sampler_logprobs, logprobs.detach(),
                                                        minibatch.completion_mask)
        mask = self.loss.token_mask(minibatch)
        out = self.loss(logprobs, old, minibatch.ref_logprobs, minibatch.advantages, mask)
        if not all_ranks_agree(bool(torch.isfinite(out.loss))):  # every rank skips, or none (gradient sync)
            return {"skipped": 1.0}
        optimizer.zero_grad()
        self.manual_backward(out.loss)
        grad_norm = self.clip_gradients_to_max_norm(optimizer)
        optimizer.step()
        if is_deepspeed(self.strategy):  # DeepSpeed clips inside its step and knows the norm only afterwards
            grad_norm = float(self.strategy.deepspeed_engine.get_global_grad_norm() or float("nan"))
        self.lr_schedulers().step()
        self.sampler.policy_updated()
        entropy = (entropy * minibatch.completion_mask).sum() / minibatch.completion_mask.sum().clamp_min(1.0)
        return {"loss": out.loss.item(), "grad_norm": grad_norm, "entropy": entropy.item(), "skipped": 0.0,
                "tokens": mask.sum().item(), **out.metrics}

    def clip_gradients_to_max_norm(self, optimizer) -> float:
        """Clip the gradient to `max_grad_norm`; returns its norm before clipping (over all ranks' shards)."""
        if is_fsdp(self.strategy):  # only the root FSDP module sees every shard
            return float(self.strategy.model.clip_grad_norm_(self.optim.max_grad_norm or float("inf")))
        if is_deepspeed(self.strategy):  # gradient_clipping is in DeepSpeed's config (r1lab.engines.strategies)
            return float("nan")
        if is_fsdp2(self.strategy):  # DTensor gradients: torch's clip computes the norm over all shards
            norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.optim.max_grad_norm or float("inf"))
            return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        grads = [p.grad for p in self.policy.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
        if self.optim.max_grad_norm:
            self.clip_gradients(optimizer, gradient_clip_val=self.optim.max_grad_norm, gradient_clip_algorithm="norm")
        return grad_norm

    @property
    def strategy(self) -> Any:
        return self._trainer.strategy if self._trainer is not None else None

    # ----------------------------------------------------------------------------------------- helpers
    def warn_if_policies_differ(self, mean_gap: float) -> None:
        """Once per run: the sampler and the trainer disagree on log-probs by more than rounding explains."""
        dtype = compute_dtype(next(self.policy.parameters()))
        tolerance = LOGPROB_TOLERANCE.get(dtype, 1e-2)
        if mean_gap > tolerance and not getattr(self, "_warned_mismatch", False):
            self._warned_mismatch = True
            log.warning(f"step {self.rl_step}: the sampler's log-probs differ from the trainer's by {mean_gap:.2g} "
                        f"on average (tolerance for {str(dtype).removeprefix('torch.')}: {tolerance:g}): they score "
                        "different policies; see perf/logprob_mismatch_mean")

    def stop_if_diverged(self, updates: list[dict[str, float]]) -> None:
        """Count RL steps in a row whose every update was skipped; too many stop the run (logs kept)."""
        all_skipped = not updates or all(u["skipped"] for u in updates)
        self.consecutive_skips = self.consecutive_skips + 1 if all_skipped else 0
        if self.consecutive_skips > self.schedule.max_consecutive_skips:
            raise DivergedError(f"{self.consecutive_skips} consecutive RL steps had non-finite rewards or loss; "
                                "stopping (checkpoints and logs so far are kept). Look at train/nonfinite_rewards.")

    def log_step(self, metrics: dict[str, float]) -> int:
        """Write this RL step's metrics at x = RL step; returns that step.

        Straight to the logger: Lightning's result collection drops keys first seen on the first batch
        after a resume (tags such as train/accuracy_d5 come and go with the batch), and resumed runs must
        log exactly what the uninterrupted run logs.
        """
        step = self.rl_step
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=step)
        self.last_metrics = metrics
        # Lightning's self.log costs ~0.3 ms a key: only what callbacks monitor goes to callback_metrics.
        watched = {name: metrics[name] for name in self.monitor if name in metrics}
        self.log_dict({**watched, "reward": metrics["train/reward"], "acc": metrics["train/accuracy"]},
                      prog_bar=True, logger=False, batch_size=1)
        self.rl_step += 1
        return step

    def reference_logprobs(self, rollout: Rollout) -> Tensor:
        if self.ref_policy is not None:
            return self.logprobs(self.ref_policy, rollout)
        with self.policy.disable_adapter():  # LoRA: the base model is the reference
            return self.logprobs(self.policy, rollout)

    def logprobs(self, model: torch.nn.Module, rollout: Rollout) -> Tensor:
        return completion_logprobs(model, rollout, self.sampler.temperature, buckets=self.schedule.length_buckets,
                                   share_prompts=self.schedule.share_prompts)

    # -------------------------------------------------------------------------------- Lightning plumbing
    def configure_model(self) -> None:
        """trainer=fsdp2 lays the model out here (Lightning calls this before the optimizer is made): the
        policy and the frozen reference each sharded over the data-parallel ranks. Other strategies wrap the
        model themselves."""
        if is_fsdp2(self.strategy) and not getattr(self, "_sharded", False):
            mesh = self.device_mesh["data_parallel"]
            for model in (self.policy, self.ref_policy):
                if model is not None:
                    shard_fully(model, mesh)
            self._sharded = True
            sharded = sum(type(p).__name__ == "DTensor" for p in self.policy.parameters())
            log.info(f"FSDP2: {sharded} of {len(list(self.policy.parameters()))} policy parameters sharded over "
                     f"{mesh.size()} ranks")

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.policy.parameters(), lr=self.optim.lr, betas=self.optim.betas,
                                      weight_decay=self.optim.weight_decay)
        warmup = max(int(self.optim.warmup_steps), 0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Every step up to this one is on disk before the checkpoint that skips past it exists.
        if self.logger is not None:
            self.logger.save()
        # RNG states make a resumed run sample exactly what the uninterrupted run would have.
        checkpoint["r1lab_rng"] = {**rng_state(), "consecutive_skips": self.consecutive_skips, "rl_step": self.rl_step}
        checkpoint["r1lab_run"] = self.run_identity  # a resume compares its own with it
        if is_peft(self.policy):  # the frozen base is the model the run loads; only the adapters change
            trained = trainable_names(self.policy, prefix="policy.")
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trained}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("r1lab_rng")
        if state is None:
            return
        restore_rng_state(state)
        self.consecutive_skips = state.get("consecutive_skips", 0)
        self.rl_step = state.get("rl_step", 0)
