"""Samplers: `sampler.rollout(model, tokenizer, batch) -> Rollout` with `group_size` completions per prompt."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedModel

from r1lab.rollout import PromptBatch, Rollout


# Greedy decoding in `with_settings` terms: T = 1 keeps the log-probs defined, top-k = 1 takes the argmax.
GREEDY = {"temperature": 1.0, "top_p": 1.0, "top_k": 1}


class Sampler:
    """Base class. `temperature` is shared with the loss, which scores tokens under the same tempered policy."""

    def __init__(self, group_size: int = 8, temperature: float = 1.0, max_new_tokens: int = 256):
        if group_size < 2:
            raise ValueError(f"sampler.group_size must be >= 2, got {group_size}: GRPO-style advantages compare "
                             "completions within a group of the same prompt, so each group needs two or more")
        check_decoding(temperature=temperature, max_new_tokens=max_new_tokens)
        self.group_size = int(group_size)
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)

    # A sampler with its own copy of the weights (vLLM) sets this: the RL step then recomputes the behaviour
    # log-probs with the trained policy and logs the largest difference as perf/logprob_mismatch.
    checks_logprobs = False

    def rollout(self, model: PreTrainedModel, tokenizer, batch: PromptBatch) -> Rollout:
        raise NotImplementedError

    def policy_updated(self) -> None:
        """Called after every optimizer step: a sampler holding a copy of the weights must refresh it."""

    def close(self) -> None:
        """Called when the stage is done sampling: release an engine (vLLM's) while its process group lives."""

    def with_settings(self, **settings: Any) -> Sampler:
        """This sampler with other decoding settings, for the stages that sample outside the RL step (evaluation,
        rejection sampling, the diagnostics' ablation): the same engine (vLLM's stays loaded, MCTS keeps its
        search), other `group_size`, `temperature`, `top_p`, `top_k`, `max_new_tokens` or `record_logprobs`.
        Outside the RL step a group may have one member (`group_size=1`: greedy answers, pass@1 with n = 1).
        A setting the sampler does not have is an error that names the ones it has."""
        # record_logprobs is a saving, not a setting: a sampler without it (vLLM always reports them) ignores it
        settings = {k: v for k, v in settings.items() if k != "record_logprobs" or hasattr(self, k)}
        unknown = sorted(k for k in settings if not hasattr(self, k))
        if unknown:
            known = sorted(k for k in ("group_size", "temperature", "top_p", "top_k", "max_new_tokens",
                                       "record_logprobs") if hasattr(self, k))
            raise ValueError(f"{type(self).__name__} has no setting {', '.join(unknown)}; it has {', '.join(known)}")
        if settings.get("group_size", 1) < 1:
            raise ValueError(f"group_size must be >= 1 to sample, got {settings['group_size']}")
        check_decoding(**{k: v for k, v in settings.items() if k in ("temperature", "top_p", "max_new_tokens")})
        variant = copy.copy(self)  # shallow: engines and caches stay shared with this sampler
        for key, value in settings.items():
            setattr(variant, key, value)
        variant.settings_changed()
        return variant

    def settings_changed(self) -> None:
        """Hook for a sampler whose parts hold settings of their own (MCTS's step sampler)."""


def stop_token_ids(model, tokenizer) -> list[int]:
    """The tokens that end a completion: the tokenizer's EOS first, then any other the model's generation config
    lists (Qwen2.5-Instruct ends its turn with <|im_end|> and also stops at <|endoftext|>)."""
    ids = [tokenizer.eos_token_id]
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for token in [configured] if isinstance(configured, int) else list(configured or []):
        if token is not None and token not in ids:
            ids.append(int(token))
    return ids


def check_decoding(temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 1) -> None:
    if not temperature > 0:
        raise ValueError(f"sampler.temperature must be > 0, got {temperature}: the loss scores tokens under "
                         "the tempered policy (logits / T), which T = 0 leaves undefined; for greedy decoding "
                         "keep T = 1 and set sampler.top_k=1")
    if not 0 < top_p <= 1:
        raise ValueError(f"sampler.top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise ValueError(f"sampler.max_new_tokens must be >= 1, got {max_new_tokens}")


def rollout_from_texts(tokenizer, prompts: list[str], completions: list[str], finished: list[bool], group_size: int,
                       columns: dict, device=None) -> Rollout:
    """A Rollout from completion texts (for samplers that build completions piecewise, e.g. tree search).

    Completions are re-tokenised; a finished one gets EOS appended (and counted in its mask).
    """
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    completion_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if done else [])
                      for c, done in zip(completions, finished)]
    return rollout_from_ids(tokenizer.pad_token_id, prompts, completions, prompt_ids, completion_ids, finished,
                            group_size, columns, device=device)


