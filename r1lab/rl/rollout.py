"""The Rollout: everything one RL step knows about its sampled completions."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor


@dataclass
class Rollout:
    """G completions for each of B prompts, flattened prompt-major: row i belongs to group i // G.

    Token layout: `input_ids` = left-padded prompt (width P) + right-padded completion (width C).
    `completion_mask` marks completion tokens that count (up to and including EOS).
    """

    prompts: list[str]  # B*G, each prompt repeated G times
    completions: list[str]  # B*G decoded completions (without EOS/padding)
    group_size: int
    input_ids: Tensor  # (N, P + C)
    attention_mask: Tensor  # (N, P + C)
    completion_mask: Tensor  # (N, C) float
    truncated: Tensor  # (N,) bool: stopped by max_new_tokens, not by EOS
    columns: dict[str, list[Any]] = field(default_factory=dict)  # task columns (answer, ...), per row
    sampler_logprobs: Tensor | None = None  # (N, C) log-probs of the sampling policy, if the sampler has them
    # Filled in by the step:
    rewards: Tensor | None = None  # (N,)
    advantages: Tensor | None = None  # (N,) or (N, C)
    old_logprobs: Tensor | None = None  # (N, C) policy before this step's updates
    ref_logprobs: Tensor | None = None  # (N, C) frozen reference policy

    @property
    def num_completions(self) -> int:
        return len(self.completions)

    @property
    def num_groups(self) -> int:
        return self.num_completions // self.group_size

    @property
    def prompt_length(self) -> int:
        return self.input_ids.shape[1] - self.completion_mask.shape[1]

    @property
    def completion_ids(self) -> Tensor:
        return self.input_ids[:, self.prompt_length:]

    @property
    def completion_lengths(self) -> Tensor:
        return self.completion_mask.sum(-1)

    def grouped(self, values: Tensor) -> Tensor:
        """(N, ...) → (B, G, ...)."""
        return values.view(self.num_groups, self.group_size, *values.shape[1:])

    def select(self, index: Tensor) -> Rollout:
        """Rows `index` as a new Rollout (for minibatches); lists and tensors alike."""
        picked = {}
        rows = index.tolist()
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                picked[f.name] = value[index]
            elif isinstance(value, list):
                picked[f.name] = [value[i] for i in rows]
            elif isinstance(value, dict):
                picked[f.name] = {k: [v[i] for i in rows] for k, v in value.items()}
        return replace(self, **picked)

    def minibatches(self, num_minibatches: int, generator: torch.Generator | None = None) -> list[Rollout]:
        """Split rows into `num_minibatches` shuffled minibatches of (nearly) equal size."""
        order = torch.randperm(self.num_completions, generator=generator)
        return [self.select(chunk) for chunk in order.chunk(num_minibatches)]


@dataclass
class PromptBatch:
    """What the DataModule yields: prompts and their task columns (answer, difficulty, ...)."""

    prompts: list[str]
    columns: dict[str, list[Any]]
    indices: list[int]  # positions in the task, for the curriculum

    def __len__(self) -> int:
        return len(self.prompts)

    @classmethod
    def collate(cls, rows: list[dict[str, Any]]) -> PromptBatch:
        keys = [k for k in rows[0] if k not in ("prompt", "index")]
        return cls([r["prompt"] for r in rows], {k: [r[k] for r in rows] for k in keys}, [r["index"] for r in rows])

    def repeat(self, times: int) -> tuple[list[str], dict[str, list[Any]]]:
        """Prompts and columns with each row repeated `times` times in place (prompt-major)."""
        prompts = [p for p in self.prompts for _ in range(times)]
        columns = {k: [v for v in values for _ in range(times)] for k, values in self.columns.items()}
        return prompts, columns
