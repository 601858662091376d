"""Tasks: a list of rows, each with a formatted `prompt` and its columns (`answer`, `difficulty`, ...), and
the task's verifier, the one judge of correctness."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from r1lab.answers import is_correct


class PromptTask:
    """Holds the prompts of one task. Subclasses fill `self.rows` in `__init__`."""

    name = "task"
    hard_difficulty: Any = None  # the label of the hardest slice (train/accuracy_hard), if rows have `difficulty`

    def __init__(self, prompt_template: str = "{question}"):
        if "{question}" not in prompt_template:
            raise ValueError("task.prompt_template must contain {question}, e.g. 'User: {question}\\nAssistant:'")
        self.prompt_template = prompt_template
        self.rows: list[dict[str, Any]] = []

    def make_row(self, question: str, answer: str, **extra: Any) -> dict[str, Any]:
        return {"index": len(self.rows), "prompt": self.prompt_for(question), "question": question,
                "answer": answer, **extra}

    def prompt_for(self, question: str) -> str:
        """The template around the question; a question that ends in punctuation keeps only its own
        ("What is 2+2?" in "User: {question}. Assistant:" gives "...2+2? Assistant:", not "?.")."""
        before, after = (part.format() for part in self.prompt_template.split("{question}", 1))  # "{{" → "{"
        question = question.strip()
        if question[-1:] in ".?!" and after[:1] in ".?!":
            after = after[1:]
        return before + question + after

    def verify(self, completions: Sequence[str], columns: Mapping[str, Sequence[Any]]) -> list[float]:
        """Correctness of each completion: 1.0 right, 0.0 wrong, NaN where its row has no gold answer.

        Every consumer reads this verdict (train/accuracy, curricula, diagnostics, evaluation, rejection
        sampling, the accuracy reward); a task with another notion of correct overrides this method.
        """
        golds = columns.get("answer")
        if golds is None:
            return [math.nan] * len(completions)
        return [math.nan if gold is None else float(is_correct(completion, gold))
                for completion, gold in zip(completions, golds)]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]
