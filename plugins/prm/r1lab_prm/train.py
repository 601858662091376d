"""`stage=prm_train`: train the toy PRM (a token-classification Qwen2) on step-labelled toy traces."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from r1lab.models.policy import load_tokenizer, resolve_package_path
from r1lab.models.tokenizers import build_char_tokenizer
from r1lab.stages.sft import pad_batch  # the same padding: labels -100 beyond each row
from r1lab_prm.scorer import PRMScorer
from r1lab_prm.toy_data import labelled_trace

SEPARATOR = "\n"


class LabelledTraces(IterableDataset):
    """An endless seeded stream of encoded traces: labels at each step's separator, -100 elsewhere."""

    def __init__(self, tokenizer, seed: int, **trace_options: Any):
        self.tokenizer, self.seed, self.options = tokenizer, seed, trace_options
        self.separator_id = tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"][0]

    def encode(self, rng: random.Random) -> tuple[list[int], list[int]]:
        trace = labelled_trace(rng, **self.options)
        ids = self.tokenizer(trace.prompt, add_special_tokens=False)["input_ids"]
        labels = [-100] * len(ids)
        for step, label in zip(trace.steps, trace.labels):
            step_ids = self.tokenizer(step, add_special_tokens=False)["input_ids"]
            ids += step_ids + [self.separator_id]
            labels += [-100] * len(step_ids) + [label]
        return ids, labels

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = random.Random(self.seed)
        while True:
            ids, labels = self.encode(rng)
            yield {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}


class PRMTraining(pl.LightningModule):
    def __init__(self, model, lr: float):
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.model(**batch)
        labelled = batch["labels"] != -100
        accuracy = (out.logits.argmax(-1)[labelled] == batch["labels"][labelled]).float().mean()
        self.log_dict({"prm_train/loss": out.loss, "prm_train/step_accuracy": accuracy}, prog_bar=True)
        return out.loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=0.01)


def build_prm(architecture: dict[str, Any] | None = None, init: str | None = None):
    """A 2-label token-classification model: from a pre-trained causal LM's weights (`init`, as real PRMs
    start from a policy model), or random with the char tokenizer (`architecture`)."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    if init:
        folder = resolve_package_path(init)
        model = AutoModelForTokenClassification.from_pretrained(folder, num_labels=2)
        return model, load_tokenizer(folder)
    tokenizer = build_char_tokenizer()
    spec = dict(architecture)
    config = AutoConfig.for_model(spec.pop("model_type", "qwen2"), vocab_size=len(tokenizer), num_labels=2,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **spec)
    return AutoModelForTokenClassification.from_config(config), tokenizer


def evaluate(scorer: PRMScorer, problems: int, seed: int, **trace_options: Any) -> dict[str, float]:
    """Step accuracy of the PRM (threshold 0.5) on fresh traces, overall and per kind of step."""
    rng = random.Random(seed)
    traces = [labelled_trace(rng, **trace_options) for _ in range(problems)]
    scores = scorer.score([t.prompt for t in traces], [t.steps for t in traces])
    hits: dict[str, list[float]] = defaultdict(list)
    for trace, step_scores in zip(traces, scores):
        for kind, label, score in zip(trace.kinds, trace.labels, step_scores):
            hit = float((score > 0.5) == bool(label))
            hits[kind].append(hit)
            hits["all"].append(hit)
    return {f"step_accuracy_{kind}": sum(v) / len(v) for kind, v in sorted(hits.items())}


def prm_train_stage(cfg, architecture: dict[str, Any] | None = None, init: str | None = None, steps: int = 1500,
                    batch_size: int = 64, lr: float = 1e-3, export_dir: str | None = None, eval_problems: int = 500,
                    traces: dict[str, Any] | None = None) -> float:
    """Train the toy PRM; save it to `<run dir>/prm` (and `export_dir`); return its held-out step accuracy."""
    from r1lab.trainer import make_trainer

    model, tokenizer = build_prm(architecture, init)
    options = dict(traces or {})
    data = DataLoader(LabelledTraces(tokenizer, cfg.seed, **options), batch_size=batch_size,
                      collate_fn=pad_batch(tokenizer.pad_token_id))
    trainer = make_trainer(cfg, callbacks=[], max_steps=steps)
    trainer.fit(PRMTraining(model, lr), train_dataloaders=data)

    run_dir = Path(cfg.paths.output_dir)
    targets = [run_dir / "prm", *([Path(export_dir)] if export_dir else [])]
    for target in targets:
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
    report = evaluate(PRMScorer(str(targets[0]), SEPARATOR), eval_problems, cfg.seed + 1, **options)
    for target in targets:
        (target / "r1lab_prm_eval.json").write_text(json.dumps(report, indent=2))
    if trainer.logger:
        trainer.logger.log_metrics({f"prm_eval/{k}": v for k, v in report.items()}, step=steps)
    print("toy PRM held-out step accuracy:", json.dumps(report))
    return report["step_accuracy_all"]
