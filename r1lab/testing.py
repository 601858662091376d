"""Helpers for testing r1lab and plugins written for it.

Also a pytest plugin (`-p r1lab.testing`, on in this repository's pytest settings): it points
`R1LAB_DATA_DIR` at `../shared/data` beside the checkout when that exists and nothing else was set, pins
`R1LAB_THREADS` (the default of `threads`) to the machine's cores, loads plugins, and provides the
`shared_data` fixture.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

from r1lab.plugins import load_plugins, register_search_path
from r1lab.runs.scalars import read_scalars  # noqa: F401 - re-exported for tests

try:
    import pytest
except ImportError:  # the quick-start install has no pytest: every helper works without it, the fixture needs it
    pytest = None

# Settings that keep a training run to a few seconds on 2 CPU cores.
FAST = ["trainer.enable_progress_bar=false", "rl.prompts_per_step=2", "sampler.group_size=4",
        "sampler.max_new_tokens=16"]


def compose_config(overrides: list[str] = (), output_dir: Path | None = None) -> DictConfig:
    """The composed run config (plugins' options included), with `paths.output_dir` set."""
    load_plugins()
    register_search_path()
    with initialize_config_module(config_module="r1lab.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir) if output_dir else "/nonexistent-output-dir"
    return cfg


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
            ) -> subprocess.CompletedProcess:
    """`python -m r1lab ARGS` in a subprocess; raises with its output when it fails and `check`."""
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run([sys.executable, "-m", "r1lab", *args], cwd=cwd, env=full_env, text=True,
                            capture_output=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"r1lab {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def build_bpe_model(folder: Path, texts: list[str], vocab_size: int = 800, **shape: int) -> Path:
    """A random Qwen2-style model with a byte-level BPE tokenizer trained on `texts` and a chat template,
    saved to `folder` like a downloaded model (`model=hf model.name_or_path=<folder>`): the real-model path
    (AutoTokenizer, chat template, no pad token, a multi-character vocabulary) at a size a CPU trains in seconds."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from r1lab.models.tokenizers import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(texts, vocab_size)
    dims = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 2048, "tie_word_embeddings": True, **shape}
    config = AutoConfig.for_model("qwen2", vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                                  bos_token_id=None, pad_token_id=None, **dims)
    model = AutoModelForCausalLM.from_config(config)
    # Like Qwen2.5-Instruct: the turn ends at <|im_end|> (EOS), and <|endoftext|> stops generation too.
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _xdist_workers() -> int:
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def threads_per_test_process() -> int:
    """The machine's cores over pytest-xdist's workers (all of them without xdist), at least 1."""
    return max(1, (os.cpu_count() or 1) // _xdist_workers())


def pytest_configure(config) -> None:
    beside_checkout = Path(config.rootpath).parent / "shared" / "data"
    if beside_checkout.is_dir():
        os.environ.setdefault("R1LAB_DATA_DIR", str(beside_checkout))
    # threads=auto measures the machine's load at each start, and runs that a test compares must not differ
    # in thread count (float sums, then sampled tokens, could): pin it, as torch's default was before auto.
    # Under pytest-xdist (-n N) the workers share the cores: threads that share a core collapse.
    os.environ.setdefault("R1LAB_THREADS", str(threads_per_test_process()))
    if _xdist_workers() > 1:
        import torch

        torch.set_num_threads(int(os.environ["R1LAB_THREADS"]))
    load_plugins()
    register_search_path()


def shared_data_folder() -> Path:
    """The folder of real data sets (GSM8K, MATH-500, PRM800K sample, Countdown); FileNotFoundError when absent."""
    folder = Path(os.environ.get("R1LAB_DATA_DIR", "data"))
    if not (folder / "gsm8k").is_dir():
        raise FileNotFoundError(f"test data folder {folder} is missing: set R1LAB_DATA_DIR, or keep shared/data "
                                "beside the checkout")
    return folder


if pytest is not None:
    @pytest.fixture(scope="session")
    def shared_data() -> Path:
        """The folder of real data sets (GSM8K, MATH-500, PRM800K sample, Countdown)."""
        try:
            return shared_data_folder()
        except FileNotFoundError as exc:
            pytest.fail(str(exc))
