from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only


class CompletionSamples(pl.Callback):
    """Every `every_n_steps`, write a few sampled completions to TensorBoard text and `<run dir>/samples.jsonl`."""

    def __init__(self, every_n_steps: int = 10, num_samples: int = 4, filename: str = "samples.jsonl"):
        if every_n_steps < 1 or num_samples < 1:
            raise ValueError("callbacks.samples.every_n_steps and num_samples must be >= 1")
        self.every_n_steps, self.num_samples, self.filename = every_n_steps, num_samples, filename

    @rank_zero_only
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A resumed run drops what an interrupted run wrote past its checkpoint: it samples those steps again."""
        path, resumed_at = Path(trainer.default_root_dir) / self.filename, getattr(pl_module, "resumed_at", None)
        if resumed_at is not None and path.is_file():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                    if line.endswith("\n") and json.loads(line)["step"] < resumed_at]  # a cut-off last line goes too
            path.write_text("".join(kept), encoding="utf-8")

    @rank_zero_only
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = outputs.step  # the RL step, as on the metrics' x-axis
        if step % self.every_n_steps:
            return
        rollout = outputs.rollout
        records = []
        for i in range(min(self.num_samples, rollout.num_completions)):
            records.append({"step": step, "prompt": rollout.prompts[i], "completion": rollout.completions[i],
                            "reward": float(rollout.rewards[i]), "advantage": float(rollout.advantages[i]),
                            "answer": rollout.columns.get("answer", [None] * rollout.num_completions)[i]})
        with open(Path(trainer.default_root_dir) / self.filename, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_text"):
            text = "\n\n".join(f"**reward {r['reward']:.3f}** (gold {r['answer']})\n\n```\n{r['prompt']}{r['completion']}\n```"
                               for r in records)
            experiment.add_text("samples", text, global_step=step)
