"""Generated arithmetic problems with exact answers and a difficulty label (the number of digits)."""

from __future__ import annotations

import random

from r1lab.tasks.base import PromptTask


class AdditionTask(PromptTask):
    """`num_problems` sums of two d-digit numbers, d drawn uniformly from [min_digits, max_digits].

    Difficulty = d; the hardest slice is d == max_digits. Seeded, so every run sees the same problems.
    """

    def __init__(self, num_problems: int = 2000, min_digits: int = 2, max_digits: int = 5, seed: int = 1234,
                 prompt_template: str = "{question}", name: str = "addition"):
        super().__init__(prompt_template)
        if not 1 <= min_digits <= max_digits:
            raise ValueError(f"need 1 <= task.min_digits <= task.max_digits, got {min_digits}, {max_digits}")
        self.name = name
        rng = random.Random(seed)
        for _ in range(num_problems):
            digits = rng.randint(min_digits, max_digits)
            a, b = (rng.randint(10 ** (digits - 1), 10 ** digits - 1) for _ in range(2))
            self.rows.append(self.make_row(f"{a}+{b}", str(a + b), difficulty=digits))
