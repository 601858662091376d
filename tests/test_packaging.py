"""A built wheel holds every option file, module and shipped model, and setuptools packs nothing by accident."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p.parent for p in (REPO / "plugins").glob("*/pyproject.toml"))


def build_wheel(source: Path, out: Path) -> tuple[set[str], str]:
    """Build a clean copy of `source` (setuptools builds in the tree, and files left in an old build/ folder
    would end up in the wheel) with this environment's setuptools; the wheel's files and the build log."""
    copy = out / "source"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__",
                                                                "outputs", "multirun", "plugins"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                             "--wheel-dir", str(out), str(copy)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    wheel = next(out.glob("*.whl"))
    return set(zipfile.ZipFile(wheel).namelist()), result.stdout + result.stderr


def shipped(root: Path, prefix: str, patterns: tuple[str, ...]) -> set[str]:
    return {prefix + str(p.relative_to(root)) for pattern in patterns for p in root.rglob(pattern)
            if "__pycache__" not in p.parts}


def test_the_core_wheel_holds_every_option_file_module_and_toy_model(tmp_path):
    files, log = build_wheel(REPO, tmp_path)
    assert "would be ignored" not in log, "setuptools warns that a folder is not listed in pyproject.toml"
    wanted = (shipped(REPO / "conf", "r1lab/conf/", ("*.yaml",)) | shipped(REPO / "r1lab", "r1lab/", ("*.py", "*.jsonl"))
              | shipped(REPO / "r1lab" / "toy", "r1lab/toy/", ("base_model/*", "control_model/*")))
    assert len(wanted) > 100
    assert sorted(wanted - files) == []


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_each_plugin_wheel_holds_its_option_files(plugin, tmp_path):
    files, log = build_wheel(plugin, tmp_path)
    assert "would be ignored" not in log, "setuptools warns that a folder is not listed in pyproject.toml"
    package = next(p for p in plugin.iterdir() if p.name.startswith("r1lab_"))
    wanted = shipped(package, f"{package.name}/", ("*.yaml", "*.py", "toy_prm/*"))
    assert any(name.endswith(".yaml") for name in wanted)
    assert sorted(wanted - files) == []


def test_python_m_r1lab_works_from_the_folder_that_holds_a_checkout_named_r1lab(tmp_path):
    """The README's layout (the checkout beside shared/): there, ./r1lab is the checkout, which Python would take
    for a namespace package (and its plugins/ folder for r1lab.plugins) ahead of an editable install."""
    (tmp_path / "r1lab").symlink_to(REPO, target_is_directory=True)
    run = subprocess.run([sys.executable, "-m", "r1lab", "list", "advantage"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "grpo" in run.stdout and "GRPO group-normalised reward" in run.stdout
