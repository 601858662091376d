"""Detectors for the ways a run goes wrong around the aha moment. Pure functions of completions, so each
can be tested on hand-made text; `r1lab.callbacks.diagnostics.Diagnostics` logs them under `diag/`."""

from __future__ import annotations

import re
from collections import deque

from r1lab.judging.language import Identifier, languages_in
from r1lab.judging.selfcheck import SELF_CHECK, self_verifies

# A unit of at least 3 characters repeated back to back at least 3 times in all ("ab12ab12ab12").
REPEATED_RUN = re.compile(r"(.{3,}?)\1{2,}", re.DOTALL)


def loops(completion: str) -> bool:
    """The completion repeats a chunk of text back to back (the degenerate loop of a collapsing policy)."""
    return REPEATED_RUN.search(completion) is not None


def format_hack(completion: str) -> bool:
    """A self-check phrase outside the reasoning: after </think> or after </answer>. Verification written
    where it cannot change the answer is format, not reasoning."""
    outside = completion.split("</think>", 1)[1] if "</think>" in completion else ""
    after_answer = completion.split("</answer>", 1)[1] if "</answer>" in completion else ""
    return self_verifies(outside) or self_verifies(after_answer)


def mixes_languages(completion: str, identifier: Identifier) -> bool:
    """The chain of thought has words in more than one language."""
    return sum(1 for count in languages_in(completion, identifier).values() if count) > 1


def cut_before_check(completion: str) -> str | None:
    """The completion up to its first self-check phrase (None when it has none): what the policy would have
    committed to without verifying."""
    match = SELF_CHECK.search(completion)
    return completion[:match.start()].rstrip() if match else None


def conditional_accuracy(completions: list[str], correct: list[float]) -> dict[str, float]:
    """Accuracy of the completions that verify and of those that answer directly (missing when none)."""
    out = {}
    for name, wanted in (("diag/acc_given_verify", True), ("diag/acc_given_direct", False)):
        picked = [c for text, c in zip(completions, correct) if self_verifies(text) == wanted and c == c]
        if picked:
            out[name] = sum(picked) / len(picked)
    return out


class PlateauDetector:
    """Premature plateau: the rolling verify rate rose to `threshold` or more, then fell below
    `threshold - drop`. Fires once per rise (it re-arms when the rate climbs back)."""

    def __init__(self, window: int = 5, threshold: float = 0.5, drop: float = 0.2):
        if window < 1 or not 0 < threshold <= 1 or not 0 < drop <= threshold:
            raise ValueError(f"plateau detector: need window >= 1, 0 < threshold <= 1, 0 < drop <= threshold; "
                             f"got {window}, {threshold}, {drop}")
        self.threshold, self.drop = threshold, drop
        self.rates: deque[float] = deque(maxlen=window)
        self.risen = False

    def update(self, verify_rate: float) -> bool:
        self.rates.append(verify_rate)
        if len(self.rates) < self.rates.maxlen:
            return False
        mean = sum(self.rates) / len(self.rates)
        if mean >= self.threshold:
            self.risen = True
        elif self.risen and mean < self.threshold - self.drop:
            self.risen = False
            return True
        return False

    def state_dict(self) -> dict:
        return {"rates": list(self.rates), "risen": self.risen}

    def load_state_dict(self, state: dict) -> None:
        self.rates.extend(state["rates"])
        self.risen = state["risen"]
