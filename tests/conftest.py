from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Shared with plugin tests: r1lab.testing (also loaded as a pytest plugin: the shared_data fixture).
from r1lab.testing import FAST, compose_config, read_scalars, run_cli  # noqa: F401

REPO = Path(__file__).resolve().parents[1]

# The head of a throwaway plugin's pyproject.toml (what a third party's would start with).
BUILD_SYSTEM = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"
"""


def install_plugin(tmp_path_factory, name: str, pyproject: str, files: dict[str, str]) -> Path:
    """Write a throwaway plugin package (`files`: path -> text, dedented) and pip-install it into a fresh folder,
    as a third party would; put the returned folder on PYTHONPATH to use it."""
    import subprocess
    import sys
    import textwrap

    source = tmp_path_factory.mktemp(f"{name}_src")
    (source / "pyproject.toml").write_text(BUILD_SYSTEM + pyproject)
    for relative, text in files.items():
        path = source / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    site = tmp_path_factory.mktemp(f"{name}_site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True, capture_output=True, text=True)
    return site

# A tiny random Qwen2-style model (char tokenizer): fast enough for any unit test.
TINY = {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 256}


@pytest.fixture(scope="module")
def policy():
    from r1lab.models import load_policy

    torch.manual_seed(0)
    return load_policy(random_init=TINY)
