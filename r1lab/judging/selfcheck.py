"""Self-verification phrases: the behaviour whose sudden rise R1-Zero calls its "aha moment"."""

from __future__ import annotations

import re

SELF_CHECK = re.compile(
    r"\b(wait|hold on|actually|let me (re-?check|verify|reconsider|try again)|i made a mistake|on second thought)\b",
    re.IGNORECASE,
)


def self_verifies(text: str) -> bool:
    return SELF_CHECK.search(text) is not None


def self_verify_rate(texts: list[str]) -> float:
    return sum(map(self_verifies, texts)) / max(len(texts), 1)
