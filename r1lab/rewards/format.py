"""The R1 template reward: reasoning in <think>…</think>, then the answer in <answer>…</answer>."""

from __future__ import annotations

import re
from typing import Any

from r1lab.registry import REWARDS
from r1lab.rewards.base import Reward
from r1lab.judging.template import with_prompt_opening

R1_TEMPLATE = re.compile(r"^\s*<think>(?:(?!<think>|</think>).)*</think>\s*<answer>(?:(?!<answer>|</answer>).)*</answer>\s*$",
                         re.DOTALL)


@REWARDS.register("format")
class FormatReward(Reward):
    """1.0 when the completion is exactly <think>…</think><answer>…</answer> (whitespace allowed between), else 0.0."""

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
        return [float(bool(R1_TEMPLATE.match(with_prompt_opening(p, c)))) for p, c in zip(prompts, completions)]
