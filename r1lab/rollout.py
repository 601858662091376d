"""The data one RL step passes along: the prompts it samples for (`PromptBatch`), their completions
(`Rollout`) and how each completion scored (`ScoredRollout`).

The ground floor: samplers, tasks, rewards, the RL step, stages and plugins all use these types, and this
module imports nothing of r1lab's.
"""

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
    # (N,) tokens the sampler generated for each row, when more than its completion (e.g. tree search:
    # a prompt's whole search cost shared among its G completions); None means the completion tokens.
    generated_tokens: Tensor | None = None
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

    def to(self, device: torch.device | str) -> Rollout:
        """The same rollout with its tensors on `device` (e.g. the CPU, to send to other ranks)."""
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self) if isinstance(getattr(self, f.name), Tensor)}
        return replace(self, **moved)

    def completion_token_lists(self) -> list[list[int]]:
        """Each completion's token ids (EOS included, padding dropped), as TRL passes `completion_ids`."""
        return [ids[mask.bool()].tolist() for ids, mask in zip(self.completion_ids, self.completion_mask)]

    def reward_columns(self) -> dict[str, list[Any]]:
        """What every reward gets besides prompts and completions: the task columns and `completion_ids`."""
        return {**self.columns, "completion_ids": self.completion_token_lists()}

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

    def group_rows(self, groups: list[int]) -> list[int]:
        """The rows of whole groups (by group number), in the prompt-major layout."""
        return [g * self.group_size + k for g in groups for k in range(self.group_size)]

    def select_groups(self, groups: list[int]) -> Rollout:
        """Whole groups (by group number), keeping the prompt-major layout."""
        return self.select(torch.tensor(self.group_rows(groups), dtype=torch.long))

    @staticmethod
    def concat(rollouts: list[Rollout], pad_token_id: int) -> Rollout:
        """Rows of several rollouts of the same group size: prompts re-padded on the left, completions on
        the right, so the layout stays "prompt block + completion block"."""
        if len(rollouts) == 1:
            return rollouts[0]
        prompt_width = max(r.prompt_length for r in rollouts)
        completion_width = max(r.completion_mask.shape[1] for r in rollouts)

        def pad(r: Rollout, tensor: Tensor, value: float, completion_only: bool = False) -> Tensor:
            left = 0 if completion_only else prompt_width - r.prompt_length
            right = completion_width - r.completion_mask.shape[1]
            return torch.nn.functional.pad(tensor, (left, right), value=value)

        merged = {}
        for f in fields(Rollout):
            values = [getattr(r, f.name) for r in rollouts]
            if f.name == "group_size":
                merged[f.name] = values[0]
            elif f.name == "input_ids":
                merged[f.name] = torch.cat([pad(r, r.input_ids, pad_token_id) for r in rollouts])
            elif f.name == "attention_mask":
                merged[f.name] = torch.cat([pad(r, r.attention_mask, 0) for r in rollouts])
            elif values[0] is None:
                merged[f.name] = None
            elif isinstance(values[0], list):
                merged[f.name] = [item for v in values for item in v]
            elif isinstance(values[0], dict):
                merged[f.name] = {k: [item for v in values for item in v[k]] for k in values[0]}
            elif values[0].dim() == 2:  # per-token tensors span the completion block
                merged[f.name] = torch.cat([pad(r, v, 0, completion_only=True) for r, v in zip(rollouts, values)])
            else:
                merged[f.name] = torch.cat(values)
        return Rollout(**merged)

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
    seeds: list[int] | None = None  # one sampling seed per prompt (used by sampler.seeding=per_prompt)

    def __len__(self) -> int:
        return len(self.prompts)

    def part(self, rows: slice) -> PromptBatch:
        """The prompts in `rows` (e.g. one rank's share of the global batch)."""
        return PromptBatch(self.prompts[rows], {k: v[rows] for k, v in self.columns.items()}, self.indices[rows],
                           None if self.seeds is None else self.seeds[rows])

    @classmethod
    def collate(cls, rows: list[dict[str, Any]]) -> PromptBatch:
        keys = [k for k in rows[0] if k not in ("prompt", "index")]
        return cls([r["prompt"] for r in rows], {k: [r[k] for r in rows] for k in keys}, [r["index"] for r in rows])

    def repeat(self, times: int) -> tuple[list[str], dict[str, list[Any]]]:
        """Prompts and columns with each row repeated `times` times in place (prompt-major); the column
        `index` holds each row's position in the task."""
        prompts = [p for p in self.prompts for _ in range(times)]
        columns = {k: [v for v in values for _ in range(times)] for k, values in self.columns.items()}
        columns["index"] = [i for i in self.indices for _ in range(times)]
        return prompts, columns


@dataclass
class ScoredRollout:
    """How each completion of a rollout scored. `correct` is the task's verdict (1 right, 0 wrong, NaN where
    the row has no gold answer), computed once per completion: `train/accuracy`, curricula, diagnostics and
    reward terms (the column `correct`) all read it, whatever the reward terms are called."""

    correct: Tensor  # (N,) the task's verifier
    total: Tensor  # (N,) weighted sum of the reward terms; NaN only where a term returned a non-finite number
    terms: dict[str, Tensor]  # name -> (N,) raw term values, NaN where the term returned None
    failures: dict[str, int]  # name -> completions the term raised on
    nonfinite: int  # values that were NaN/inf numbers (a bug in a reward, not "not applicable")

    def select(self, rows: list[int]) -> ScoredRollout:
        index = torch.tensor(rows, dtype=torch.long)
        return ScoredRollout(self.correct[index], self.total[index], {k: v[index] for k, v in self.terms.items()},
                             dict(self.failures), int((~torch.isfinite(self.total[index])).sum()))

    def to(self, device: torch.device | str) -> ScoredRollout:
        return ScoredRollout(self.correct.to(device), self.total.to(device),
                             {k: v.to(device) for k, v in self.terms.items()}, dict(self.failures), self.nonfinite)

    @staticmethod
    def concat(parts: list[ScoredRollout]) -> ScoredRollout:
        failures = {k: sum(p.failures.get(k, 0) for p in parts) for k in parts[0].failures}
        return ScoredRollout(torch.cat([p.correct for p in parts]), torch.cat([p.total for p in parts]),
                             {k: torch.cat([p.terms[k] for p in parts]) for k in parts[0].terms}, failures,
                             sum(p.nonfinite for p in parts))
