"""What one RL step logs, over every rank.

With several ranks each samples its share of the global batch; the metrics, callbacks and the curriculum see
the gathered batch, so logged numbers do not depend on the number of ranks. Update metrics are averaged
over ranks (token means weighted by each rank's tokens); timings take the slowest rank.
"""

from __future__ import annotations

import numpy as np
import torch

from r1lab.engines.distributed import gather_objects, mean_over_ranks, rank_and_world
from r1lab.rewards.base import RewardSet
from r1lab.rl.metrics import rollout_metrics
from r1lab.rollout import Rollout, ScoredRollout

# Update metrics that are means over tokens (the rest are means over completions or plain values).
TOKEN_MEANS = ("train/kl", "train/clip_frac", "train/clip_frac_low", "train/clip_frac_high", "train/ratio",
               "train/entropy")
# The slowest rank sets the pace.
SLOWEST = ("perf/rollout_s", "perf/step_s", "perf/logprob_mismatch", "perf/logprob_mismatch_mean", "perf/peak_mem_gb")


# The mean |log π_sampler − log π_trainer| over completion tokens that counts as agreement: the same weights in
# two code paths (a KV-cache decoder, a full forward) round differently. Measured on the toy model: fp32 7e-7,
# bf16 8e-4 (max 0.04); a mean above these says the two compute different policies (stale weights, a bug).
LOGPROB_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 1e-2, torch.float16: 1e-2}


def logprob_agreement(sampler_logprobs: torch.Tensor, trainer_logprobs: torch.Tensor, mask: torch.Tensor
                      ) -> dict[str, float]:
    """The largest and the mean gap between the sampler's and the trainer's log-probs of the same tokens."""
    gap = (sampler_logprobs - trainer_logprobs).abs() * mask
    return {"perf/logprob_mismatch": gap.max().item(),
            "perf/logprob_mismatch_mean": (gap.sum() / mask.sum().clamp_min(1.0)).item()}


def peak_memory_gb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch on a GPU; peak resident memory of the process on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux


class StepMetrics:
    def __init__(self, rewards: RewardSet, pad_token_id: int, hard_difficulty: object = None,
                 answer_format: str = "auto"):
        self.rewards, self.pad_token_id = rewards, pad_token_id
        self.hard_difficulty = hard_difficulty  # the task's hardest label, for train/accuracy_hard
        self.answer_format = answer_format  # where the task reads answers, for train/no_answer_frac

    def global_batch(self, rollout: Rollout, scored: ScoredRollout) -> tuple[Rollout, ScoredRollout]:
        """Every rank's rollout and scores, in rank order (= the global batch's order); one rank: as is."""
        if rank_and_world()[1] == 1:
            return rollout, scored
        device = rollout.input_ids.device
        parts = gather_objects((rollout.to("cpu"), scored.to("cpu")))
        merged = Rollout.concat([r for r, _ in parts], self.pad_token_id).to(device)
        return merged, ScoredRollout.concat([s for _, s in parts]).to(device)

    def of_rollout(self, everyone: Rollout, scored: ScoredRollout) -> dict[str, float]:
        """Reward, accuracy, length, ... of the global batch, and what reward terms report about it."""
        metrics = rollout_metrics(everyone, scored, self.hard_difficulty, self.answer_format)
        return metrics | self.rewards.term_metrics(everyone.completions, everyone.reward_columns(), scored)

    @staticmethod
    def of_updates(updates: list[dict[str, float]], lr: float) -> dict[str, float]:
        """Means of the step's optimizer updates (loss, KL, clipping, ...), over updates and ranks."""
        done = [u for u in updates if not u["skipped"]]
        skipped = sum(u["skipped"] for u in updates) if updates else 1.0
        summary = {"train/skipped_updates": float(skipped), "train/lr": lr}
        for key in (done[0] if done else {}):
            if key not in ("skipped", "tokens"):
                summary[f"train/{key}"] = float(np.mean([u[key] for u in done]))
        # Token means (KL, clip fractions, ...) weighted by each rank's tokens, so that they equal one
        # process's token mean over the whole batch.
        tokens = {"tokens": float(sum(u["tokens"] for u in done))}
        per_rank = gather_objects(summary | tokens)
        return {k: v for k, v in mean_over_ranks(per_rank, weighted=TOKEN_MEANS, weight="tokens").items()
                if k != "tokens"}

    @staticmethod
    def of_timing(perf: dict[str, float], tokens: float) -> dict[str, float]:
        """Timings (the slowest rank's) and the global batch's rollout throughput."""
        metrics = mean_over_ranks(gather_objects(perf), maxed=SLOWEST)
        metrics["perf/rollout_tokens_per_s"] = tokens / max(metrics["perf/rollout_s"], 1e-9)
        return metrics