def rollout_from_ids(pad_token_id: int, prompts: list[str], completions: list[str], prompt_ids: list[list[int]],
                     completion_ids: list[list[int]], finished: list[bool], group_size: int, columns: dict,
                     logprobs: list[list[float]] | None = None, device=None) -> Rollout:
    """A Rollout from per-row token id lists (prompts left-padded, completions right-padded); a finished
    row's completion ids end with its stop token. `logprobs`: the sampler's log-prob of each completion token."""
    import torch

    # Padded Python lists first, then one tensor each (a tensor per row costs more than the rows' contents).
    prompt_width = max(len(ids) for ids in prompt_ids)
    width = max(1, max(len(ids) for ids in completion_ids))
    rows, attention, completion = [], [], []
    for p, c in zip(prompt_ids, completion_ids):
        rows.append([pad_token_id] * (prompt_width - len(p)) + list(p) + list(c) + [pad_token_id] * (width - len(c)))
        attention.append([0] * (prompt_width - len(p)) + [1] * (len(p) + len(c)) + [0] * (width - len(c)))
        completion.append([1.0] * len(c) + [0.0] * (width - len(c)))
    input_ids = torch.tensor(rows, dtype=torch.long)
    attention_mask = torch.tensor(attention, dtype=torch.long)
    completion_mask = torch.tensor(completion)
    sampler_logprobs = None
    if logprobs is not None:
        kept = [list(values[:len(c)]) for values, c in zip(logprobs, completion_ids)]
        sampler_logprobs = torch.tensor([values + [0.0] * (width - len(values)) for values in kept], dtype=torch.float)
    return Rollout(prompts=list(prompts), completions=list(completions), group_size=group_size,
                   input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                   completion_mask=completion_mask.to(device), truncated=torch.tensor([not f for f in finished]),
                   columns=columns, sampler_logprobs=None if sampler_logprobs is None else sampler_logprobs.to(device))


def cut_at_stop_strings(tokenizer, completion_ids, completion_mask, truncated, stop_strings: Sequence[str]):
    """End each completion at the first of `stop_strings` (kept in the completion, as vLLM's
    include_stop_str_in_output does): the mask ends at the token that completes it and the row counts as
    finished. Returns (mask, truncated, ended_by_string) as new tensors/list; rows without one are unchanged."""
    mask, truncated = completion_mask.clone(), truncated.clone()
    ended = [False] * len(completion_ids)
    for row, ids in enumerate(completion_ids.tolist()):
        ids = ids[:int(mask[row].sum())]

        def contains(k: int) -> bool:
            text = tokenizer.decode(ids[:k], skip_special_tokens=False)
            return any(stop in text for stop in stop_strings)

        if not ids or not contains(len(ids)):
            continue
        low, high = 1, len(ids)  # the shortest prefix that contains a stop string (containment only grows)
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if contains(middle) else (middle + 1, high)
        mask[row, low:] = 0.0
        truncated[row] = False
        ended[row] = True
    return mask, truncated, ended


def end_at_stop_string(text: str, stop_strings: Sequence[str]) -> str:
    """`text` up to and including its first stop string (the last token may carry characters past it)."""
    ends = [text.find(stop) + len(stop) for stop in stop_strings if stop in text]
    return text[:min(ends)] if ends else text
