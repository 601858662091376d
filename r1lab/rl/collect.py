"""One RL step's batch, sampled and scored: the rollout, the task's verdict on each completion (computed
once), the reward terms, and DAPO's dynamic sampling (more prompts while groups carry no signal)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from r1lab.engines.distributed import all_ranks_agree
from r1lab.rewards.base import RewardSet
from r1lab.rollout import PromptBatch, Rollout, ScoredRollout

Verifier = Callable[[Sequence[str], Mapping[str, Sequence[Any]]], list[float]]  # PromptTask.verify


@dataclass
class Collected:
    rollout: Rollout
    scored: ScoredRollout
    draws: int  # sampling rounds it took (1 without dynamic sampling)


class RolloutCollector:
    """Samples a batch and scores it. With `dynamic_sampling` (DAPO), groups whose rewards are all equal are
    dropped and more prompts drawn until the batch is full again, at most `max_draws` rounds in all; if no
    group differs at all, the first round is kept as it is."""

    def __init__(self, rewards: RewardSet, verify: Verifier, pad_token_id: int, dynamic_sampling: bool = False,
                 max_draws: int = 4):
        if max_draws < 1:
            raise ValueError(f"rl.dynamic_sampling.max_draws must be >= 1, got {max_draws}")
        self.rewards, self.verify, self.pad_token_id = rewards, verify, pad_token_id
        self.dynamic_sampling, self.max_draws = dynamic_sampling, max_draws

    def score(self, rollout: Rollout) -> ScoredRollout:
        columns = rollout.reward_columns()
        correct = self.verify(rollout.completions, columns)
        return self.rewards(rollout.prompts, rollout.completions, columns, correct=correct)

    def collect(self, sample: Callable[[PromptBatch], Rollout], batch: PromptBatch,
                more_prompts: Callable[[int], PromptBatch]) -> Collected:
        """`sample(batch)` draws the completions; `more_prompts(draw)` gives the prompts of an extra round."""
        rollout = sample(batch)
        scored = self.score(rollout)
        if not self.dynamic_sampling:
            return Collected(rollout, scored, 1)
        wanted, first = rollout.num_groups, Collected(rollout, scored, 1)
        kept: list[tuple[Rollout, ScoredRollout]] = []
        draws = 1
        while True:
            totals = rollout.grouped(scored.total)
            informative = [g for g in range(rollout.num_groups) if totals[g].max() > totals[g].min()]
            if informative:
                kept.append((rollout.select_groups(informative), scored.select(rollout.group_rows(informative))))
            have = sum(r.num_groups for r, _ in kept)
            if all_ranks_agree(have >= wanted) or draws >= self.max_draws:  # ranks draw in step (collectives)
                break
            rollout = sample(more_prompts(draws))
            scored = self.score(rollout)
            draws += 1
        if not kept:
            first.draws = draws
            return first
        merged = Rollout.concat([r for r, _ in kept], self.pad_token_id)
        merged_scores = ScoredRollout.concat([s for _, s in kept])
        groups = list(range(min(wanted, merged.num_groups)))
        return Collected(merged.select_groups(groups), merged_scores.select(merged.group_rows(groups)), draws)
