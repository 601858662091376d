"""Find the final answer in a completion and compare it with a gold answer (math-verify).

Shared by tasks (their verifier), rewards, evaluation and the toy world; imports nothing of r1lab's.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal
from functools import lru_cache

from math_verify import parse, verify

ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
PLAIN_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
TIMEOUT_S = 5


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (balanced braces), or None."""
    start = text.rfind("\\boxed")
    while start != -1:
        open_brace = text.find("{", start)
        if open_brace != -1 and text[start + len("\\boxed"):open_brace].strip() == "":
            depth = 0
            for i in range(open_brace, len(text)):
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                if depth == 0:
                    return text[open_brace + 1:i]
        start = text.rfind("\\boxed", 0, start)
    return None


def extract_answer(completion: str) -> str | None:
    """The last <answer>…</answer>, else the last \\boxed{…}; None when there is neither."""
    tagged = ANSWER_TAG.findall(completion)
    if tagged:
        inner = tagged[-1].strip()
        return last_boxed(inner) or inner  # "<answer>\\boxed{5}</answer>" counts as 5
    boxed = last_boxed(completion)
    return boxed.strip() if boxed is not None else None


def normalize(answer: str) -> str:
    answer = answer.strip().strip("$").strip()
    if THOUSANDS.match(answer):  # "1,000" is a number here, not a tuple
        answer = answer.replace(",", "")
    return answer


def _timeout() -> int | None:
    # math-verify's timeouts use SIGALRM, which only the main thread may set.
    return TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=65536)
def _parsed(answer: str):
    return parse(f"\\boxed{{{normalize(answer)}}}", parsing_timeout=_timeout())


def answers_match(gold: str, predicted: str) -> bool:
    """Mathematical equivalence under math-verify (1/2 == 0.5 == \\frac{1}{2})."""
    gold_text, predicted_text = normalize(str(gold)), normalize(predicted)
    if PLAIN_NUMBER.match(gold_text) and PLAIN_NUMBER.match(predicted_text):
        # Two plain decimals: exact comparison gives math-verify's verdict ~100x faster (most RL answers).
        return Decimal(gold_text) == Decimal(predicted_text)
    gold_parsed, predicted_parsed = _parsed(str(gold)), _parsed(predicted)
    if not gold_parsed or not predicted_parsed:
        return normalize(str(gold)) == normalize(predicted)
    return verify(gold_parsed, predicted_parsed, timeout_seconds=_timeout())


def is_correct(completion: str, gold: object) -> bool:
    """The completion's final answer is equivalent to `gold`; a completion without an answer is wrong."""
    predicted = extract_answer(completion)
    return predicted is not None and answers_match(str(gold), predicted)
