"""The house's floors: imports run one way, from the entry points down to the ground floor, with no circle."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "r1lab"

# Lowest first. A module may import its own floor or lower ones, never a higher one (README, "Layout").
FLOORS = [
    ("ground", {"r1lab", "r1lab.registry", "r1lab.plugins", "r1lab.rollout", "r1lab.judging", "r1lab.runs",
                "r1lab.engines"}),
    ("components", {"r1lab.rewards", "r1lab.tasks", "r1lab.curricula", "r1lab.samplers", "r1lab.models",
                    "r1lab.toy"}),
    ("the RL step", {"r1lab.rl", "r1lab.callbacks"}),
    ("the trainer", {"r1lab.trainer"}),
    ("stages", {"r1lab.stages"}),
    ("entry points", {"r1lab.train", "r1lab.cli", "r1lab.__main__", "r1lab.testing", "r1lab.reporting",
                      "r1lab.commandline"}),
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


ROOT_MODULES = {"__init__", "__main__", "cli", "train", "trainer", "testing", "registry", "plugins", "rollout"}


def test_the_root_holds_only_the_entry_points_and_the_core_types():
    loose = {p.stem for p in PACKAGE.glob("*.py")}
    assert loose == ROOT_MODULES, f"new modules at the root: {sorted(loose - ROOT_MODULES)}; put them in a package"
    for package in (p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"r1lab/{package.name}/__init__.py needs a docstring: what it holds and what it may import"


def test_moved_modules_keep_their_old_import_paths_with_a_warning():
    import importlib
    import sys
    import warnings

    import r1lab
    from r1lab.judging import answers

    for old, new in r1lab.MOVED.items():
        assert importlib.util.find_spec(new) is not None, new
    sys.modules.pop("r1lab.answers", None)  # imported through the old path before: import it afresh
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import r1lab.answers as old_answers  # noqa: F401
    assert old_answers is answers
    assert any("r1lab.answers moved to r1lab.judging.answers" in str(w.message) for w in caught)
