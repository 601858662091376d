"""Cold-start data for the toy world: a few readable, well-formatted traces (R1's stage 1).

Each trace verifies with the digit language only (no mixing), states the sum it checked, and ends its
reasoning with a one-line summary before the answer, as R1's cold-start format asks:
"61234+27988: the first guess is 89312. Wait, let me verify: 4+8+0=12,... so 89222. Summary: 61234+27988=89222".
"""

from __future__ import annotations

import random

from r1lab.toy.corpus import QA_TEMPLATE, SELF_CHECK, column_trace, random_digit_guess


def cold_start_completion(a: int, b: int, digits: int, rng: random.Random) -> str:
    answer = a + b
    guess = random_digit_guess(answer, rng, wrong_rate=0.5)
    return (f"{guess} {SELF_CHECK} {column_trace(a, b, digits)} so {answer}. Summary: {a}+{b}={answer}"
            f"</think><answer>{answer}</answer>")


def cold_start_rows(n: int = 2000, min_digits: int = 1, max_digits: int = 5, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        digits = rng.randint(min_digits, max_digits)
        low = 10 ** (digits - 1) if digits > 1 else 0
        a, b = rng.randint(low, 10 ** digits - 1), rng.randint(low, 10 ** digits - 1)
        rows.append({"prompt": QA_TEMPLATE.format(question=f"{a}+{b}"),
                     "completion": cold_start_completion(a, b, digits, rng)})
    return rows
