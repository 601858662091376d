"""`task=countdown`: TinyZero's Countdown. Given 3-6 numbers and a target, write an equation that uses each
number exactly once with + - * / and equals the target. The verdict parses the last <answer> with r1lab's
arithmetic parser (r1lab/judging/equations.py: exact fractions, never `eval`).

Data: TinyZero's parquet files (`target`, `nums`; ../shared/data/countdown) or JSONL with the same columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from r1lab.judging.answers import extract_answer
from r1lab.judging.equations import solves_countdown
from r1lab.runs.jsonl import read_jsonl
from r1lab.tasks.base import PromptTask
from r1lab.tasks.jsonl import TaskDataError, existing_data_file

QUESTION = ("Using the numbers {nums}, create an equation that equals {target}. You can use basic arithmetic "
            "operations (+, -, *, /) and each number can only be used once. Show your work in <think> </think> "
            "tags. And return the final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 "
            "</answer>.")


def read_records(file: Path, name: str) -> list[dict[str, Any]]:
    """Rows of a parquet (TinyZero's files, through pyarrow) or JSONL file."""
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(file, columns=["target", "nums"]).to_pylist()
        except Exception as exc:  # pyarrow raises several types for bad files and missing columns
            raise TaskDataError(f"task {name!r}: {file} is not a parquet file with columns 'target' and 'nums' "
                                f"({exc})") from None
    return [record for _, record in read_jsonl(file, f"task {name!r}")]


class CountdownTask(PromptTask):
    """Countdown problems; `difficulty` is how many numbers a problem gives (more numbers: harder)."""

    def __init__(self, path: str, prompt_template: str = "{question}", limit: int | None = None,
                 name: str = "countdown", **prompting: Any):
        super().__init__(prompt_template, **prompting)
        self.name = name
        file = existing_data_file(path, name, "countdown/")
        for position, record in enumerate(read_records(file, name)):
            if "target" not in record or "nums" not in record:
                raise TaskDataError(f"task {name!r}: row {position + 1} of {file} has no 'target' or 'nums' "
                                    f"(its columns: {sorted(record)})")
            nums, target = [int(n) for n in record["nums"]], int(record["target"])
            question = QUESTION.format(nums=nums, target=target)
            self.rows.append(self.make_row(question, str(target), nums=nums, target=target, difficulty=len(nums)))
            if limit is not None and len(self.rows) >= limit:
                break
        if not self.rows:
            raise TaskDataError(f"task {name!r}: {file} holds no problems")
        self.hard_difficulty = max(row["difficulty"] for row in self.rows)

    def verify(self, completions: Sequence[str], columns: Mapping[str, Sequence[Any]]) -> list[float]:
        """1.0 when the last <answer> (or \\boxed{}) is an equation that uses each number once and equals the
        target, else 0.0."""
        return [float(answer is not None and solves_countdown(answer, nums, target))
                for answer, nums, target in zip((extract_answer(c, self.answer_format) for c in completions), columns["nums"],
                                                columns["target"])]
