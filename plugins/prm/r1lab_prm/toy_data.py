"""Step-labelled toy traces: what the toy PRM learns from.

A trace has the toy world's steps (first guess, one step per column, conclusion); each step is labelled
correct or not against the true sum. Wrong steps come in three kinds: a wrong column sum, a wrong carry-in,
and wrong operand digits with consistent arithmetic (the hardest to spot: it needs the problem's digits).
Like a real PRM's data, it covers the policy's usual traces only: never extra or repeated columns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from r1lab.toy.corpus import QA_TEMPLATE, random_digit_guess

CORRUPTIONS = ("sum", "carry", "operand")


@dataclass
class LabelledTrace:
    prompt: str
    steps: list[str]
    labels: list[int]  # 1 = correct step
    kinds: list[str]  # "ok" or the corruption of each step


def column(x: int, y: int, carry: int) -> str:
    total = x + y + carry
    return f"{x}+{y}+{carry}={total // 10}{total % 10}"


def corrupt_column(x: int, y: int, carry: int, kind: str, rng: random.Random) -> str:
    if kind == "sum":
        total = x + y + carry
        wrong = rng.choice([t for t in range(20) if t != total])
        return f"{x}+{y}+{carry}={wrong // 10}{wrong % 10}"
    if kind == "carry":
        return column(x, y, 1 - carry)
    x2, y2 = x, y
    while (x2, y2) == (x, y):
        x2, y2 = (rng.randrange(10), y) if rng.random() < 0.5 else (x, rng.randrange(10))
    return column(x2, y2, carry)


def labelled_trace(rng: random.Random, min_digits: int = 1, max_digits: int = 5, error_rate: float = 0.25,
                   verify_rate: float = 0.8) -> LabelledTrace:
    digits = rng.randint(min_digits, max_digits)
    low = 10 ** (digits - 1) if digits > 1 else 0
    a, b = rng.randint(low, 10 ** digits - 1), rng.randint(low, 10 ** digits - 1)
    answer = a + b
    steps, labels, kinds = [], [], []

    def add(text: str, kind: str) -> None:
        steps.append(text)
        labels.append(int(kind == "ok"))
        kinds.append(kind)

    guess = random_digit_guess(answer, rng, wrong_rate=0.5)
    add(str(guess), "ok" if guess == answer else "answer")
    if rng.random() < verify_rate:
        carry = 0
        for k in range(digits):
            x, y = (a // 10 ** k) % 10, (b // 10 ** k) % 10
            if rng.random() < error_rate:
                kind = rng.choice(CORRUPTIONS)
                add(corrupt_column(x, y, carry, kind, rng), kind)
            else:
                add(column(x, y, carry), "ok")
            carry = (x + y + carry) // 10
        conclusion = answer if rng.random() < 0.7 else random_digit_guess(answer, rng, wrong_rate=1.0)
        add(str(conclusion), "ok" if conclusion == answer else "answer")
    return LabelledTrace(QA_TEMPLATE.format(question=f"{a}+{b}"), steps, labels, kinds)
