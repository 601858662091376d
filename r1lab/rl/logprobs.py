"""Per-token log-probs of a rollout's completion tokens under a model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from r1lab.rl.rollout import Rollout


def selective_log_softmax(logits: Tensor, tokens: Tensor) -> Tensor:
    """log_softmax(logits)[tokens] without materialising the (N, C, V) log-prob tensor twice."""
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def length_buckets(rollout: Rollout, buckets: int) -> list[tuple[Tensor, int, int]]:
    """Split rows into `buckets` groups of similar length: (rows, prompt width, completion width) each.

    A rollout is padded to its longest prompt and longest completion; most rows are shorter, and the
    forward pass pays for every padded column. Rows sorted by length and cut into buckets, each trimmed to
    its own widths, cost less in all.
    """
    prompt_lengths = rollout.attention_mask[:, :rollout.prompt_length].sum(1)
    completion_lengths = rollout.completion_mask.sum(1).long().clamp_min(1)
    order = torch.argsort(prompt_lengths + completion_lengths, stable=True)
    chunks = order.tensor_split(min(max(buckets, 1), len(order)))
    return [(rows, int(prompt_lengths[rows].max()), int(completion_lengths[rows].max())) for rows in chunks]


def completion_logprobs(model, rollout: Rollout, temperature: float = 1.0, with_entropy: bool = False,
                        buckets: int = 1):
    """(N, C) log π(o_t | q, o_<t) at the sampling temperature (the loss scores the policy that sampled).

    With `with_entropy`, also the (N, C) entropy of π(· | q, o_<t) (detached: a diagnostic). With
    `buckets` > 1, rows go through the model in that many length-sorted, trimmed chunks (same values, fewer
    padded positions; positions past a row's completion are 0). Rotary attention depends on relative
    positions only, so trimming left padding does not change a row's log-probs.
    """
    if buckets <= 1:
        return _chunk_logprobs(model, rollout.input_ids, rollout.attention_mask, rollout.completion_ids,
                               temperature, with_entropy)
    width, start = rollout.completion_mask.shape[1], rollout.prompt_length
    parts, order = [], []
    for rows, prompt_width, completion_width in length_buckets(rollout, buckets):
        columns = slice(start - prompt_width, start + completion_width)
        out = _chunk_logprobs(model, rollout.input_ids[rows, columns], rollout.attention_mask[rows, columns],
                              rollout.completion_ids[rows, :completion_width], temperature, with_entropy)
        parts.append([F.pad(t, (0, width - completion_width)) for t in (out if with_entropy else (out,))])
        order.append(rows)
    inverse = torch.argsort(torch.cat(order))
    merged = [torch.cat(column)[inverse] for column in zip(*parts)]
    return tuple(merged) if with_entropy else merged[0]


def _last_logits(model, input_ids: Tensor, attention_mask: Tensor, keep: int) -> Tensor:
    """Logits of the last `keep` positions only: the prompt's positions would cost N × P × vocab floats
    (gigabytes with a 150k vocabulary) for nothing. Models whose forward lacks `logits_to_keep` get all."""
    try:
        return model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits
    except TypeError:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def _chunk_logprobs(model, input_ids: Tensor, attention_mask: Tensor, completion_ids: Tensor, temperature: float,
                    with_entropy: bool):
    width = completion_ids.shape[1]
    logits = _last_logits(model, input_ids, attention_mask, width + 1)
    logits = logits[:, -width - 1:-1].float() / temperature
    logprobs = selective_log_softmax(logits, completion_ids)
    if not with_entropy:
        return logprobs
    with torch.no_grad():
        log_p = torch.log_softmax(logits, dim=-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
    return logprobs, entropy
