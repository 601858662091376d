"""Policy losses: a clipped surrogate plus a KL penalty, aggregated over tokens.

Every loss has one typed call, `loss(logprobs, old_logprobs, ref_logprobs, advantages, mask) -> LossOutput`,
on (N, C) tensors of per-token log-probs of the sampled completion tokens. Variants differ in their
parameters and in `aggregate`, never in the call, so the step does not branch on names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from r1lab.registry import LOSSES
from r1lab.rollout import Rollout


@dataclass
class LossOutput:
    loss: Tensor  # scalar, differentiable
    metrics: dict[str, float]  # kl, clip_frac, ... (detached floats)


def kl_k1(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """k1 = log π - log π_ref: unbiased, high variance, can be negative per token."""
    return logprobs - ref_logprobs


def kl_k2(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """k2 = ½ (log π - log π_ref)²: biased, low variance, >= 0."""
    return 0.5 * (logprobs - ref_logprobs) ** 2


def kl_k3(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(π || π_ref) per token: exp(r) - r - 1, r = log π_ref - log π.

    Unbiased and always >= 0; the estimator GRPO (DeepSeekMath eq. 4) uses.
    """
    log_ratio = ref_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1.0


KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}  # Schulman, "Approximating KL divergence" (2020)
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


class PolicyLoss:
    """Clipped surrogate (PPO) with a KL term against a frozen reference policy.

    - `eps`, or `eps_low`/`eps_high` for DAPO's clip-higher: the ratio is clipped to [1 - eps_low, 1 + eps_high].
    - `beta` weighs the KL (`kl_estimator` k1, k2 or k3); `kl_in_reward` moves it from the loss into the reward
      (r_i - β Σ_t KL_t, before advantages), as PPO-RLHF and REINFORCE++ do.
    - `mask_truncated`: no loss on completions cut by max_new_tokens (DAPO's overlong filtering).
    - `measure_kl`: keep the reference model at β = 0 too, to log train/kl (one more forward per step).
    - `importance_sampling_level`: `token` (PPO, GRPO: ρ_it = π_θ(o_it) / π_old(o_it)) or `sequence` (GSPO,
      Zheng et al. 2025: one ratio per completion, the geometric mean of its tokens' ratios,
      s_i = exp(1/|o_i| Σ_t log ρ_it), clipped as a whole; GSPO clips far tighter, ε ≈ 3e-4 / 4e-4).
    """

    def __init__(self, eps: float = 0.2, beta: float = 0.04, eps_low: float | None = None,
                 eps_high: float | None = None, kl_estimator: str = "k3", kl_in_reward: bool = False,
                 mask_truncated: bool = False, measure_kl: bool = False, importance_sampling_level: str = "token"):
        if not eps > 0:
            raise ValueError(f"loss.eps must be > 0 (the clip range is 1 ± eps), got {eps}")
        for name, value in (("eps_low", eps_low), ("eps_high", eps_high)):
            if value is not None and not 0 < value < 1:
                raise ValueError(f"loss.{name} must be in (0, 1), got {value}")
        if importance_sampling_level not in IMPORTANCE_SAMPLING_LEVELS:
            raise ValueError(f"loss.importance_sampling_level must be one of {', '.join(IMPORTANCE_SAMPLING_LEVELS)}, "
                             f"got {importance_sampling_level!r}")
        self.importance_sampling_level = importance_sampling_level
        self.eps_low = float(eps if eps_low is None else eps_low)
        self.eps_high = float(eps if eps_high is None else eps_high)
        if self.eps_high < self.eps_low:
            raise ValueError(f"loss.eps_high ({self.eps_high}) must be >= loss.eps_low ({self.eps_low}): clip-higher "
                             "widens the upper side")
        if beta < 0:
            raise ValueError(f"loss.beta must be >= 0 (the KL weight; 0 disables the reference model), got {beta}")
        if kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"loss.kl_estimator must be one of {sorted(KL_ESTIMATORS)}, got {kl_estimator!r}")
        self.eps = float(eps)
        self.beta = float(beta)
        self.kl = KL_ESTIMATORS[kl_estimator]
        self.kl_in_reward = bool(kl_in_reward)
        self.mask_truncated = bool(mask_truncated)
        self.measure_kl = bool(measure_kl)

    @property
    def needs_reference(self) -> bool:
        return self.beta > 0 or self.measure_kl

    def token_mask(self, rollout: Rollout) -> Tensor:
        """The tokens this loss trains on."""
        if self.mask_truncated:
            return rollout.completion_mask * (~rollout.truncated).unsqueeze(1).to(rollout.completion_mask.dtype)
        return rollout.completion_mask

    def reward_penalty(self, rollout: Rollout) -> Tensor:
        """β Σ_t KL_t per completion when `kl_in_reward`, else zeros: subtracted from rewards before advantages."""
        if not (self.kl_in_reward and self.beta > 0):
            return torch.zeros(rollout.num_completions, device=rollout.completion_mask.device)
        if rollout.old_logprobs is None or rollout.ref_logprobs is None:
            raise ValueError("loss.kl_in_reward needs the rollout's old and reference log-probs")
        kl = self.kl(rollout.old_logprobs, rollout.ref_logprobs) * rollout.completion_mask
        return self.beta * kl.sum(-1)

    def aggregate(self, per_token: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    def log_importance_weights(self, logprobs: Tensor, old_logprobs: Tensor, mask: Tensor) -> Tensor:
        """(N, C) log ρ: per token, or (sequence level) each completion's mean log-ratio on all its tokens."""
        log_ratio = logprobs - old_logprobs
        if self.importance_sampling_level == "sequence":
            per_sequence = (log_ratio * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp_min(1.0)
            return per_sequence.expand_as(log_ratio)
        return log_ratio

    def surrogate(self, ratio: Tensor, logprobs: Tensor, advantages: Tensor) -> Tensor:
        """The per-token objective to minimise: PPO's pessimistic clipped surrogate."""
        clipped = torch.clamp(ratio, 1.0 - self.eps_low, 1.0 + self.eps_high)
        return -torch.minimum(ratio * advantages, clipped * advantages)

    def clipped(self, ratio: Tensor, advantages: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens clipped below and above: where the clamp is the active side of the min (no gradient flows)."""
        return (ratio < 1.0 - self.eps_low) & (advantages < 0), (ratio > 1.0 + self.eps_high) & (advantages > 0)

    def __call__(self, logprobs: Tensor, old_logprobs: Tensor, ref_logprobs: Tensor | None,
                 advantages: Tensor, mask: Tensor) -> LossOutput:
        mask = mask.to(logprobs.dtype)
        if advantages.dim() == 1:  # per-completion advantages apply to every token
            advantages = advantages.unsqueeze(1)
        ratio = torch.exp(self.log_importance_weights(logprobs, old_logprobs, mask))
        per_token = self.surrogate(ratio, logprobs, advantages)
        metrics: dict[str, float] = {}
        if ref_logprobs is not None:
            kl = self.kl(logprobs, ref_logprobs)
            if self.beta > 0 and not self.kl_in_reward:
                per_token = per_token + self.beta * kl
            metrics["kl"] = masked_mean(kl.detach(), mask).item()
        elif self.beta > 0 and not self.kl_in_reward:
            raise ValueError("loss.beta > 0 needs reference log-probs")
        with torch.no_grad():
            low, high = self.clipped(ratio, advantages.expand_as(ratio))
            metrics["clip_frac_low"] = masked_mean(low.to(mask.dtype), mask).item()
            metrics["clip_frac_high"] = masked_mean(high.to(mask.dtype), mask).item()
            metrics["clip_frac"] = metrics["clip_frac_low"] + metrics["clip_frac_high"]
            metrics["ratio"] = masked_mean(ratio, mask).item()
        return LossOutput(self.aggregate(per_token, mask), metrics)


@LOSSES.register("grpo")
class GRPOLoss(PolicyLoss):
    """GRPO (DeepSeekMath eq. 3): mean over completions of each completion's token-mean.

    L = -1/G Σ_i 1/|o_i| Σ_t [min(ρ_it A_i, clip(ρ_it, 1-ε, 1+ε) A_i) - β KL_k3], ρ = π_θ / π_old.
    """

    def aggregate(self, per_token: Tensor, mask: Tensor) -> Tensor:
        per_sequence = (per_token * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)
        return per_sequence.mean()


@LOSSES.register("dapo")
class DAPOLoss(PolicyLoss):
    """DAPO (Yu et al., 2025): token-mean over the whole batch, Σ_it x_it / Σ_i |o_i|.

    Every token weighs the same, so long completions are not down-weighted per token as in GRPO.
    """

    def aggregate(self, per_token: Tensor, mask: Tensor) -> Tensor:
        return (per_token * mask).sum() / mask.sum().clamp_min(1.0)


@LOSSES.register("dr_grpo")
class DrGRPOLoss(PolicyLoss):
    """Dr. GRPO (Liu et al., 2025): token-sum divided by a constant, N × the generation budget.

    Dividing by each completion's own length (GRPO) shrinks the per-token penalty of long wrong answers;
    a constant denominator removes that length bias.
    """

    def __init__(self, max_tokens: int = 256, **kwargs):
        super().__init__(**kwargs)
        if max_tokens < 1:
            raise ValueError(f"loss.max_tokens (the generation budget) must be >= 1, got {max_tokens}")
        self.max_tokens = int(max_tokens)

    def aggregate(self, per_token: Tensor, mask: Tensor) -> Tensor:
        return (per_token * mask).sum() / (per_token.shape[0] * self.max_tokens)


@LOSSES.register("gspo")
class GSPOLoss(GRPOLoss):
    """GSPO (Zheng et al., 2025): GRPO with one importance ratio per completion,
    s_i = exp(1/|o_i| Σ_t log π_θ(o_it)/π_old(o_it)), clipped as a whole to [1 - ε_low, 1 + ε_high] (the
    paper's 3e-4 / 4e-4) and no KL term. `importance_sampling_level=sequence` on any loss does the same."""

    def __init__(self, eps: float = 3e-4, eps_low: float | None = 3e-4, eps_high: float | None = 4e-4,
                 beta: float = 0.0, importance_sampling_level: str = "sequence", **kwargs):
        super().__init__(eps=eps, eps_low=eps_low, eps_high=eps_high, beta=beta,
                         importance_sampling_level=importance_sampling_level, **kwargs)


@LOSSES.register("cispo")
class CISPOLoss(PolicyLoss):
    """CISPO (MiniMax-M1, Chen et al. 2025): clip the importance weight, not the update.

    L = -1/Σ|o_i| Σ_it sg(clip(ρ_it, 1 - ε_low, 1 + ε_high)) A_i log π_θ(o_it), a REINFORCE-style token-mean
    in which every token keeps its gradient: PPO's clip zeroes the gradient of tokens whose ratio left the
    range (often rare "fork" tokens such as "Wait"), CISPO only caps their weight. The paper sets no lower
    bound (`eps_low: null`, the default) and tunes only ε_high.
    """

    def __init__(self, eps_high: float = 0.28, eps_low: float | None = None, **kwargs):
        if not eps_high > 0:
            raise ValueError(f"loss.eps_high must be > 0 (the weight is capped at 1 + eps_high), got {eps_high}")
        if eps_low is not None and not 0 < eps_low <= 1:
            raise ValueError(f"loss.eps_low must be in (0, 1] (the weight's floor is 1 - eps_low) or null for "
                             f"no floor, got {eps_low}")
        super().__init__(eps=eps_high, **kwargs)
        self.eps_low, self.eps_high = (1.0 if eps_low is None else float(eps_low)), float(eps_high)

    def surrogate(self, ratio: Tensor, logprobs: Tensor, advantages: Tensor) -> Tensor:
        weight = torch.clamp(ratio, 1.0 - self.eps_low, 1.0 + self.eps_high).detach()
        return -weight * advantages * logprobs

    def clipped(self, ratio: Tensor, advantages: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens whose weight was capped, whatever the advantage's sign (their gradient still flows)."""
        return ratio < 1.0 - self.eps_low, ratio > 1.0 + self.eps_high

    def aggregate(self, per_token: Tensor, mask: Tensor) -> Tensor:
        return (per_token * mask).sum() / mask.sum().clamp_min(1.0)
