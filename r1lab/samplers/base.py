"""Samplers: `sampler.rollout(model, tokenizer, batch) -> Rollout` with `group_size` completions per prompt."""

from __future__ import annotations

from transformers import PreTrainedModel

from r1lab.rl.rollout import PromptBatch, Rollout


class Sampler:
    """Base class. `temperature` is shared with the loss, which scores tokens under the same tempered policy."""

    def __init__(self, group_size: int = 8, temperature: float = 1.0, max_new_tokens: int = 256):
        if group_size < 2:
            raise ValueError(f"sampler.group_size must be >= 2, got {group_size}: GRPO-style advantages compare "
                             "completions within a group of the same prompt, so each group needs two or more")
        if not temperature > 0:
            raise ValueError(f"sampler.temperature must be > 0, got {temperature}")
        if max_new_tokens < 1:
            raise ValueError(f"sampler.max_new_tokens must be >= 1, got {max_new_tokens}")
        self.group_size = int(group_size)
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)

    def rollout(self, model: PreTrainedModel, tokenizer, batch: PromptBatch) -> Rollout:
        raise NotImplementedError
