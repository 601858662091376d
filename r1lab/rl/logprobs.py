"""Per-token log-probs of a rollout's completion tokens under a model."""

from __future__ import annotations

import torch
from torch import Tensor

from r1lab.rl.rollout import Rollout


def selective_log_softmax(logits: Tensor, tokens: Tensor) -> Tensor:
    """log_softmax(logits)[tokens] without materialising the (N, C, V) log-prob tensor twice."""
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def completion_logprobs(model, rollout: Rollout, temperature: float = 1.0, with_entropy: bool = False):
    """(N, C) log π(o_t | q, o_<t) at the sampling temperature (the loss scores the policy that sampled).

    With `with_entropy`, also the (N, C) entropy of π(· | q, o_<t) (detached: a diagnostic).
    """
    width = rollout.completion_mask.shape[1]
    logits = model(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask).logits
    logits = logits[:, -width - 1:-1].float() / temperature
    logprobs = selective_log_softmax(logits, rollout.completion_ids)
    if not with_entropy:
        return logprobs
    with torch.no_grad():
        log_p = torch.log_softmax(logits, dim=-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
    return logprobs, entropy
