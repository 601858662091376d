"""Measure what a toy base model can do: how often it self-verifies, and how accurate each path is."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from r1lab.judging.answers import answers_match, extract_answer
from r1lab.judging.selfcheck import self_verify_rate
from r1lab.toy.corpus import QA_TEMPLATE, SELF_CHECK, ToyCorpus, random_digit_guess

DIGITS = (2, 3, 4, 5)


@dataclass
class ProbeResult:
    verify_rate: float  # sampled at T = 1 on Q/A prompts, all digit counts
    direct_accuracy: dict[int, float]  # greedy, the self-check phrase banned, per digit count
    forced_verification_accuracy: dict[int, float]  # greedy after "<wrong guess> Wait, let me verify:"

    def flat(self) -> dict[str, float]:
        flat = {"verify_rate": self.verify_rate}
        flat |= {f"direct_accuracy_d{d}": v for d, v in self.direct_accuracy.items()}
        flat |= {f"forced_verification_accuracy_d{d}": v for d, v in self.forced_verification_accuracy.items()}
        return flat


@torch.no_grad()
def complete(model, tokenizer, prompts: list[str], greedy: bool, max_new_tokens: int = 96,
             banned: list[str] = (), batch_size: int = 64) -> list[str]:
    texts = []
    bad_words = [tokenizer(b, add_special_tokens=False)["input_ids"] for b in banned] or None
    for start in range(0, len(prompts), batch_size):
        encoded = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
        out = model.generate(**encoded, do_sample=not greedy, temperature=None if greedy else 1.0, top_p=None,
                             top_k=None, max_new_tokens=max_new_tokens, bad_words_ids=bad_words,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        texts += tokenizer.batch_decode(out[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    return texts


def accuracy(completions: list[str], golds: list[int]) -> float:
    right = [(a := extract_answer(c)) is not None and answers_match(str(g), a) for c, g in zip(completions, golds)]
    return sum(right) / max(len(right), 1)


def draw_problems(digits: int, count: int, rng: random.Random) -> list[tuple[int, int]]:
    return [(rng.randint(10 ** (digits - 1), 10 ** digits - 1), rng.randint(10 ** (digits - 1), 10 ** digits - 1))
            for _ in range(count)]


def probe_base_model(model, tokenizer, problems: int = 100, seed: int = 1) -> ProbeResult:
    """`problems` problems per digit count, drawn from `seed`."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    sampled, direct, forced = [], {}, {}
    for digits in DIGITS:
        pairs = draw_problems(digits, problems, rng)
        prompts = [QA_TEMPLATE.format(question=f"{a}+{b}") for a, b in pairs]
        golds = [a + b for a, b in pairs]
        sampled += complete(model, tokenizer, prompts, greedy=False)
        direct[digits] = accuracy(complete(model, tokenizer, prompts, greedy=True, banned=[SELF_CHECK]), golds)
        guesses = [random_digit_guess(g, rng, wrong_rate=1.0) for g in golds]
        forced_prompts = [f"{p}{guess} {SELF_CHECK} " for p, guess in zip(prompts, guesses)]
        forced[digits] = accuracy(complete(model, tokenizer, forced_prompts, greedy=True), golds)
    return ProbeResult(self_verify_rate(sampled), direct, forced)


def write_model_card(folder: Path, probe: ProbeResult, corpus: ToyCorpus, tokens: int, steps: int) -> None:
    """`r1lab_toy.json` beside the weights: how the model was made and what it measured."""
    folder.mkdir(parents=True, exist_ok=True)
    card = {"corpus": asdict(corpus), "pretraining_tokens": tokens, "pretraining_steps": steps,
            "probe": asdict(probe)}
    (folder / "r1lab_toy.json").write_text(json.dumps(card, indent=2) + "\n")
