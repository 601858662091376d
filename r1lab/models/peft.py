"""LoRA through `peft` (`model.peft=lora`, options under `model.lora`): only the adapters train.

The frozen base model doubles as the reference policy (the adapters switched off: no second copy of the
weights); checkpoints hold the adapters only; at the end the policy is exported merged (a plain model any
`transformers` code loads) or as the adapter alone (`callbacks.policy.peft_export`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

EXPORTS = ("merged", "adapter")


def is_peft(model: Any) -> bool:
    """A `peft` model: its adapters can be switched off (the reference policy)."""
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def add_lora(model: PreTrainedModel, r: int = 16, alpha: int = 32, dropout: float = 0.05,
             target_modules: str | Sequence[str] = "all-linear") -> Any:
    """`model` with LoRA adapters on `target_modules` ("all-linear": every linear layer but the output head);
    only the adapters require gradients."""
    from peft import LoraConfig, get_peft_model

    if r < 1 or alpha <= 0 or not 0 <= dropout < 1:
        raise ValueError(f"model.lora needs r >= 1, alpha > 0 and 0 <= dropout < 1; got r={r}, alpha={alpha}, "
                         f"dropout={dropout}")
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


# model.peft=NAME → the function that adds those adapters (options from model.<NAME>, e.g. model.lora).
METHODS = {"lora": add_lora}


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(path: str | Path) -> str:
    """The base model an exported adapter was trained on (its adapter_config.json says)."""
    base = json.loads((Path(path) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{path} holds a LoRA adapter whose base model is not recorded (adapter_config.json's "
                         "base_model_name_or_path); export it merged instead (callbacks.policy.peft_export=merged)")
    return base


def load_adapter(base: PreTrainedModel, path: str | Path) -> PreTrainedModel:
    """The base model with the adapter at `path` merged in (for evaluation and further training)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(path)).merge_and_unload()


def trainable_names(model: Any, prefix: str = "") -> set[str]:
    return {prefix + name for name, parameter in model.named_parameters() if parameter.requires_grad}


def merged_state_dict(model: Any) -> dict[str, Any]:
    """The weights an adapter-free copy of `model` would have, under the plain model's names: each LoRA layer's
    base weight plus its active adapters' delta (what an engine holding a plain copy, vLLM's, needs after every
    step). `model` is left as it is: no merge and unmerge round trip to drift its fp32 weights."""
    if not is_peft(model):
        return model.state_dict()
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    deltas = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer) and not module.disable_adapters and not module.merged:
            adapters = [a for a in module.active_adapters if a in module.lora_A]
            if adapters:
                deltas[f"{name}.weight"] = sum(module.get_delta_weight(a) for a in adapters)
    state = {}
    for key, value in base.state_dict().items():
        if ".lora_" in key:  # lora_A / lora_B / lora_embedding_*: folded into the base weight below
            continue
        key = key.replace(".base_layer.", ".")
        state[key] = value + deltas[key] if key in deltas else value
    return state
