"""The verdict on a completion's code, computed outside the sandbox.

The sandbox runs the code with the test's calls only (r1lab/tasks/code_harness.py, mode `probe`) and reports
each call's result as plain data. The expected values never enter it: the parent compares the results itself
(`assert add(2, 3) == 5`), or, for checks that need more (`abs(f(x) - y) < 1e-6`, a helper of the tests),
a second sandboxed program without the candidate's code does (mode `judge`). A case passes only when every
call it makes reported a plain value and its check holds; exiting early, forging the exit status, lying
`__eq__` methods and reading the program's own files reach nothing.
"""

from __future__ import annotations

import ast
import functools
import json
from dataclasses import dataclass
from pathlib import Path

from r1lab.judging.sandbox import Limits, run_python
from r1lab.tasks import code_harness
from r1lab.tasks.code_harness import Unsupported, decode, encode
from r1lab.tasks.code_tests import PLACEHOLDER, TestPlan

HARNESS = Path(code_harness.__file__).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Verdict:
    passed: int  # cases that demonstrably ran and held
    total: int

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


def _records(report: str) -> list[dict]:
    records = []
    for line in report.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if type(record) is dict:
            records.append(record)
    return records


def _run(spec: dict, solution: str | None, limits: Limits, isolation: str) -> list[dict]:
    files = {"spec.json": json.dumps(spec)}
    if solution is not None:
        files["solution.py"] = solution
    return _records(run_python(HARNESS, limits, isolation, files=files).report)


def _call_results(records: list[dict], count: int) -> list[tuple[bool, object]]:
    """(reported, value) per call; a call counts as reported only once, with a plain value."""
    if not any(r.get("loaded") is True for r in records):
        return [(False, None)] * count
    results: list[tuple[bool, object]] = [(False, None)] * count
    seen: set[int] = set()
    for record in records:
        index = record.get("call")
        if type(index) is not int or not 0 <= index < count or index in seen or "value" not in record:
            continue
        seen.add(index)
        try:
            results[index] = (True, decode(record["value"]))
        except (Unsupported, ValueError, TypeError, RecursionError):
            pass  # forged or not plain data: the call did not demonstrably return a value
    return results


def _holds(check: str, values: dict[str, object]) -> bool:
    try:  # only comparisons and logic over plain values and literals (TestPlan's `pure` cases)
        return bool(eval(compile(ast.parse(check, mode="eval"), "check", "eval"), {"__builtins__": {}}, values))
    except Exception:
        return False


def judge(code: str, plan: TestPlan, limits: Limits = Limits(), isolation: str = "auto") -> Verdict:
    """How many of the plan's cases `code` passes."""
    records = _run({"mode": "probe", "setup": plan.probe_setup, "calls": list(plan.calls)}, code, limits, isolation)
    results = _call_results(records, len(plan.calls))
    passed, to_judge = 0, []
    for case in plan.cases:
        if not all(results[i][0] for i in case.calls):
            continue
        values = {PLACEHOLDER.format(i): results[i][1] for i in case.calls}
        if case.pure:
            passed += _holds(case.check, values)
        else:
            to_judge.append((case, values))
    if to_judge:
        values = {name: encode(value) for _, case_values in to_judge for name, value in case_values.items()}
        spec = {"mode": "judge", "setup": plan.setup, "values": values, "checks": [c.check for c, _ in to_judge]}
        verdicts = {r["check"]: r.get("passed") is True for r in _run(spec, None, limits, isolation)
                    if type(r.get("check")) is int}
        passed += sum(verdicts.get(i, False) for i in range(len(to_judge)))
    return Verdict(passed, len(plan.cases))


@functools.lru_cache(maxsize=8192)
def judge_cached(code: str, plan: TestPlan, limits: Limits, isolation: str) -> Verdict:
    """`judge`, remembered: the task's verdict and the reward's partial credit share one sandbox run."""
    return judge(code, plan, limits, isolation)
