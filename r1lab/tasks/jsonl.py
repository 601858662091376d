"""Question/answer tasks read from local JSON Lines files (GSM8K, MATH-500, your own)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from r1lab.runs.jsonl import DataFileError, read_jsonl
from r1lab.runs.paths import where_data_is_looked_for
from r1lab.tasks.base import PromptTask


class TaskDataError(DataFileError):
    pass


def existing_data_file(path: str, task: str, folders: str) -> Path:
    """`path` as a file that exists, or an error naming it, the `folders` R1LAB_DATA_DIR should hold and where
    r1lab looked."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise TaskDataError(f"task {task!r}: data file {str(file)!r} does not exist; set task.path, or "
                            f"R1LAB_DATA_DIR to the folder that holds {folders} (looked at: "
                            f"{where_data_is_looked_for()})")
    return file


class JsonlTask(PromptTask):
    """Rows from a JSONL file: `question_key` is the problem, `answer_key` the gold answer.

    `answer_regex` (optional) pulls the gold answer out of a longer field, e.g. GSM8K's "#### 18";
    `keep_keys` copies more columns (e.g. level, subject) for curricula and reports.
    """

    def __init__(self, path: str, question_key: str = "question", answer_key: str = "answer",
                 prompt_template: str = "{question}", answer_regex: str | None = None,
                 keep_keys: list[str] | tuple[str, ...] = (), limit: int | None = None, name: str = "jsonl",
                 **prompting: Any):
        super().__init__(prompt_template, **prompting)
        self.name = name
        file = existing_data_file(path, name, "gsm8k/ and math500/")
        pattern = re.compile(answer_regex, re.MULTILINE) if answer_regex else None
        for line_number, record in read_jsonl(file, f"task {name!r}"):
            for key in (question_key, answer_key, *keep_keys):
                if key not in record:
                    raise TaskDataError(f"task {name!r}: {file}:{line_number} has no column {key!r} "
                                        f"(its columns: {sorted(record)}); set task.question_key / "
                                        "task.answer_key / task.keep_keys")
            if record[answer_key] is None or str(record[answer_key]).strip() == "":
                raise TaskDataError(f"task {name!r}: {file}:{line_number} has an empty {answer_key!r} ("
                                    f"{record[answer_key]!r}); every problem needs its gold answer: fill it in or "
                                    "remove the line")
            answer = str(record[answer_key])
            if pattern is not None:
                match = pattern.search(answer)
                if match is None:
                    raise TaskDataError(f"task {name!r}: {file}:{line_number}: answer_regex {answer_regex!r} "
                                        f"finds no answer in {answer[-80:]!r}")
                answer = match.group(1).strip()
            self.rows.append(self.make_row(record[question_key], answer,
                                           **{k: record[k] for k in keep_keys}))
            if limit is not None and len(self.rows) >= limit:
                break
