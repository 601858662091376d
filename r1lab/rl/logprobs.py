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


# Architectures whose forward takes a DynamicCache of prompt keys and values (for `share_prompts`).
SHARED_PROMPT_MODEL_TYPES = ("qwen2", "qwen3", "llama", "mistral")


def completion_logprobs(model, rollout: Rollout, temperature: float = 1.0, with_entropy: bool = False,
                        buckets: int = 1, share_prompts: bool = False):
    """(N, C) log π(o_t | q, o_<t) at the sampling temperature (the loss scores the policy that sampled).

    With `with_entropy`, also the (N, C) entropy of π(· | q, o_<t) (detached: a diagnostic). With
    `buckets` > 1, rows go through the model in that many length-sorted, trimmed chunks (same values, fewer
    padded positions; positions past a row's completion are 0). Rotary attention depends on relative
    positions only, so trimming left padding does not change a row's log-probs.

    With `share_prompts` (and a supported architecture), each distinct prompt goes through the model once
    and its keys and values serve all its completions: G times less prompt compute, same values and
    gradients (the expanded cache sums its gradients back into the one prompt pass). Rows are matched by
    their prompt tokens, not by position, so shuffled minibatches share too.
    """
    share = share_prompts and getattr(model.config, "model_type", None) in SHARED_PROMPT_MODEL_TYPES
    if buckets <= 1:
        return _chunk_logprobs(model, rollout.input_ids, rollout.attention_mask, rollout.completion_ids,
                               temperature, with_entropy, rollout.prompt_length if share else 0)
    width, start = rollout.completion_mask.shape[1], rollout.prompt_length
    parts, order = [], []
    for rows, prompt_width, completion_width in length_buckets(rollout, buckets):
        columns = slice(start - prompt_width, start + completion_width)
        out = _chunk_logprobs(model, rollout.input_ids[rows, columns], rollout.attention_mask[rows, columns],
                              rollout.completion_ids[rows, :completion_width], temperature, with_entropy,
                              prompt_width if share else 0)
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


def _shared_prompt_logits(model, input_ids: Tensor, attention_mask: Tensor, prompt_width: int, width: int,
                          inverse: Tensor, distinct: int) -> Tensor:
    """(R, width, V) logits predicting each completion token, running each of the `distinct` prompts once
    (`inverse`: each row's prompt)."""
    first = torch.empty(distinct, dtype=torch.long, device=inverse.device)
    first[inverse] = torch.arange(len(inverse), device=inverse.device)  # one row holding each prompt
    prompt = model(input_ids=input_ids[first, :prompt_width], attention_mask=attention_mask[first, :prompt_width],
                   use_cache=True, logits_to_keep=1)
    logits = [prompt.logits[inverse]]  # the last prompt position predicts the first completion token
    if width > 1:
        cache = prompt.past_key_values
        cache.batch_select_indices(inverse)  # one copy per completion row, differentiable
        end = prompt_width + width - 1
        rest = model(input_ids=input_ids[:, prompt_width:end], attention_mask=attention_mask[:, :end],
                     past_key_values=cache, use_cache=True)
        logits.append(rest.logits)
    return torch.cat(logits, dim=1)


def _chunk_logprobs(model, input_ids: Tensor, attention_mask: Tensor, completion_ids: Tensor, temperature: float,
                    with_entropy: bool, share_prompt_width: int = 0):
    """`share_prompt_width` > 0: the first that many columns are the prompt; rows with equal prompts share."""
    width = completion_ids.shape[1]
    inverse = distinct = None
    if share_prompt_width:
        prompts = torch.cat([input_ids[:, :share_prompt_width], attention_mask[:, :share_prompt_width]], dim=1)
        distinct_rows, inverse = torch.unique(prompts, dim=0, return_inverse=True)
        distinct = len(distinct_rows)
    if distinct is not None and distinct < len(input_ids):
        logits = _shared_prompt_logits(model, input_ids, attention_mask, share_prompt_width, width, inverse, distinct)
    else:
        logits = _last_logits(model, input_ids, attention_mask, width + 1)[:, -width - 1:-1]
    logits = logits.float() / temperature
    logprobs = selective_log_softmax(logits, completion_ids)
    if not with_entropy:
        return logprobs
    with torch.no_grad():
        log_p = torch.log_softmax(logits, dim=-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
    return logprobs, entropy
