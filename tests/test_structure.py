"""The house's floors: imports run one way, from the entry points down to the ground floor, with no circle."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "r1lab"

# Lowest first. A module may import its own floor or lower ones, never a higher one (README, "Layout").
FLOORS = [
    ("ground", {"r1lab", "r1lab.registry", "r1lab.plugins", "r1lab.rollout", "r1lab.answers", "r1lab.selfcheck",
                "r1lab.language", "r1lab.distributed", "r1lab.strategies", "r1lab.checkpointing", "r1lab.patches",
                "r1lab.scalars", "r1lab.header", "r1lab.errors", "r1lab.run_dir", "r1lab.jsonl",
                "r1lab.sandbox", "r1lab.paths", "r1lab.equations", "r1lab.precision", "r1lab.template", "r1lab.run_log"}),
    ("components", {"r1lab.rewards", "r1lab.tasks", "r1lab.curricula", "r1lab.samplers", "r1lab.models",
                    "r1lab.toy", "r1lab.diagnostics"}),
    ("the RL step", {"r1lab.rl", "r1lab.callbacks"}),
    ("the trainer", {"r1lab.trainer"}),
    ("stages", {"r1lab.stages"}),
    ("entry points", {"r1lab.train", "r1lab.cli", "r1lab.__main__", "r1lab.listing", "r1lab.choices",
                      "r1lab.report", "r1lab.sweep_report", "r1lab.testing", "r1lab.preflight", "r1lab.sweep_jobs"}),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every r1lab module `path` imports, at the top or inside a function (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {n for n in names if n == "r1lab" or n.startswith("r1lab.")}
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {m for m in imports_of(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def unit_of(module: str) -> str:
    """The top-level unit a module belongs to: r1lab.rl.losses -> r1lab.rl; r1lab.rollout -> r1lab.rollout."""
    parts = module.split(".")
    return ".".join(parts[:2])


def floor_of(module: str) -> int:
    for level, (_, units) in enumerate(FLOORS):
        if unit_of(module) in units:
            return level
    raise AssertionError(f"{module} is on no floor: add its package or module to FLOORS in {__file__}")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_every_module_has_a_floor():
    for module in MODULES:
        floor_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_runs_up_a_floor(module):
    for imported in GRAPH[module]:
        if imported == "r1lab" or unit_of(imported) == unit_of(module):
            continue
        assert floor_of(imported) <= floor_of(module), (
            f"{module} ({FLOORS[floor_of(module)][0]}) imports {imported} ({FLOORS[floor_of(imported)][0]}), "
            "a higher floor")


def test_no_import_circle_between_modules():
    assert find_cycle(GRAPH) is None, f"import circle: {' -> '.join(find_cycle(GRAPH))}"


def test_no_import_circle_between_packages():
    units = {}
    for module, imported in GRAPH.items():
        units.setdefault(unit_of(module), set()).update(unit_of(m) for m in imported if unit_of(m) != unit_of(module))
    assert find_cycle(units) is None, f"import circle: {' -> '.join(find_cycle(units))}"


def test_only_the_cli_runs_the_hydra_app():
    users = sorted(module for module, imported in GRAPH.items() if "r1lab.train" in imported)
    assert users == ["r1lab.cli"]


def test_every_stage_option_has_its_module_in_the_stages_package():
    conf = PACKAGE.parent / "conf" / "stage"
    for option in conf.glob("*.yaml"):
        target = next(line.split(":", 1)[1].strip() for line in option.read_text().splitlines()
                      if line.startswith("_target_:"))
        assert target.startswith(f"r1lab.stages.{option.stem}."), f"conf/stage/{option.name}: {target}"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
