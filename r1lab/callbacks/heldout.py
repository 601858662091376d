"""Held-out evaluation at the end of RL: the trained policy's greedy accuracy on problems it never saw.

`train/accuracy` is measured on the training prompts, with the rollout sampler: a tree search there scores
the search, not the policy. This callback decodes the final policy greedily with the plain `transformers`
sampler, whatever sampler trained it, on a held-out task (the training task's config with `overrides`,
e.g. another seed), drops any problem whose question the training task also holds, and logs
`eval/heldout_greedy` (and `eval/heldout_greedy_d<k>` per difficulty) at the last RL step, and writes
`heldout.json`. The held-out set is built when fitting starts, so a bad task config fails before training.
With `before=true` the starting policy is measured too, at step 0 under the same tag (a fresh run only: a
resumed run keeps the value its first part logged), so the curve shows before and after.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from r1lab.rl.metrics import mean_by_difficulty
from r1lab.rollout import PromptBatch
from r1lab.runs.run_log import tell
from r1lab.samplers.base import GREEDY
from r1lab.samplers.hf import HFSampler
from r1lab.engines.strategies import generation_parameters


class HeldOutEval(pl.Callback):
    def __init__(self, task: DictConfig | dict | None = None, overrides: DictConfig | dict | None = None,
                 limit: int = 256, max_new_tokens: int | None = None, prompts_per_batch: int = 32,
                 before: bool = False):
        if limit < 1 or prompts_per_batch < 1:
            raise ValueError(f"callbacks.heldout.limit and prompts_per_batch must be >= 1, got {limit}, "
                             f"{prompts_per_batch}")
        if isinstance(task, DictConfig):  # resolved first: the merged copy no longer sees the root config
            task = OmegaConf.to_container(task, resolve=True)
        self.task_cfg = None if task is None else OmegaConf.merge(task, overrides or {})
        self.limit, self.max_new_tokens, self.prompts_per_batch = limit, max_new_tokens, prompts_per_batch
        self.before = before
        self.before_results: dict[str, float] | None = None
        self.task: Any = None
        self.rows: list[dict[str, Any]] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.task_cfg is None:
            return
        self.task = instantiate(self.task_cfg)
        self.task.render_prompts(pl_module.tokenizer)
        seen = {row["question"] for row in trainer.datamodule.task.rows}
        self.rows = [self.task[i] for i in range(len(self.task)) if self.task.rows[i]["question"] not in seen]
        self.rows = self.rows[:self.limit]
        if not self.rows:
            raise ValueError(f"callbacks.heldout: every problem of the held-out task ({len(self.task)}) is also a "
                             "training problem; give it other problems (callbacks.heldout.overrides, e.g. "
                             "{seed: 4321})")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self.rows and self.before) or getattr(pl_module, "resumed_at", None) is not None:
            return
        self.before_results = self.evaluate(pl_module)
        if trainer.is_global_zero:
            self._log(trainer, self.before_results, step=0)
            report = {"task": self.task.name, "problems": len(self.rows), "decoding": "greedy",
                      "before": self.before_results}  # kept for a resumed run, completed at the end
            (Path(trainer.default_root_dir) / "heldout.json").write_text(json.dumps(report, indent=2))
            tell(f"held-out greedy accuracy before training, on {len(self.rows)} problems: "
                  f"{self.before_results['eval/heldout_greedy']:.3f}")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.rows:
            return
        results = self.evaluate(pl_module)
        if not trainer.is_global_zero:
            return
        step = max(pl_module.rl_step - 1, 0)  # the last RL step's x, beside its training metrics
        self._log(trainer, results, step)
        report = {"task": self.task.name, "problems": len(self.rows), "decoding": "greedy", "step": step,
                  "results": results}
        path = Path(trainer.default_root_dir) / "heldout.json"
        before = self.before_results
        if before is None and path.is_file():  # a resumed run: the first part measured the start
            before = json.loads(path.read_text()).get("before")
        if before is not None:
            report["before"] = before
        path.write_text(json.dumps(report, indent=2))
        tell(f"held-out greedy accuracy on {len(self.rows)} problems: {results['eval/heldout_greedy']:.3f}")

    def _log(self, trainer: pl.Trainer, results: dict[str, float], step: int) -> None:
        if trainer.logger:
            trainer.logger.log_metrics(results, step=step)
            trainer.logger.save()

    @torch.no_grad()
    def evaluate(self, pl_module: pl.LightningModule) -> dict[str, float]:
        """Greedy accuracy over the held-out rows, overall and per difficulty label."""
        max_new_tokens = self.max_new_tokens or pl_module.sampler.max_new_tokens
        sampler = HFSampler(record_logprobs=False).with_settings(group_size=1, max_new_tokens=max_new_tokens, **GREEDY)
        model = pl_module.policy
        was_training = model.training
        model.eval()
        correct: list[float] = []
        # Greedy decoding still draws (top-k 1 through the sampler): fork the RNG so that measuring changes
        # nothing for training, and a resumed run (its checkpoint is written after this at the end) samples
        # what the uninterrupted run sampled.
        cuda = [pl_module.device.index or 0] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), generation_parameters(pl_module.strategy, model):
            for start in range(0, len(self.rows), self.prompts_per_batch):
                batch = PromptBatch.collate(self.rows[start:start + self.prompts_per_batch])
                rollout = sampler.rollout(model, pl_module.tokenizer, batch)
                correct += self.task.verify(rollout.completions, rollout.columns)
        model.train(was_training)
        levels = [row.get("difficulty") for row in self.rows]
        return {"eval/heldout_greedy": sum(correct) / len(correct),
                **mean_by_difficulty(correct, levels, "eval/heldout_greedy_d")}
