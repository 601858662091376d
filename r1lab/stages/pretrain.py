"""`stage=pretrain`: pre-train a tiny causal LM on the toy corpus (`+experiment=toy_pretrain`).

Examples are packed whole into fixed-length rows; the loss covers completion tokens only (prompts are
context), as the toy world's recipe prescribes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader, IterableDataset

from r1lab.toy.corpus import ToyCorpus
from r1lab.toy.probe import probe_base_model, write_model_card
from r1lab.trainer import make_trainer

IGNORE = -100


class PackedCorpus(IterableDataset):
    """Endless rows of `seq_len` tokens: whole examples packed greedily, padding at the end of a row."""

    def __init__(self, corpus: ToyCorpus, tokenizer, seq_len: int, seed: int):
        self.corpus, self.tokenizer, self.seq_len, self.seed = corpus, tokenizer, seq_len, seed

    def encode(self, rng: random.Random) -> tuple[list[int], list[int]]:
        example = self.corpus.example(rng)
        prompt = self.tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
        completion = self.tokenizer(example.completion, add_special_tokens=False)["input_ids"]
        completion.append(self.tokenizer.eos_token_id)
        return prompt + completion, [IGNORE] * len(prompt) + completion

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = random.Random(self.seed)
        pending = self.encode(rng)
        while True:
            ids, labels = [], []
            while len(ids) + len(pending[0]) <= self.seq_len:
                ids += pending[0]
                labels += pending[1]
                pending = self.encode(rng)
            if not ids:
                raise ValueError(f"an example of {len(pending[0])} tokens does not fit seq_len={self.seq_len}")
            padding = self.seq_len - len(ids)
            yield {"input_ids": torch.tensor(ids + [self.tokenizer.pad_token_id] * padding),
                   "labels": torch.tensor(labels + [IGNORE] * padding),
                   "attention_mask": torch.tensor([1] * len(ids) + [0] * padding)}


class CausalLMPretraining(pl.LightningModule):
    def __init__(self, model, lr: float, min_lr: float, warmup_steps: int, total_steps: int, weight_decay: float):
        super().__init__()
        self.model = model
        self.lr, self.min_lr, self.warmup_steps, self.total_steps = lr, min_lr, warmup_steps, total_steps
        self.weight_decay = weight_decay

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        tokens = (batch["labels"] != IGNORE).sum()
        self.log_dict({"pretrain/loss": loss, "pretrain/lr": self.lr_schedulers().get_last_lr()[0],
                       "pretrain/loss_tokens": tokens.float()}, prog_bar=True, on_step=True)
        return loss

    def configure_optimizers(self):
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.dim() < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=self.lr, betas=(0.9, 0.95))

        def schedule(step: int) -> float:  # linear warm-up, then cosine from lr to min_lr
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
            return (self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))) / self.lr

        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, schedule), "interval": "step"}}


def total_steps_for(tokens: int, seq_len: int, batch_size: int) -> int:
    return max(1, math.ceil(tokens / (seq_len * batch_size)))


def pretrain_stage(cfg, corpus: ToyCorpus, tokens: int = 6_000_000, seq_len: int = 256, batch_size: int = 32,
                   lr: float = 3e-3, min_lr: float = 3e-4, warmup_steps: int = 50, weight_decay: float = 0.1,
                   export_dir: str | None = None, probe_problems: int = 100) -> float:
    """Pre-train `cfg.model` on `corpus`; save to `<run dir>/policy` (and `export_dir`), then probe it."""
    policy = instantiate(cfg.model)
    steps = total_steps_for(tokens, seq_len, batch_size)
    module = CausalLMPretraining(policy.model, lr, min_lr, min(warmup_steps, steps), steps, weight_decay)
    data = DataLoader(PackedCorpus(corpus, policy.tokenizer, seq_len, cfg.seed), batch_size=batch_size)
    trainer = make_trainer(cfg, callbacks=[], max_steps=steps)
    trainer.fit(module, train_dataloaders=data)

    run_dir = Path(cfg.paths.output_dir)
    policy.model.eval()
    probe = probe_base_model(policy.model, policy.tokenizer, problems=probe_problems, seed=cfg.seed + 1)
    for target in [run_dir / "policy", *([Path(export_dir)] if export_dir else [])]:
        policy.model.save_pretrained(target)
        policy.tokenizer.save_pretrained(target)
        write_model_card(target, probe, corpus, steps * seq_len * batch_size, steps)
    if trainer.logger:
        trainer.logger.log_metrics({f"probe/{k}": v for k, v in probe.flat().items()}, step=steps)
    return probe.verify_rate
