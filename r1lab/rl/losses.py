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


@dataclass
class LossOutput:
    loss: Tensor  # scalar, differentiable
    metrics: dict[str, float]  # kl, clip_frac, ... (detached floats)


def kl_k3(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(π || π_ref) per token: exp(r) - r - 1, r = log π_ref - log π.

    Unbiased and always >= 0; the estimator GRPO (DeepSeekMath eq. 4) uses.
    """
    log_ratio = ref_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1.0


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


class PolicyLoss:
    """Clipped surrogate (PPO) with an optional KL term against a frozen reference policy."""

    def __init__(self, eps: float = 0.2, beta: float = 0.04):
        if not eps > 0:
            raise ValueError(f"loss.eps must be > 0 (the clip range is 1 ± eps), got {eps}")
        if beta < 0:
            raise ValueError(f"loss.beta must be >= 0 (the KL weight; 0 disables the reference model), got {beta}")
        self.eps = float(eps)
        self.beta = float(beta)

    @property
    def needs_reference(self) -> bool:
        return self.beta > 0

    def aggregate(self, per_token: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, logprobs: Tensor, old_logprobs: Tensor, ref_logprobs: Tensor | None,
                 advantages: Tensor, mask: Tensor) -> LossOutput:
        mask = mask.to(logprobs.dtype)
        if advantages.dim() == 1:  # per-completion advantages apply to every token
            advantages = advantages.unsqueeze(1)
        ratio = torch.exp(logprobs - old_logprobs)
        clipped = torch.clamp(ratio, 1.0 - self.eps, 1.0 + self.eps)
        per_token = -torch.minimum(ratio * advantages, clipped * advantages)
        metrics: dict[str, float] = {}
        if self.beta > 0:
            if ref_logprobs is None:
                raise ValueError("loss.beta > 0 needs reference log-probs")
            kl = kl_k3(logprobs, ref_logprobs)
            per_token = per_token + self.beta * kl
            metrics["kl"] = masked_mean(kl.detach(), mask).item()
        elif ref_logprobs is not None:
            metrics["kl"] = masked_mean(kl_k3(logprobs, ref_logprobs).detach(), mask).item()
        with torch.no_grad():
            # A token is clipped when the clamp is the active side of the min (no gradient flows).
            low = (ratio < 1.0 - self.eps) & (advantages < 0)
            high = (ratio > 1.0 + self.eps) & (advantages > 0)
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
