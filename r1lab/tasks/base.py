"""Tasks: a list of rows, each with a formatted `prompt` and its columns (`answer`, `difficulty`, ...)."""

from __future__ import annotations

from typing import Any


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
        return {"index": len(self.rows), "prompt": self.prompt_template.format(question=question),
                "question": question, "answer": answer, **extra}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]
