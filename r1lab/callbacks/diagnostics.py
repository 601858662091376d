"""Aha-moment diagnostics, logged under diag/ each step (see r1lab/judging/diagnostics.py for the detectors)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only

from r1lab.judging.diagnostics import (PlateauDetector, conditional_accuracy, cut_before_check, format_hack, loops,
                               mixes_languages)
from r1lab.judging.language import make_identifier
from r1lab.rl.collect import Verifier
from r1lab.rollout import PromptBatch
from r1lab.runs.run_log import tell
from r1lab.samplers.base import GREEDY, Sampler
from r1lab.engines.strategies import shards_parameters


def verify_gain(model, tokenizer, sampler: Sampler, verify: Verifier, prompts: list[str], completions: list[str],
                correct: Sequence[float], columns: Mapping[str, Sequence[Any]], max_new_tokens: int = 24
                ) -> tuple[float, int] | None:
    """Ablation: cut verifying completions at the self-check phrase, let the policy answer directly
    (greedily, with the run's own sampler, after "</think><answer>"), and judge again with the task's verifier.
    `correct` is the verdict on the completions as they are. Returns (accuracy with − without verification,
    count)."""
    rows = [i for i, c in enumerate(completions) if cut_before_check(c) is not None]
    if not rows:
        return None
    prefixes = [cut_before_check(completions[i]) + "</think><answer>" for i in rows]
    picked = {key: [values[i] for i in rows] for key, values in columns.items()}
    greedy = sampler.with_settings(group_size=1, max_new_tokens=max_new_tokens, record_logprobs=False, **GREEDY)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        answered = greedy.rollout(model, tokenizer, PromptBatch([prompts[i] + prefix for i, prefix in zip(rows, prefixes)],
                                                                picked, rows))
    model.train(was_training)
    direct = [prefix + completion for prefix, completion in zip(prefixes, answered.completions)]
    without = verify(direct, picked)
    return (sum(correct[i] for i in rows) - sum(without)) / len(rows), len(rows)


class Diagnostics(pl.Callback):
    """diag/acc_given_verify, diag/acc_given_direct, diag/verify_gain (every `ablation_every` steps),
    diag/loop_rate, diag/truncated_frac, diag/format_hack_rate, diag/mixed_rate, and diag/plateau (once per
    premature plateau, with a console warning)."""

    def __init__(self, ablation_every: int = 10, ablation_samples: int = 32, identifier: str = "toy",
                 plateau_window: int = 5, plateau_threshold: float = 0.5, plateau_drop: float = 0.2,
                 ritual_gain: float = 0.05):
        self.ablation_every, self.ablation_samples = ablation_every, ablation_samples
        self.identifier = make_identifier(identifier)
        self.plateau = PlateauDetector(plateau_window, plateau_threshold, plateau_drop)
        self.ritual_gain = ritual_gain

    @property
    def state_key(self) -> str:
        return "Diagnostics"

    @rank_zero_only
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        rollout, metrics, step = outputs.rollout, outputs.metrics, outputs.step
        completions = rollout.completions
        correct = outputs.scored.correct.tolist()  # the task's verdict, computed once by the step
        n = len(completions)
        diag = conditional_accuracy(completions, correct) | {
            "diag/loop_rate": sum(map(loops, completions)) / n,
            "diag/truncated_frac": rollout.truncated.float().mean().item(),
            "diag/format_hack_rate": sum(map(format_hack, completions)) / n,
            "diag/mixed_rate": sum(mixes_languages(c, self.identifier) for c in completions) / n,
        }
        # The ablation samples from the policy on rank 0 alone: not possible when its weights are sharded.
        if (self.ablation_every and step % self.ablation_every == 0 and "answer" in rollout.columns
                and not shards_parameters(trainer.strategy)):
            k = self.ablation_samples
            gain = verify_gain(pl_module.policy, pl_module.tokenizer, pl_module.sampler, pl_module.collector.verify,
                               rollout.prompts[:k],
                               completions[:k], correct[:k], {key: v[:k] for key, v in rollout.columns.items()})
            if gain is not None:
                diag["diag/verify_gain"] = gain[0]
                verify_rate = metrics.get("aha/self_verify_rate", 0.0)
                if verify_rate >= 0.5 and gain[0] < self.ritual_gain:
                    tell(f"diag: step {step}: {verify_rate:.0%} of completions verify but verification gains "
                         f"only {gain[0]:+.2f} accuracy: ritual verification?", style="yellow", level=logging.WARNING)
        if self.plateau.update(metrics.get("aha/self_verify_rate", 0.0)):
            diag["diag/plateau"] = 1.0
            tell(f"diag: premature plateau at step {step}: the self-verify rate rose past {self.plateau.threshold} "
                 f"and fell back below {self.plateau.threshold - self.plateau.drop}", style="yellow",
                 level=logging.WARNING)
        if trainer.logger:
            trainer.logger.log_metrics(diag, step=step)

    def state_dict(self) -> dict[str, Any]:
        return {"plateau": self.plateau.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.plateau.load_state_dict(state_dict["plateau"])
