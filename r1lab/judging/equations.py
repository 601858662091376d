"""Arithmetic expressions from completions (Countdown answers), parsed and evaluated without `eval`.

Only integers, + - * /, unary minus and parentheses are allowed; the value is exact (fractions), so
"(1 + 2) / 3" is 1 and no float rounding decides a verdict. Anything else (names, calls, powers, huge
literals, deep nesting) is rejected, never run.
"""

from __future__ import annotations

import ast
from fractions import Fraction

MAX_LENGTH = 200  # characters: a Countdown equation over 3-6 numbers is far shorter
MAX_DIGITS = 12  # per literal; keeps every intermediate value small


class NotAnEquation(ValueError):
    """The text is not an arithmetic expression r1lab evaluates (it says what was wrong)."""


OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
             ast.Div: lambda a, b: a / b}


def parse_equation(text: str) -> ast.expr:
    """The expression's syntax tree; the left side when the text is "expr = value"."""
    text = text.strip().replace("×", "*").replace("÷", "/").replace("−", "-")
    if "=" in text:
        text = text.split("=", 1)[0]
    if not text.strip():
        raise NotAnEquation("empty expression")
    if len(text) > MAX_LENGTH:
        raise NotAnEquation(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError) as exc:  # RecursionError: absurd nesting
        raise NotAnEquation(f"not an arithmetic expression: {exc.__class__.__name__}") from None
    for node in ast.walk(tree.body):
        allowed = (ast.BinOp, ast.UnaryOp, ast.Constant, *OPERATORS, ast.USub, ast.UAdd)
        if not isinstance(node, allowed):
            raise NotAnEquation(f"{type(node).__name__} is not allowed (only integers, + - * / and parentheses)")
        if isinstance(node, ast.Constant) and (type(node.value) is not int or len(str(node.value)) > MAX_DIGITS):
            raise NotAnEquation(f"{node.value!r} is not an integer of at most {MAX_DIGITS} digits")
    return tree.body


def numbers_in(tree: ast.expr) -> list[int]:
    """The integer literals of the expression (a unary minus is an operation, not part of a literal)."""
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)]


def evaluate(tree: ast.expr) -> Fraction:
    """The exact value; division by zero raises NotAnEquation."""
    if isinstance(tree, ast.Constant):
        return Fraction(tree.value)
    if isinstance(tree, ast.UnaryOp):
        value = evaluate(tree.operand)
        return -value if isinstance(tree.op, ast.USub) else value
    left, right = evaluate(tree.left), evaluate(tree.right)
    if isinstance(tree.op, ast.Div) and right == 0:
        raise NotAnEquation("division by zero")
    return OPERATORS[type(tree.op)](left, right)


def solves_countdown(equation: str, numbers: list[int], target: int) -> bool:
    """True when `equation` uses each of `numbers` exactly once (TinyZero's rule: the multiset of its
    literals equals the numbers given) and evaluates exactly to `target`."""
    try:
        tree = parse_equation(equation)
        return sorted(numbers_in(tree)) == sorted(int(n) for n in numbers) and evaluate(tree) == target
    except NotAnEquation:
        return False
