"""The code execution reward: a completion's code against its problem's unit tests, judged outside the sandbox."""

from __future__ import annotations

import math
from typing import Any

from r1lab.registry import REWARDS
from r1lab.rewards.base import Reward
from r1lab.judging.sandbox import Limits
from r1lab.tasks.code import judge_completion


@REWARDS.register("code_exec")
class CodeExecReward(Reward):
    """1.0 when the completion's code (its last ```python block) passes every case of the task's tests (the
    column `tests`), else 0.0; with `partial_credit`, the fraction of cases it passes. In a run of `task=code`
    the all-pass verdict is already computed once by the task and passed as the column `correct`, and the
    pass fraction comes from the same sandbox run (remembered), when the limits agree (the config takes the
    task's); used on its own (e.g. from TRL) the reward runs the tests itself, with its own limits (`wall_s`,
    `cpu_s`, `memory_mb`) and `isolation`."""

    def __init__(self, wall_s: float = 10.0, cpu_s: int = 5, memory_mb: int = 512, isolation: str = "auto",
                 partial_credit: bool = False):
        self.limits, self.isolation = Limits(wall_s=wall_s, cpu_s=cpu_s, memory_mb=memory_mb), isolation
        self.partial_credit = bool(partial_credit)

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
        if "correct" in columns and not self.partial_credit:
            return [None if math.isnan(v) else float(v) for v in map(float, columns["correct"])]
        if "tests" not in columns:
            raise KeyError(f"the code_exec reward needs the task column 'tests' (task=code); the task provides "
                           f"{sorted(columns)}")
        entry_points = columns.get("entry_point") or [""] * len(completions)
        verdicts = [judge_completion(c, t, e, self.limits, self.isolation)
                    for c, t, e in zip(completions, columns["tests"], entry_points)]
        return [v.fraction if self.partial_credit else float(v.all_passed) for v in verdicts]
