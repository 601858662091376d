"""The toy world's synthetic corpus: addition problems, answered directly or with a self-verification trace.

Two contexts teach the base model two habits:
- "textbook" worked examples (the Q/A prompt behind the marker `Textbook: `) always verify;
- Q/A examples under the task's prompt (`User: … Assistant: <think>`) verify only rarely (`qa_verify_rate`).
A verifying completion writes a first guess (usually wrong), the self-check phrase, a right-to-left column
trace that really computes the sum, and then the correct answer:

    61234+27988 → "89312 Wait, let me verify: 4+8+0=12,3+8+1=12,2+9+1=12,1+7+1=09,6+2+0=08 so 89222</think>
                   <answer>89222</answer>"

A direct completion is the answer alone: "89222</think><answer>89222</answer>". Direct answers are always
right in the corpus, but a tiny model cannot add 5-digit numbers in one step, so its direct answers to hard
problems are mostly wrong while its traces are mostly right: self-verification is latent and pays off,
which is what GRPO amplifies.

The second "language": in `second_language_rate` of the traces digits are written as letters (0→a … 9→j)
without "+" signs ("eib=bc" instead of "4+8+1=12"), 25% fewer tokens per column; in `mixed_language_rate`
of them the trace switches language mid-way. The language-consistency reward has this to suppress.

`guess_style="copy"` makes the control corpus: the "verification" only copies the first guess, digit by digit,
and concludes it. In the corpus the guess is right, so the text is still correct; but the model learns a
ritual that adds length and no computation, so verifying cannot beat answering directly (no aha).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SELF_CHECK = "Wait, let me verify:"
QA_TEMPLATE = "User: {question}\nAssistant: <think>"
# A textbook example is the Q/A prompt behind a marker: everything the trace attends to is the same in both
# contexts, so the skill learnt in textbooks carries over to Q/A (where it is rarely used).
TEXTBOOK_TEMPLATE = "Textbook: " + QA_TEMPLATE
LETTERS = "abcdefghij"  # the second language's digits
GUESS_STYLES = ("random_digits", "copy")


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str  # ends before EOS; the tokenizer appends it


def column_trace(a: int, b: int, digits: int, switch_at: int | None = None, second_language: bool = False) -> str:
    """Right-to-left column sums with carries, fixed width: "4+8+0=12,3+7+1=11,...".

    `second_language` writes every column in the letter language; `switch_at=k` switches to it at column k.
    """
    columns, carry = [], 0
    for k in range(digits):
        x, y = (a // 10 ** k) % 10, (b // 10 ** k) % 10
        total = x + y + carry
        if second_language or (switch_at is not None and k >= switch_at):
            columns.append(f"{LETTERS[x]}{LETTERS[y]}{LETTERS[carry]}={LETTERS[total // 10]}{LETTERS[total % 10]}")
        else:
            columns.append(f"{x}+{y}+{carry}={total // 10}{total % 10}")
        carry = total // 10
    return ",".join(columns)


def copied_trace(guess: int) -> str:
    """The control's ritual "verification": the guess's digits right to left, each restated ("2=2,2=2,...")."""
    return ",".join(f"{d}={d}" for d in reversed(str(guess)))


def random_digit_guess(answer: int, rng: random.Random, wrong_rate: float) -> int:
    """The answer with one or more digits redrawn (wrong with probability `wrong_rate`)."""
    if rng.random() >= wrong_rate:
        return answer
    text = list(str(answer))
    for position in rng.sample(range(len(text)), k=rng.randint(1, len(text))):
        text[position] = rng.choice([d for d in "0123456789" if d != text[position]])
    guess = "".join(text).lstrip("0") or "0"
    return int(guess) if int(guess) != answer else answer + 1


@dataclass
class ToyCorpus:
    """Deterministic example stream: the same seed gives the same corpus."""

    min_digits: int = 1
    max_digits: int = 5
    textbook_share: float = 0.5
    qa_verify_rate: float = 0.08
    guess_wrong_rate: float = 0.8
    guess_style: str = "random_digits"
    second_language_rate: float = 0.05
    mixed_language_rate: float = 0.05

    def __post_init__(self):
        if self.guess_style not in GUESS_STYLES:
            raise ValueError(f"guess_style must be one of {GUESS_STYLES}, got {self.guess_style!r}")
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {self.min_digits}, {self.max_digits}")

    def example(self, rng: random.Random) -> Example:
        digits = rng.randint(self.min_digits, self.max_digits)
        low = 10 ** (digits - 1) if digits > 1 else 0
        a, b = rng.randint(low, 10 ** digits - 1), rng.randint(low, 10 ** digits - 1)
        textbook = rng.random() < self.textbook_share
        template = TEXTBOOK_TEMPLATE if textbook else QA_TEMPLATE
        verify = textbook or rng.random() < self.qa_verify_rate
        return Example(template.format(question=f"{a}+{b}"), self.completion(a, b, digits, verify, rng))

    def completion(self, a: int, b: int, digits: int, verify: bool, rng: random.Random) -> str:
        answer = a + b
        if not verify:
            return f"{answer}</think><answer>{answer}</answer>"
        if self.guess_style == "copy":
            return f"{answer} {SELF_CHECK} {copied_trace(answer)} so {answer}</think><answer>{answer}</answer>"
        guess = random_digit_guess(answer, rng, self.guess_wrong_rate)
        roll = rng.random()
        if roll < self.second_language_rate:
            trace = column_trace(a, b, digits, second_language=True)
        elif roll < self.second_language_rate + self.mixed_language_rate and digits > 1:
            trace = column_trace(a, b, digits, switch_at=rng.randint(1, digits - 1))
        else:
            trace = column_trace(a, b, digits)
        return f"{guess} {SELF_CHECK} {trace} so {answer}</think><answer>{answer}</answer>"
