"""Generated arithmetic problems with exact answers and a difficulty label (the number of digits)."""

from __future__ import annotations

import random
from typing import Any

from r1lab.tasks.base import PromptTask


class AdditionTask(PromptTask):
    """`num_problems` sums of two d-digit numbers, d from [min_digits, max_digits] (weighted by
    `digit_weights`, uniform by default).

    Difficulty = d; the hardest slice is d == max_digits. Seeded, so every run sees the same problems.
    """

    def __init__(self, num_problems: int = 2000, min_digits: int = 2, max_digits: int = 5, seed: int = 1234,
                 prompt_template: str = "{question}", digit_weights: list[float] | None = None,
                 name: str = "addition", **prompting: Any):
        super().__init__(prompt_template, **prompting)
        if not 1 <= min_digits <= max_digits:
            raise ValueError(f"need 1 <= task.min_digits <= task.max_digits, got {min_digits}, {max_digits}")
        levels = list(range(min_digits, max_digits + 1))
        weights = list(digit_weights) if digit_weights is not None else [1.0] * len(levels)
        if len(weights) != len(levels) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"task.digit_weights needs {len(levels)} non-negative weights (one per digit count "
                             f"{min_digits}..{max_digits}), got {digit_weights}")
        self.name = name
        self.hard_difficulty = max_digits
        rng = random.Random(seed)
        for _ in range(num_problems):
            digits = rng.choices(levels, weights)[0]
            a, b = (rng.randint(10 ** (digits - 1), 10 ** digits - 1) for _ in range(2))
            self.rows.append(self.make_row(f"{a}+{b}", str(a + b), difficulty=digits))
