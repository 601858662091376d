"""`stage=rejection_sample`: sample N completions per prompt from a checkpoint and keep those that pass the
filters, as R1's stage 3 builds its SFT data. Writes `dataset.jsonl` (prompt, completion, answer, question: a
student with another prompt format re-renders the prompt from it, `stage.reprompt` of stage=sft) and
`summary.json` (how many completions each filter kept, in order).

Filters, applied in this order (each configurable, `null` turns it off): `accuracy` (the task's verifier
says the answer is right), `format` (the R1 template), `language` (the reasoning's target-language share is
at least a minimum), `length` (at most `max_tokens` completion tokens), `dedupe` (one copy of identical
completions per prompt).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from r1lab.judging.language import languages_in, make_identifier
from r1lab.rewards.format import FormatReward
from r1lab.rollout import PromptBatch


@dataclass
class Candidate:
    prompt: str
    completion: str
    answer: str
    tokens: int
    correct: float  # the task's verdict (1 right, 0 wrong)
    question: str | None = None  # the problem without its prompt template


def build_filters(accuracy: bool = True, format: bool = True, language: dict[str, Any] | None = None,
                  max_tokens: int | None = None, dedupe: bool = True) -> list[tuple[str, Callable]]:
    """Named filters; each takes the surviving candidates and returns those it keeps."""
    filters: list[tuple[str, Callable]] = []
    if accuracy:
        filters.append(("accuracy", lambda cs: [c for c in cs if c.correct == 1.0]))
    if format:
        template = FormatReward()
        filters.append(("format", lambda cs: [c for c, ok in zip(cs, template([c.prompt for c in cs],
                                                                               [c.completion for c in cs])) if ok]))
    if language:
        identifier = make_identifier(language.get("identifier", "natural"))
        target = identifier.check(language["target"])
        minimum = float(language.get("min_share", 1.0))

        def consistent(c: Candidate) -> bool:
            counts = languages_in(c.completion, identifier)
            total = sum(counts.values())
            return (counts[target] / total if total else 1.0) >= minimum
        filters.append(("language", lambda cs: [c for c in cs if consistent(c)]))
    if max_tokens:
        filters.append(("length", lambda cs: [c for c in cs if c.tokens <= max_tokens]))
    if dedupe:
        def unique(cs: list[Candidate]) -> list[Candidate]:
            seen: set[tuple[str, str]] = set()
            kept = []
            for c in cs:
                if (c.prompt, c.completion) not in seen:
                    seen.add((c.prompt, c.completion))
                    kept.append(c)
            return kept
        filters.append(("dedupe", unique))
    return filters


def apply_filters(candidates: list[Candidate], filters: list[tuple[str, Callable]]) -> tuple[list[Candidate], dict]:
    """The candidates every filter keeps, and per filter: how many it saw and kept."""
    summary = {"sampled": len(candidates), "filters": []}
    for name, keep in filters:
        before = len(candidates)
        candidates = keep(candidates)
        summary["filters"].append({"filter": name, "in": before, "kept": len(candidates),
                                   "kept_rate": len(candidates) / before if before else float("nan")})
    summary["kept"] = len(candidates)
    summary["kept_rate"] = len(candidates) / summary["sampled"] if summary["sampled"] else float("nan")
    return candidates, summary


def rejection_sample_stage(cfg, samples_per_prompt: int = 4, limit: int | None = None, temperature: float = 1.0,
                           filters: dict[str, Any] | None = None, prompts_per_batch: int = 16) -> float:
    """Sample, filter, write `<run dir>/dataset.jsonl` and `summary.json`; returns the kept rate."""
    if limit is not None and limit < 1:
        raise ValueError(f"stage.limit must be >= 1 (the first N prompts of the task) or null (all of them), "
                         f"got {limit}")
    task, policy = instantiate(cfg.task), instantiate(cfg.model)
    task.render_prompts(policy.tokenizer)
    model, tokenizer = policy.model.eval(), policy.tokenizer
    rows = [task[i] for i in range(len(task) if limit is None else min(limit, len(task)))]
    configured = instantiate(cfg.sampler)  # sampler=vllm samples with vLLM, sampler=mcts with the search
    sampler = configured.with_settings(group_size=samples_per_prompt, temperature=temperature,
                                       record_logprobs=False)
    candidates: list[Candidate] = []
    with torch.no_grad(), closing(configured):
        for start in range(0, len(rows), prompts_per_batch):
            rollout = sampler.rollout(model, tokenizer, PromptBatch.collate(rows[start:start + prompts_per_batch]))
            correct = task.verify(rollout.completions, rollout.columns)
            questions = rollout.columns.get("question", [None] * len(rollout.completions))
            for prompt, completion, answer, length, right, question in zip(
                    rollout.prompts, rollout.completions, rollout.columns["answer"], rollout.completion_lengths,
                    correct, questions):
                candidates.append(Candidate(prompt, completion, str(answer), int(length), right, question))
    kept, summary = apply_filters(candidates, build_filters(**dict(filters or {})))
    out = Path(cfg.paths.output_dir)
    with (out / "dataset.jsonl").open("w", encoding="utf-8") as handle:
        for c in kept:
            handle.write(json.dumps({"prompt": c.prompt, "completion": c.completion, "answer": c.answer,
                                     "question": c.question}) + "\n")
    summary |= {"model": str(policy.source), "task": task.name, "sampler": type(configured).__name__,
                "prompts": len(rows),
                "samples_per_prompt": samples_per_prompt, "dataset": str(out / "dataset.jsonl")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("sampled", "kept", "kept_rate", "filters")}, indent=1))
    return summary["kept_rate"]
