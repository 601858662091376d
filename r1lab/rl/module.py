"""The RL step. Read `training_step` first: it is the whole algorithm.

One LightningModule with manual optimisation. The DataModule yields prompts only; the rollout, rewards and
advantages are computed here under no_grad, then the loss is minimised over `ppo_epochs` × `num_minibatches`
optimizer steps. Every part is a small object from a registry, testable without Lightning.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from r1lab.distributed import (all_ranks_agree, gather_objects, local_share, mean_over_ranks, prompt_seeds,
                               rank_and_world)
from r1lab.models.policy import Policy
from r1lab.rewards.accuracy import AccuracyReward
from r1lab.rewards.base import RewardSet, ScoredRollout
from r1lab.rl.advantages import AdvantageEstimator
from r1lab.rl.logprobs import completion_logprobs
from r1lab.rl.losses import PolicyLoss
from r1lab.rl.metrics import rollout_metrics
from r1lab.rl.rollout import PromptBatch, Rollout
from r1lab.samplers.base import Sampler
from r1lab.strategies import full_parameters, is_deepspeed, is_fsdp


log = logging.getLogger("r1lab")


class DivergedError(RuntimeError):
    pass


# Update metrics that are means over tokens (the rest are means over completions or plain values).
TOKEN_MEANS = ("train/kl", "train/clip_frac", "train/clip_frac_low", "train/clip_frac_high", "train/ratio",
               "train/entropy")


def peak_memory_gb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch on a GPU; peak resident memory of the process on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux


class RLModule(pl.LightningModule):
    def __init__(self, policy: Policy, sampler: Sampler, rewards: RewardSet, advantage: AdvantageEstimator,
                 loss: PolicyLoss, lr: float = 1e-5, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.99),
                 warmup_steps: int = 0, max_grad_norm: float | None = 1.0, ppo_epochs: int = 1,
                 num_minibatches: int = 1, max_consecutive_skips: int = 10, length_buckets: int = 4, share_prompts: bool = True,
                 dynamic_sampling: bool = False, max_draws: int = 4, monitor: Sequence[str] = (), seed: int = 0):
        super().__init__()
        if ppo_epochs < 1 or num_minibatches < 1:
            raise ValueError(f"rl.ppo_epochs and rl.num_minibatches must be >= 1, got {ppo_epochs}, {num_minibatches}")
        self.automatic_optimization = False  # rollouts, PPO epochs and minibatches are ours to schedule
        self.policy = policy.model
        self.tokenizer = policy.tokenizer
        # The reference policy is a frozen copy of the starting policy; only the KL term needs it.
        self.ref_policy = copy.deepcopy(policy.model).requires_grad_(False).eval() if loss.needs_reference else None
        self.sampler, self.rewards, self.advantage, self.loss = sampler, rewards, advantage, loss
        self.accuracy = next((fn for fn, _ in rewards.terms.values() if isinstance(fn, AccuracyReward)), AccuracyReward())
        self.optim = dict(lr=lr, weight_decay=weight_decay, betas=tuple(betas), warmup_steps=warmup_steps)
        self.max_grad_norm = max_grad_norm
        self.ppo_epochs, self.num_minibatches = ppo_epochs, num_minibatches
        self.max_consecutive_skips = max_consecutive_skips
        if length_buckets < 1:
            raise ValueError(f"rl.schedule.length_buckets must be >= 1, got {length_buckets}")
        self.length_buckets = length_buckets
        self.share_prompts = share_prompts
        if max_draws < 1:
            raise ValueError(f"rl.dynamic_sampling.max_draws must be >= 1, got {max_draws}")
        self.dynamic_sampling, self.max_draws = dynamic_sampling, max_draws
        self.consecutive_skips = 0
        self.seed = seed  # with the RL step, seeds each prompt's sampling (sampler.seeding=per_prompt)
        self.hard_difficulty = None  # the task's hardest difficulty label, for train/accuracy_hard
        self.rl_step = 0  # RL steps done: the x-axis of every metric (optimizer steps may be more)
        self.monitor = [name for name in monitor if name]  # metrics callbacks watch (trainer.callback_metrics)
        self.last_metrics: dict[str, float] = {}

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        self.hard_difficulty = getattr(getattr(datamodule, "task", None), "hard_difficulty", None)
        shared_stream = rank_and_world()[1] > 1 and getattr(self.sampler, "seeding", None) == "global"
        if shared_stream and self.trainer.is_global_zero:
            # Every rank starts from the same global RNG state (and a resumed run restores rank 0's on all).
            log.warning("several ranks sample with the same global RNG stream; sampler.seeding=per_prompt gives "
                        "each prompt its own seed (and the same completions as a single process)")

    # ------------------------------------------------------------------------------------------ the step
    def training_step(self, batch: PromptBatch, batch_idx: int) -> dict[str, Any]:
        started = time.perf_counter()
        with torch.no_grad():
            # 1-2. Rollout (G completions per prompt from the current policy) and reward (a weighted sum of
            #      named terms per completion); with dynamic sampling, more prompts until groups differ.
            #      With several ranks, each samples its share of the global batch.
            self.policy.eval()
            rollout, scored, draws = self.sample_and_score(self.local_part(batch, draw=0))
            rollout_s = time.perf_counter() - started
            # 3. Log-probs the loss compares against: the pre-update policy (needed when a rollout feeds
            #    several optimizer steps, or for a KL reward penalty) and the frozen reference (for the KL).
            if self.ppo_epochs * self.num_minibatches > 1 or self.loss.kl_in_reward or self.sampler.checks_logprobs:
                rollout.old_logprobs = self.logprobs(self.policy, rollout)
            if self.ref_policy is not None:
                rollout.ref_logprobs = self.logprobs(self.ref_policy, rollout)
            rollout.rewards = scored.total.to(self.device) - self.loss.reward_penalty(rollout)
            # 4. Advantage: how much better each completion is than its baseline.
            rollout.advantages = self.advantage(rollout)
        everyone, everyone_scored = self.gather_global_batch(rollout, scored)  # metrics describe the global batch
        metrics = rollout_metrics(everyone, everyone_scored, self.accuracy_of(everyone, everyone_scored),
                                  self.hard_difficulty)
        metrics |= self.rewards.term_metrics(everyone.completions, everyone.reward_columns(), everyone_scored)

        # 5. Loss and optimizer steps: ppo_epochs passes over shuffled minibatches of the rollout.
        self.policy.train()
        updates: list[dict[str, float]] = []
        if all_ranks_agree(scored.nonfinite == 0):
            for _ in range(self.ppo_epochs):
                for minibatch in rollout.minibatches(self.num_minibatches):
                    updates.append(self.update(minibatch))
        metrics |= self.summarise_updates(updates)

        perf = {"train/dynamic_sampling_draws": float(draws), "perf/rollout_s": rollout_s,
                "perf/step_s": time.perf_counter() - started, "perf/peak_mem_gb": peak_memory_gb(self.device)}
        if rollout.sampler_logprobs is not None and rollout.old_logprobs is not None:
            gap = (rollout.sampler_logprobs - rollout.old_logprobs).abs() * rollout.completion_mask
            perf["perf/logprob_mismatch"] = gap.max().item()
        # The slowest rank sets the pace; throughput counts every rank's tokens.
        slowest = ("perf/rollout_s", "perf/step_s", "perf/logprob_mismatch", "perf/peak_mem_gb")
        metrics |= mean_over_ranks(gather_objects(perf), maxed=slowest)
        tokens = everyone.completion_lengths.sum().item()
        metrics["perf/rollout_tokens_per_s"] = tokens / max(metrics["perf/rollout_s"], 1e-9)
        step = self.log_step(metrics)
        return {"rollout": everyone, "scored": everyone_scored, "metrics": metrics, "step": step}

    def local_part(self, batch: PromptBatch, draw: int) -> PromptBatch:
        """This rank's share of a global batch, each prompt with its sampling seed."""
        rank, world = rank_and_world()
        batch = replace(batch, seeds=prompt_seeds(self.seed, self.rl_step, draw, len(batch)))
        return batch.part(local_share(len(batch), rank, world))

    def gather_global_batch(self, rollout: Rollout, scored: ScoredRollout) -> tuple[Rollout, ScoredRollout]:
        """Every rank's rollout and scores, in rank order (= the global batch's order); one rank: as is."""
        if rank_and_world()[1] == 1:
            return rollout, scored
        parts = gather_objects((rollout.to("cpu"), scored.to("cpu")))
        merged = Rollout.concat([r for r, _ in parts], self.tokenizer.pad_token_id).to(self.device)
        return merged, ScoredRollout.concat([s for _, s in parts]).to(self.device)

    def sample_and_score(self, batch: PromptBatch) -> tuple[Rollout, ScoredRollout, int]:
        """Sample and score `batch`. With dynamic sampling (DAPO), drop groups whose rewards are all equal
        (they carry no signal) and draw more prompts until the batch is full again, at most `max_draws`
        draws in all; if no group differs at all, the first draw is kept as it is."""
        rollout = self.sample(batch)
        scored = self.rewards(rollout.prompts, rollout.completions, rollout.reward_columns())
        if not self.dynamic_sampling:
            return rollout, scored, 1
        wanted, first = rollout.num_groups, (rollout, scored)
        kept: list[tuple[Rollout, ScoredRollout]] = []
        draws = 1
        while True:
            totals = rollout.grouped(scored.total)
            informative = [g for g in range(rollout.num_groups) if totals[g].max() > totals[g].min()]
            if informative:
                rows = [g * rollout.group_size + k for g in informative for k in range(rollout.group_size)]
                kept.append((rollout.select_groups(informative), scored.select(rows)))
            have = sum(r.num_groups for r, _ in kept)
            if all_ranks_agree(have >= wanted) or draws >= self.max_draws:  # ranks draw in step (collectives)
                break
            extra = self.local_part(self.trainer.datamodule.extra_batch(draws), draw=draws)
            rollout = self.sample(extra)
            scored = self.rewards(rollout.prompts, rollout.completions, rollout.reward_columns())
            draws += 1
        if not kept:
            return *first, draws
        merged = Rollout.concat([r for r, _ in kept], self.tokenizer.pad_token_id)
        merged_scores = ScoredRollout.concat([s for _, s in kept])
        groups = list(range(min(wanted, merged.num_groups)))
        rows = [g * merged.group_size + k for g in groups for k in range(merged.group_size)]
        return merged.select_groups(groups), merged_scores.select(rows), draws

    def sample(self, batch: PromptBatch) -> Rollout:
        with full_parameters(self.strategy, self.policy):  # ZeRO-3: gather the weights once, not per token
            return self.sampler.rollout(self.policy, self.tokenizer, batch)

    def update(self, minibatch: Rollout) -> dict[str, float]:
        """One optimizer step on a minibatch; skipped (and reported) when the loss is not finite."""
        optimizer = self.optimizers()
        logprobs, entropy = completion_logprobs(self.policy, minibatch, self.sampler.temperature, with_entropy=True,
                                                buckets=self.length_buckets, share_prompts=self.share_prompts)
        old = minibatch.old_logprobs if minibatch.old_logprobs is not None else logprobs.detach()
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
            return float(self.strategy.model.clip_grad_norm_(self.max_grad_norm or float("inf")))
        if is_deepspeed(self.strategy):  # gradient_clipping is in DeepSpeed's config (r1lab.strategies)
            return float("nan")
        grads = [p.grad for p in self.policy.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
        if self.max_grad_norm:
            self.clip_gradients(optimizer, gradient_clip_val=self.max_grad_norm, gradient_clip_algorithm="norm")
        return grad_norm

    @property
    def strategy(self) -> Any:
        return self._trainer.strategy if self._trainer is not None else None

    # ----------------------------------------------------------------------------------------- helpers
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

    def logprobs(self, model: torch.nn.Module, rollout: Rollout) -> Tensor:
        return completion_logprobs(model, rollout, self.sampler.temperature, buckets=self.length_buckets,
                                   share_prompts=self.share_prompts)

    def accuracy_of(self, rollout: Rollout, scored: ScoredRollout) -> Tensor:
        for name, (fn, _) in self.rewards.terms.items():
            if fn is self.accuracy:  # already scored as a reward term
                return scored.terms[name]
        if self.accuracy.answer_column not in rollout.columns:
            return torch.full((rollout.num_completions,), float("nan"))
        return torch.tensor(self.accuracy(rollout.prompts, rollout.completions, **rollout.columns))

    def summarise_updates(self, updates: list[dict[str, float]]) -> dict[str, float]:
        skipped = sum(u["skipped"] for u in updates) if updates else 1.0
        self.consecutive_skips = self.consecutive_skips + 1 if skipped == max(len(updates), 1) else 0
        if self.consecutive_skips > self.max_consecutive_skips:
            raise DivergedError(f"{self.consecutive_skips} consecutive RL steps had non-finite rewards or loss; "
                                "stopping (checkpoints and logs so far are kept). Look at train/nonfinite_rewards.")
        done = [u for u in updates if not u["skipped"]]
        summary = {"train/skipped_updates": float(skipped), "train/lr": self.optimizers().param_groups[0]["lr"]}
        for key in (done[0] if done else {}):
            if key not in ("skipped", "tokens"):
                summary[f"train/{key}"] = float(np.mean([u[key] for u in done]))
        # Over ranks: token means (KL, clip fractions, ...) weighted by each rank's tokens, so that they equal
        # one process's token mean over the whole batch.
        tokens = {"tokens": float(sum(u["tokens"] for u in done))}
        per_rank = gather_objects(summary | tokens)
        return {k: v for k, v in mean_over_ranks(per_rank, weighted=TOKEN_MEANS, weight="tokens").items()
                if k != "tokens"}

    # -------------------------------------------------------------------------------- Lightning plumbing
    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.policy.parameters(), lr=self.optim["lr"], betas=self.optim["betas"],
                                      weight_decay=self.optim["weight_decay"])
        warmup = max(int(self.optim["warmup_steps"]), 0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # RNG states make a resumed run sample exactly what the uninterrupted run would have.
        # Plain ints, lists and tensors only, so that weights-only loading accepts the checkpoint.
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["r1lab_rng"] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                                   "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
                                   "consecutive_skips": self.consecutive_skips, "rl_step": self.rl_step}
        if torch.cuda.is_available():
            checkpoint["r1lab_rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("r1lab_rng")
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
        self.consecutive_skips = state.get("consecutive_skips", 0)
        self.rl_step = state.get("rl_step", 0)
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
