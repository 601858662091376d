"""Per-token log-probs of a rollout's completion tokens under a model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import DynamicCache

from r1lab.rollout import Rollout


def selective_log_softmax(logits: Tensor, tokens: Tensor) -> Tensor:
    """log_softmax(logits)[tokens] without materialising the (N, C, V) log-prob tensor twice."""
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def length_buckets(rollout: Rollout, buckets: int, completions_only: bool = False) -> list[tuple[Tensor, int, int]]:
    """Split rows into `buckets` groups of similar length: (rows, prompt width, completion width) each.

    A rollout is padded to its longest prompt and longest completion; most rows are shorter, and the
    forward pass pays for every padded column. Rows sorted by length and cut into buckets, each trimmed to
    its own widths, cost less in all. `completions_only`: sort by completion length (the prompts run
    separately).
    """
    prompt_lengths = rollout.attention_mask[:, :rollout.prompt_length].sum(1)
    completion_lengths = rollout.completion_mask.sum(1).long().clamp_min(1)
    order = torch.argsort(completion_lengths if completions_only else prompt_lengths + completion_lengths, stable=True)
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
    and its keys and values serve all its completions, in every bucket: G times less prompt compute, same
    values and gradients (the copied keys and values sum their gradients back into the one prompt pass).
    Rows are matched by their prompt tokens, not by position, so shuffled minibatches share too.
    """
    width, start = rollout.completion_mask.shape[1], rollout.prompt_length
    prompts = SharedPrompts.of(model, rollout) if share_prompts else None
    if buckets <= 1:
        chunks = [(torch.arange(len(rollout.input_ids), device=rollout.input_ids.device), start, width)]
    else:
        chunks = length_buckets(rollout, buckets, completions_only=prompts is not None)
    parts, order = [], []
    for rows, prompt_width, completion_width in chunks:
        if prompts is not None:
            logits = prompts.completion_logits(model, rows, completion_width)
        else:
            columns = slice(start - prompt_width, start + completion_width)
            logits = _last_logits(model, rollout.input_ids[rows, columns], rollout.attention_mask[rows, columns],
                                  completion_width + 1)[:, -completion_width - 1:-1]
        out = _logprobs(logits, rollout.completion_ids[rows, :completion_width], temperature, with_entropy)
        parts.append([F.pad(t, (0, width - completion_width)) for t in out])
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


class SharedPrompts:
    """One forward pass over a rollout's distinct prompts; its keys and values, copied to each row, let the
    completion columns of any subset of rows run without their prompt."""

    def __init__(self, model, rollout: Rollout, inverse: Tensor, distinct: int):
        self.rollout, self.inverse = rollout, inverse  # inverse: each row's prompt
        first = torch.empty(distinct, dtype=torch.long, device=inverse.device)
        first[inverse] = torch.arange(len(inverse), device=inverse.device)  # one row holding each prompt
        width = rollout.prompt_length
        out = model(input_ids=rollout.input_ids[first, :width], attention_mask=rollout.attention_mask[first, :width],
                    use_cache=True, logits_to_keep=1)
        self.first_logits = out.logits  # (distinct, 1, V): the last prompt position predicts the first token
        self.keys_values = [(keys, values) for keys, values, *_ in out.past_key_values]
        self.config = model.config

    @classmethod
    def of(cls, model, rollout: Rollout) -> SharedPrompts | None:
        """None where sharing does not apply: unsupported architecture, or no prompt occurs twice."""
        if getattr(model.config, "model_type", None) not in SHARED_PROMPT_MODEL_TYPES:
            return None
        width = rollout.prompt_length
        prompts = torch.cat([rollout.input_ids[:, :width], rollout.attention_mask[:, :width]], dim=1)
        distinct, inverse = torch.unique(prompts, dim=0, return_inverse=True)
        return cls(model, rollout, inverse, len(distinct)) if len(distinct) < len(prompts) else None

    def completion_logits(self, model, rows: Tensor, width: int) -> Tensor:
        """(len(rows), width, V) logits predicting each of the first `width` completion tokens of `rows`."""
        prompt_of = self.inverse[rows]
        logits = [self.first_logits[prompt_of]]
        if width > 1:
            cache = DynamicCache(ddp_cache_data=[(k[prompt_of], v[prompt_of]) for k, v in self.keys_values],
                                 config=self.config)
            start = self.rollout.prompt_length
            end = start + width - 1
            rest = model(input_ids=self.rollout.input_ids[rows, start:end],
                         attention_mask=self.rollout.attention_mask[rows, :end], past_key_values=cache, use_cache=True)
            logits.append(rest.logits)
        return torch.cat(logits, dim=1)


def _logprobs(logits: Tensor, completion_ids: Tensor, temperature: float, with_entropy: bool) -> tuple[Tensor, ...]:
    logits = logits.float() / temperature
    logprobs = selective_log_softmax(logits, completion_ids)
    if not with_entropy:
        return (logprobs,)
    with torch.no_grad():
        log_p = torch.log_softmax(logits, dim=-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
    return logprobs, entropy
