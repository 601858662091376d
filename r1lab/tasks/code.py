"""`task=code`: Python problems whose unit tests decide correctness, run in the sandbox (r1lab/sandbox.py).

Problems come from the shipped set (`r1lab/tasks/code_problems.jsonl`) or a JSONL file in r1lab's own format
(`question`, `tests`, `entry_point`, `solution`), MBPP's (`text`, `test_list`, `test_setup_code`, `code`) or
HumanEval's (`prompt`, `test`, `entry_point`, `canonical_solution`). A completion is right when the last
```python block of its answer (else the whole <answer>) followed by the tests exits cleanly in the sandbox.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from r1lab.answers import ANSWER_TAG
from r1lab.jsonl import read_jsonl
from r1lab.sandbox import ISOLATIONS, Limits, run_python
from r1lab.tasks.base import PromptTask
from r1lab.tasks.jsonl import TaskDataError

SHIPPED = Path(__file__).with_name("code_problems.jsonl")
FORMATS = ("auto", "r1lab", "mbpp", "humaneval")
CODE_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(completion: str) -> str | None:
    """The last ```python block (of the <answer> when there is one), else the <answer>'s text; None when the
    completion has neither."""
    tagged = ANSWER_TAG.findall(completion)
    where = tagged[-1] if tagged else completion
    blocks = CODE_BLOCK.findall(where)
    if blocks:
        return blocks[-1]
    return where.strip() if tagged and where.strip() else None


def passes_tests(completion: str, tests: str, limits: Limits = Limits(), isolation: str = "auto") -> bool:
    """The completion's code, then the tests, run in the sandbox: True when the program exits cleanly."""
    code = extract_code(completion)
    return code is not None and run_python(f"{code}\n\n{tests}\n", limits, isolation).ok


def detect_format(record: Mapping[str, Any]) -> str:
    if "test_list" in record:
        return "mbpp"
    if "prompt" in record and "test" in record and "entry_point" in record:
        return "humaneval"
    return "r1lab"


def problem(record: Mapping[str, Any], format: str) -> tuple[str, str, str, str]:
    """(question, tests, entry point, reference solution) of a record in `format`."""
    if format == "mbpp":
        tests = "\n".join([record.get("test_setup_code") or "", *record["test_list"]]).strip()
        question = f"{record['text']} Your code should pass this test: {record['test_list'][0]}"
        entry = re.match(r"assert\s+(?:not\s+)?\(?\s*(\w+)", record["test_list"][0])
        return question, tests, entry.group(1) if entry else "", record.get("code", "")
    if format == "humaneval":
        tests = f"{record['test']}\n\ncheck({record['entry_point']})"
        return (record["prompt"], tests, record["entry_point"],
                record["prompt"] + record.get("canonical_solution", ""))
    return record["question"], record["tests"], record.get("entry_point", ""), record.get("solution", "")


class CodeTask(PromptTask):
    """Python problems with unit tests. `path=None`: the shipped set. `sandbox`: the limits of each test run
    (r1lab/sandbox.py `Limits`: wall_s, cpu_s, memory_mb, file_size_mb, processes, open_files);
    `isolation`: auto (bubblewrap where it runs), bwrap, processes; `workers`: test runs at once."""

    def __init__(self, path: str | None = None, format: str = "auto", prompt_template: str = "{question}",
                 limit: int | None = None, name: str = "code", sandbox: Mapping[str, Any] | None = None,
                 isolation: str = "auto", workers: int = 4, **prompting: Any):
        super().__init__(prompt_template, **prompting)
        if format not in FORMATS:
            raise ValueError(f"task.format={format!r} is unknown; choose one of {', '.join(FORMATS)}")
        if isolation not in ISOLATIONS:
            raise ValueError(f"task.isolation={isolation!r} is unknown; choose one of {', '.join(ISOLATIONS)}")
        if workers < 1:
            raise ValueError(f"task.workers must be >= 1, got {workers}")
        self.name, self.limits, self.isolation, self.workers = name, Limits(**dict(sandbox or {})), isolation, workers
        file = Path(path).expanduser() if path else SHIPPED
        for line_number, record in read_jsonl(file, f"task {name!r}"):
            kind = detect_format(record) if format == "auto" else format
            try:
                question, tests, entry_point, solution = problem(record, kind)
            except (KeyError, IndexError) as exc:
                raise TaskDataError(f"task {name!r}: {file}:{line_number} lacks {exc} for the {kind} format "
                                    f"(its columns: {sorted(record)}); set task.format") from None
            self.rows.append(self.make_row(question, solution, tests=tests, entry_point=entry_point))
            if limit is not None and len(self.rows) >= limit:
                break

    def verify(self, completions: Sequence[str], columns: Mapping[str, Sequence[Any]]) -> list[float]:
        """1.0 when a completion's code passes its problem's tests in the sandbox, else 0.0."""
        def check(pair: tuple[str, str]) -> float:
            return float(passes_tests(pair[0], pair[1], self.limits, self.isolation))

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(check, zip(completions, columns["tests"])))
