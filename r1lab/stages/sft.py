"""`stage=sft`: supervised fine-tuning on prompt/completion pairs, loss on completion tokens only.

Data (`stage.data`) is any object with rows {prompt, completion}: a JSONL file (`JsonlPairs`) or generated
rows (the toy world's cold start). The model, trainer, logger and callbacks groups are the usual ones; the
result is saved like an RL policy (`<run dir>/policy`, and `stage.export_dir`).

`stage.reprompt=true` rebuilds each pair's prompt from its `question` with `cfg.task`'s prompting (its template,
or the student's own chat template): distillation from a teacher that was prompted in another format, or
with another tokenizer (the toy model's traces taught to SmolLM2).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader, IterableDataset

from r1lab.runs.jsonl import DataFileError, read_jsonl
from r1lab.trainer import make_trainer


class SFTDataError(DataFileError):
    pass


def jsonl_pairs(path: str, prompt_key: str = "prompt", completion_key: str = "completion") -> list[dict[str, str]]:
    """Rows of a JSONL file of prompt/completion pairs (what rejection sampling writes)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SFTDataError(f"SFT data file {str(file)!r} does not exist")
    rows = []
    for number, record in read_jsonl(file, "SFT data"):
        if prompt_key not in record or completion_key not in record:
            raise SFTDataError(f"{file}:{number} needs {prompt_key!r} and {completion_key!r}, has {sorted(record)}")
        row = {"prompt": record[prompt_key], "completion": record[completion_key]}
        if "question" in record:  # written by rejection sampling: stage.reprompt rebuilds the prompt from it
            row["question"] = record["question"]
        rows.append(row)
    return rows


def reprompted(rows: list[dict[str, Any]], task, tokenizer) -> list[dict[str, Any]]:
    """`rows` with each prompt rebuilt from its question by `task`'s prompting (for the policy's tokenizer)."""
    missing = sum(1 for row in rows if not row.get("question"))
    if missing:
        raise SFTDataError(f"stage.reprompt=true rebuilds prompts from each pair's 'question', and {missing} of "
                           f"{len(rows)} pairs have none (rejection sampling writes it); set stage.reprompt=false "
                           "to train on the prompts as they are")
    return [{**row, "prompt": task.render(row["question"], tokenizer)} for row in rows]


class CompletionPairs(IterableDataset):
    """Shuffled epochs of encoded pairs; labels are -100 on the prompt (no loss there)."""

    def __init__(self, rows: list[dict[str, str]], tokenizer, seed: int, max_length: int = 1024):
        self.rows, self.tokenizer, self.seed, self.max_length = rows, tokenizer, seed, max_length

    def encode(self, row: dict[str, str]) -> dict[str, torch.Tensor]:
        prompt = self.tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        completion = self.tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        ids = (prompt + completion)[: self.max_length]
        labels = ([-100] * len(prompt) + completion)[: self.max_length]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng, epoch = random.Random(self.seed), 0
        while True:
            order = list(range(len(self.rows)))
            rng.shuffle(order)
            for index in order:
                yield self.encode(self.rows[index])
            epoch += 1


def pad_batch(pad_id: int):
    def collate(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        out = {"input_ids": torch.full((len(batch), width), pad_id), "labels": torch.full((len(batch), width), -100),
               "attention_mask": torch.zeros(len(batch), width, dtype=torch.long)}
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            out["input_ids"][i, :n], out["labels"][i, :n], out["attention_mask"][i, :n] = b["input_ids"], b["labels"], 1
        return out
    return collate


class SFTModule(pl.LightningModule):
    def __init__(self, model, lr: float = 1e-4, weight_decay: float = 0.0, warmup_steps: int = 0):
        super().__init__()
        self.model, self.lr, self.weight_decay, self.warmup_steps = model, lr, weight_decay, warmup_steps

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss  # transformers shifts labels and ignores -100
        self.log("sft/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        warmup = max(self.warmup_steps, 0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def sft_stage(cfg, data: Any = None, steps: int = 200, batch_size: int = 16, lr: float = 1e-4, weight_decay: float = 0.0,
              warmup_steps: int = 10, max_length: int = 1024, export_dir: str | None = None,
              reprompt: bool = False) -> float:
    """Fine-tune `cfg.model` on `data` (rows of prompt/completion) for `steps`; save to `<run dir>/policy`.
    `reprompt`: rebuild every prompt from its question with `cfg.task`'s prompting first."""
    if data is None:
        raise SFTDataError("stage.data is not set: give a JSONL file of prompt/completion pairs, e.g. "
                           "'stage.data={_target_:r1lab.stages.sft.jsonl_pairs,path:/path/to/dataset.jsonl}', or use "
                           "+experiment=toy_cold_start")
    rows = list(data)
    if not rows:
        raise SFTDataError("stage.data gave no prompt/completion pairs")
    policy = instantiate(cfg.model)
    tokenizer = policy.tokenizer
    if reprompt:
        rows = reprompted(rows, instantiate(cfg.task), tokenizer)
    loader = DataLoader(CompletionPairs(rows, tokenizer, cfg.seed, max_length), batch_size=batch_size,
                        collate_fn=pad_batch(tokenizer.pad_token_id))
    module = SFTModule(policy.model, lr, weight_decay, warmup_steps)
    trainer = make_trainer(cfg, callbacks=[], max_steps=steps)
    trainer.fit(module, train_dataloaders=loader)
    for target in [Path(cfg.paths.output_dir) / "policy", *([Path(export_dir)] if export_dir else [])]:
        policy.model.save_pretrained(target)
        tokenizer.save_pretrained(target)
    loss = trainer.callback_metrics.get("sft/loss")
    return float(loss) if loss is not None else float("nan")
