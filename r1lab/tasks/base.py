"""Tasks: a list of rows, each with a formatted `prompt` and its columns (`answer`, `difficulty`, ...), and
the task's verifier, the one judge of correctness."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from r1lab.judging.answers import ANSWER_FORMATS, is_correct

PROMPT_FORMATS = ("template", "chat")


class PromptTask:
    """Holds the prompts of one task. Subclasses fill `self.rows` in `__init__`.

    Prompting (`prompt_format`): `template` puts the question into `prompt_template` (R1-Zero's plain
    template, for base models); `chat` renders the tokenizer's own chat template around an optional
    `system_prompt` and a user message (`user_template` around the question), with the assistant's turn
    opened, for instruct models. Chat prompts need the policy's tokenizer: stages call `render_prompts`.
    `answer_format` says where the final answer is read: `auto`, `answer_tag` or `boxed` (r1lab.judging.answers).
    """

    name = "task"
    hard_difficulty: Any = None  # the label of the hardest slice (train/accuracy_hard), if rows have `difficulty`

    def __init__(self, prompt_template: str = "{question}", prompt_format: str = "template",
                 system_prompt: str | None = None, user_template: str = "{question}", answer_format: str = "auto"):
        for key, template in (("prompt_template", prompt_template), ("user_template", user_template)):
            if "{question}" not in template:
                raise ValueError(f"task.{key} must contain {{question}}, e.g. 'User: {{question}}\\nAssistant:'")
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"task.prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}")
        if answer_format not in ANSWER_FORMATS:
            raise ValueError(f"task.answer_format must be one of {', '.join(ANSWER_FORMATS)}, got {answer_format!r}")
        self.prompt_template, self.prompt_format = prompt_template, prompt_format
        self.system_prompt, self.user_template, self.answer_format = system_prompt, user_template, answer_format
        self.rows: list[dict[str, Any]] = []

    def make_row(self, question: str, answer: str, **extra: Any) -> dict[str, Any]:
        prompt = self.prompt_for(question) if self.prompt_format == "template" else None  # chat: render_prompts
        return {"index": len(self.rows), "prompt": prompt, "question": question, "answer": answer, **extra}

    def prompt_for(self, question: str, template: str | None = None) -> str:
        """The template around the question; a question that ends in punctuation keeps only its own
        ("What is 2+2?" in "User: {question}. Assistant:" gives "...2+2? Assistant:", not "?.")."""
        template = self.prompt_template if template is None else template
        before, after = (part.format() for part in template.split("{question}", 1))  # "{{" → "{"
        question = question.strip()
        if question[-1:] in ".?!" and after[:1] in ".?!":
            after = after[1:]
        return before + question + after

    def render_prompts(self, tokenizer) -> None:
        """With `prompt_format=chat`, every row's prompt in the tokenizer's chat template (a no-op otherwise)."""
        if self.prompt_format != "chat":
            return
        for row in self.rows:
            row["prompt"] = self.render(row["question"], tokenizer)

    def render(self, question: str, tokenizer) -> str:
        """The prompt for `question` in this task's prompting: its template, or the tokenizer's chat template."""
        if self.prompt_format != "chat":
            return self.prompt_for(question)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"task.prompt_format=chat renders the tokenizer's chat template, and this model's "
                             f"tokenizer has none; use task.prompt_format=template (task {self.name!r})")
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": self.prompt_for(question, self.user_template)})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def verify(self, completions: Sequence[str], columns: Mapping[str, Sequence[Any]]) -> list[float]:
        """Correctness of each completion: 1.0 right, 0.0 wrong, NaN where its row has no gold answer.

        Every consumer reads this verdict (train/accuracy, curricula, diagnostics, evaluation, rejection
        sampling, the accuracy reward); a task with another notion of correct overrides this method.
        """
        golds = columns.get("answer")
        if golds is None:
            return [math.nan] * len(completions)
        return [math.nan if gold is None else float(is_correct(completion, gold, self.answer_format))
                for completion, gold in zip(completions, golds)]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        if row["prompt"] is None:
            raise RuntimeError(f"task {self.name!r} has prompt_format=chat and its prompts were not rendered: call "
                               "task.render_prompts(tokenizer) with the policy's tokenizer first")
        return row
