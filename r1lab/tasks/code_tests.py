"""A problem's unit tests split into cases the code cannot game: each `assert` becomes the calls of the entry
point it makes (inputs only, run in the sandbox with the code) and a check over their results (run outside it).

Accepted tests: top-level `assert` statements (r1lab's and MBPP's format) and the body of a checker the tests
call with the entry point (HumanEval's `def check(candidate): ...` then `check(entry_point)`), with setup
statements around them (imports, assignments, helper functions, classes) that do not use the entry point.
Tests written otherwise (asserts inside loops or `with`, the entry point used other than called) cannot be
split: `UnsplittableTests` says which statement and why.
"""

from __future__ import annotations

import ast
import builtins
import functools
from dataclasses import dataclass

PLACEHOLDER = "__r1lab_call_{}"
SETUP_STATEMENTS = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.AugAssign, ast.FunctionDef,
                    ast.AsyncFunctionDef, ast.ClassDef, ast.Pass, ast.Expr)
# What the parent evaluates itself: comparisons and logic over plain values and literals, nothing that can
# take long or call anything.
PURE_NODES = (ast.Expression, ast.Compare, ast.BoolOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Tuple, ast.List,
              ast.Set, ast.Dict, ast.Load, ast.cmpop, ast.boolop, ast.Not, ast.USub, ast.UAdd)


class UnsplittableTests(ValueError):
    """Tests that cannot be split into cases judged outside the sandbox."""


@dataclass(frozen=True)
class Case:
    source: str  # the assert as written, for messages
    calls: tuple[int, ...]  # indices into TestPlan.calls
    check: str  # the assert's expression with each call replaced by its placeholder name
    pure: bool  # the parent can evaluate `check` itself (else the judge program does, in the sandbox)


@dataclass(frozen=True)
class TestPlan:
    entry_point: str
    setup: str  # every setup statement, in order (the judge runs it)
    probe_setup: str  # the setup the calls need ("" when their arguments use none of it: it stays out of reach)
    calls: tuple[str, ...]  # source of each call of the entry point, in the order the tests make them
    cases: tuple[Case, ...]


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.copy_location(ast.Name(self.new, node.ctx), node) if node.id == self.old else node


class _Calls(ast.NodeTransformer):
    """Replaces each outermost call of the entry point with a placeholder name; records the call's source."""

    def __init__(self, entry: str, calls: list[str]):
        self.entry, self.calls, self.indices = entry, calls, []

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if isinstance(node.func, ast.Name) and node.func.id == self.entry:
            self.indices.append(len(self.calls))
            self.calls.append(ast.unparse(node))
            return ast.copy_location(ast.Name(PLACEHOLDER.format(self.indices[-1]), ast.Load()), node)
        return self.generic_visit(node)


def _uses(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def _bound_names(statements: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for statement in statements:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(statement.name)
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in statement.names)
        else:
            names.update(n.id for n in ast.walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return names


def _checker_calls(module: ast.Module) -> dict[str, ast.FunctionDef]:
    """Top-level functions of one parameter that the tests call with one name, by that name (HumanEval's
    `check(candidate)` ... `check(f)` gives {"f": check})."""
    defs = {s.name: s for s in module.body if isinstance(s, ast.FunctionDef) and len(s.args.args) == 1}
    return {s.value.args[0].id: defs[s.value.func.id] for s in module.body
            if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) and isinstance(s.value.func, ast.Name)
            and s.value.func.id in defs and len(s.value.args) == 1 and isinstance(s.value.args[0], ast.Name)}


def _checkers(module: ast.Module, entry: str) -> dict[str, ast.FunctionDef]:
    """The checkers the tests call with the entry point, by the checker's name."""
    checker = _checker_calls(module).get(entry)
    return {checker.name: checker} if checker else {}


def guess_entry_point(tests: str) -> str:
    """The function a checker is called with (HumanEval's `check(f)`), else the one function the asserts call
    that neither Python nor the tests define."""
    module = ast.parse(tests)
    handed = _checker_calls(module)
    if len(handed) == 1:
        return next(iter(handed))
    defined = _bound_names([s for s in module.body if not isinstance(s, ast.Assert)]) | set(dir(builtins))
    called = {n.func.id for s in module.body if isinstance(s, ast.Assert) for n in ast.walk(s)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id not in defined}
    if len(called) != 1:
        raise UnsplittableTests(f"the entry point is not given and the asserts call {sorted(called) or 'nothing'}; "
                                f"give the problem an entry_point")
    return called.pop()


@functools.lru_cache(maxsize=4096)
def split_tests(tests: str, entry_point: str = "") -> TestPlan:
    """The cases of `tests` for the function `entry_point` (guessed from the asserts when empty)."""
    try:
        module = ast.parse(tests)
    except SyntaxError as exc:
        raise UnsplittableTests(f"the tests are not valid Python: {exc}") from None
    entry = entry_point or guess_entry_point(tests)
    checkers = _checkers(module, entry)
    statements: list[ast.stmt] = []
    for statement in module.body:
        if isinstance(statement, ast.FunctionDef) and statement.name in checkers:
            continue
        call = statement.value if isinstance(statement, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in checkers:
            checker = checkers[call.func.id]
            rename = _Rename(checker.args.args[0].arg, entry)
            statements += [rename.visit(s) for s in checker.body]  # its body, with the parameter as the entry point
            continue
        statements.append(statement)
    setup: list[ast.stmt] = []
    calls: list[str] = []
    cases: list[Case] = []
    for statement in statements:
        if isinstance(statement, ast.Assert):
            source, finder = ast.unparse(statement), _Calls(entry, calls)
            check = finder.visit(ast.Expression(statement.test))
            if _uses(check, entry):
                raise UnsplittableTests(f"`{ast.unparse(statement)}` uses {entry} other than by calling it")
            if finder.indices:  # an assert that never calls the code tests nothing of it
                pure = all(isinstance(n, PURE_NODES) for n in ast.walk(check)) and all(
                    n.id.startswith("__r1lab_call_") for n in ast.walk(check) if isinstance(n, ast.Name))
                cases.append(Case(source, tuple(finder.indices), ast.unparse(check.body), pure))
        elif isinstance(statement, SETUP_STATEMENTS) and not _uses(statement, entry):
            setup.append(statement)
        else:
            raise UnsplittableTests(f"`{ast.unparse(statement).splitlines()[0]}` is neither an assert nor setup "
                                    f"that leaves {entry} alone (asserts in loops, `with` or `if` cannot be split)")
    if not cases:
        raise UnsplittableTests(f"no assert calls {entry}")
    setup_source = "\n".join(ast.unparse(s) for s in setup)
    needed = _bound_names(setup) & {n.id for c in calls for n in ast.walk(ast.parse(c)) if isinstance(n, ast.Name)}
    return TestPlan(entry, setup_source, setup_source if needed else "", tuple(calls), tuple(cases))
