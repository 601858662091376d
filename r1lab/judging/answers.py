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
# A number, then a unit: words of two letters or more after a space, or \text{...} / \mbox{...}.
MATH_WORDS = {"pi", "sqrt", "log", "ln", "sin", "cos", "tan", "exp", "inf", "infty", "or", "and", "to"}  # not units
NUMBER_WITH_UNIT = re.compile(r"^(-?\d[\d,]*(?:\.\d+)?)\s*(?:\\(?:text|mbox)\{[^{}]*\}|\s[a-zA-Z]{2,}[a-zA-Z .]*)$")
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


# A number as written in prose: thousands separators, decimals, a minus sign that is not a subtraction ("7-2").
NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
ANSWER_FORMATS = ("auto", "answer_tag", "boxed", "last_number")


def last_number(text: str) -> str | None:
    """The last number written in `text` ("so 23 + 58 = 81." → "81"), or None."""
    numbers = NUMBER.findall(text)
    return numbers[-1] if numbers else None


def extract_answer(completion: str, answer_format: str = "auto") -> str | None:
    """The final answer: `auto` the last <answer>…</answer>, else the last \\boxed{…}; `answer_tag` the last
    <answer> only; `boxed` the last \\boxed{} only; `last_number` the last number written anywhere (for
    instruct models that answer in prose). None when there is none. A \\boxed{} inside the <answer> is the
    answer ("<answer>\\boxed{5}</answer>" counts as 5)."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {', '.join(ANSWER_FORMATS)}, got {answer_format!r}")
    if answer_format == "last_number":
        return last_number(completion)
    if answer_format != "boxed":
        tagged = ANSWER_TAG.findall(completion)
        if tagged:
            inner = tagged[-1].strip()
            return last_boxed(inner) or inner
        if answer_format == "answer_tag":
            return None
    boxed = last_boxed(completion)
    return boxed.strip() if boxed is not None else None


def normalize(answer: str) -> str:
    """What graders of GSM8K and MATH strip before comparing: dollar signs, percent signs, thin spaces, a
    final period, thousands separators, and a unit after a number ("18 dollars", "5 \\text{ cm}")."""
    answer = answer.strip().replace("\\$", "").strip("$").strip()
    answer = answer.replace("\\!", "").replace("\\,", "").replace("\\%", "%").strip()
    if answer.endswith("%"):
        answer = answer[:-1].strip()
    if answer.endswith(".") and PLAIN_NUMBER.match(answer[:-1]):
        answer = answer[:-1]
    unit = NUMBER_WITH_UNIT.match(answer)
    if unit and not MATH_WORDS & set(re.findall(r"[a-zA-Z]+", answer[unit.end(1):].lower())):
        answer = unit.group(1)
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


def is_correct(completion: str, gold: object, answer_format: str = "auto") -> bool:
    """The completion's final answer is equivalent to `gold`; a completion without an answer is wrong."""
    predicted = extract_answer(completion, answer_format)
    return predicted is not None and answers_match(str(gold), predicted)
