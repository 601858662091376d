from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Shared with plugin tests: r1lab.testing (also loaded as a pytest plugin: the shared_data fixture).
from r1lab.testing import FAST, compose_config, read_scalars, run_cli  # noqa: F401

REPO = Path(__file__).resolve().parents[1]

# A tiny random Qwen2-style model (char tokenizer): fast enough for any unit test.
TINY = {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 256}


@pytest.fixture(scope="module")
def policy():
    from r1lab.models import load_policy

    torch.manual_seed(0)
    return load_policy(random_init=TINY)
