"""`task=code`: Python problems whose unit tests decide correctness, run in the sandbox (r1lab/judging/sandbox.py).

Problems come from the shipped set (`r1lab/tasks/code_problems.jsonl`) or a JSONL file in r1lab's own format
(`question`, `tests`, `entry_point`, `solution`), MBPP's (`text`, `test_list`, `test_setup_code`, `code`) or
HumanEval's (`prompt`, `test`, `entry_point`, `canonical_solution`). The tests are split into cases
(r1lab/tasks/code_tests.py); the last ```python block of a completion's answer (else the whole <answer>) runs
in the sandbox with the cases' calls, and the verdict is computed outside it (r1lab/tasks/code_judge.py).
A completion is right when every case passes; `Verdict.fraction` is the pass fraction (partial credit).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from r1lab.judging.answers import ANSWER_TAG
from r1lab.runs.jsonl import read_jsonl
from r1lab.judging.sandbox import ISOLATIONS, Limits
from r1lab.tasks.base import PromptTask
from r1lab.tasks.code_judge import Verdict, judge_cached
from r1lab.tasks.code_tests import UnsplittableTests, split_tests
from r1lab.tasks.jsonl import TaskDataError

log = logging.getLogger("r1lab")

SHIPPED = Path(__file__).with_name("code_problems.jsonl")
FORMATS = ("auto", "r1lab", "mbpp", "humaneval")
UNSPLITTABLE = ("error", "skip")
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


def judge_completion(completion: str, tests: str, entry_point: str = "", limits: Limits = Limits(),
                     isolation: str = "auto") -> Verdict:
    """The cases of `tests` the completion's code passes, judged outside the sandbox."""
    plan = split_tests(tests, entry_point)
    code = extract_code(completion)
    return Verdict(0, len(plan.cases)) if code is None else judge_cached(code, plan, limits, isolation)


def passes_tests(completion: str, tests: str, limits: Limits = Limits(), isolation: str = "auto",
                 entry_point: str = "") -> bool:
    """Every case of `tests` passes."""
    return judge_completion(completion, tests, entry_point, limits, isolation).all_passed


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
    (r1lab/judging/sandbox.py `Limits`: wall_s, cpu_s, memory_mb, file_size_mb, processes, open_files, scratch_mb);
    `isolation`: auto (bubblewrap where it runs), bwrap, processes; `workers`: test runs at once;
    `unsplittable_tests`: a problem whose tests cannot be split into cases judged outside the sandbox is an
    `error` (the default: it names the problem and the statement) or is `skip`ped with a warning."""

    def __init__(self, path: str | None = None, format: str = "auto", prompt_template: str = "{question}",
                 limit: int | None = None, name: str = "code", sandbox: Mapping[str, Any] | None = None,
                 isolation: str = "auto", workers: int = 4, unsplittable_tests: str = "error", **prompting: Any):
        super().__init__(prompt_template, **prompting)
        if format not in FORMATS:
            raise ValueError(f"task.format={format!r} is unknown; choose one of {', '.join(FORMATS)}")
        if isolation not in ISOLATIONS:
            raise ValueError(f"task.isolation={isolation!r} is unknown; choose one of {', '.join(ISOLATIONS)}")
        if unsplittable_tests not in UNSPLITTABLE:
            raise ValueError(f"task.unsplittable_tests={unsplittable_tests!r} is unknown; choose one of "
                             f"{', '.join(UNSPLITTABLE)}")
        if workers < 1:
            raise ValueError(f"task.workers must be >= 1, got {workers}")
        self.name, self.limits, self.isolation, self.workers = name, Limits(**dict(sandbox or {})), isolation, workers
        file = Path(path).expanduser() if path else SHIPPED
        skipped = 0
        for line_number, record in read_jsonl(file, f"task {name!r}"):
            kind = detect_format(record) if format == "auto" else format
            try:
                question, tests, entry_point, solution = problem(record, kind)
            except (KeyError, IndexError) as exc:
                raise TaskDataError(f"task {name!r}: {file}:{line_number} lacks {exc} for the {kind} format "
                                    f"(its columns: {sorted(record)}); set task.format") from None
            try:
                entry_point = split_tests(tests, entry_point).entry_point
            except UnsplittableTests as exc:
                if unsplittable_tests == "error":
                    raise TaskDataError(
                        f"task {name!r}: {file}:{line_number}: its tests cannot be judged outside the sandbox: {exc}. "
                        f"Write them as asserts that call the function (top level, or in HumanEval's "
                        f"check(candidate)), or set task.unsplittable_tests=skip to leave such problems out") from None
                skipped += 1
                continue
            self.rows.append(self.make_row(question, solution, tests=tests, entry_point=entry_point))
            if limit is not None and len(self.rows) >= limit:
                break
        if skipped:
            log.warning("task %r: %d problem(s) of %s left out: their tests cannot be split into cases judged "
                        "outside the sandbox (task.unsplittable_tests=skip)", name, skipped, file)
        if not self.rows:
            raise TaskDataError(f"task {name!r}: {file} has no problem r1lab can judge")

    def verify(self, completions: Sequence[str], columns: Mapping[str, Sequence[Any]]) -> list[float]:
        """1.0 when a completion's code passes every case of its problem's tests, else 0.0."""
        return [float(v.all_passed) for v in self.judgements(completions, columns)]

    def judgements(self, completions: Sequence[str], columns: Mapping[str, Sequence[Any]]) -> list[Verdict]:
        entry_points = columns.get("entry_point") or [""] * len(completions)

        def check(item: tuple[str, str, str]) -> Verdict:
            return judge_completion(*item, self.limits, self.isolation)

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(check, zip(completions, columns["tests"], entry_points)))
