"""Lightning strategies for the trainer presets (conf/trainer/*.yaml).

A preset names its strategy as Lightning does (`strategy: ddp`) or as a config with `_target_`; what depends
on the model or on optional packages is filled in here: FSDP wraps the model's own decoder-layer classes,
DeepSpeed gets r1lab's gradient clipping, and a missing package gives an install hint instead of a traceback.
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy
from omegaconf import DictConfig, OmegaConf

# Checked, not assumed: tests/test_engines.py wraps a module in torch's FSDP on a CPU process group and expects
# this refusal, so the test fails (and this can go) on the day torch accepts CPU devices.
FSDP_ON_CPU = ("trainer=fsdp cannot run on CPU processes: Lightning's FSDPStrategy requires a GPU accelerator, and "
               "below it torch's FullyShardedDataParallel refuses CPU devices ('FSDP needs a non-CPU accelerator "
               "device'). On CPUs, shard with trainer=fsdp2 (torch's fully_shard, which runs on CPU) or "
               "trainer=deepspeed_zero3, or replicate with trainer=ddp; with trainer.accelerator=cpu")

INSTALL_HINTS = {
    "deepspeed": "pip install 'r1lab[deepspeed]' (DeepSpeed compiles its C++ ops on first use, which takes minutes)",
}


def require(package: str, feature: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise ImportError(f"{feature} needs the {package} package, which is not installed: {INSTALL_HINTS[package]}")


def build_strategy(spec: Any, model: torch.nn.Module | None = None, max_grad_norm: float | None = None,
                   accelerator: str | None = None) -> Any:
    """`trainer.strategy` → what `lightning.Trainer(strategy=...)` takes. DeepSpeed with
    `trainer.accelerator=cpu` gets `CPUDeepSpeedStrategy` (Lightning's own refuses anything but CUDA)."""
    if spec is None or isinstance(spec, str):
        if isinstance(spec, str) and spec.startswith("deepspeed"):
            require("deepspeed", f"trainer.strategy={spec}")
        return spec if spec is not None else "auto"
    spec = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else dict(spec)
    target = spec.get("_target_", "")
    if "DeepSpeed" in target:
        require("deepspeed", "trainer.strategy=DeepSpeedStrategy (trainer=deepspeed_zero2/3)")
    if target.endswith(".FSDPStrategy") and spec.get("auto_wrap_policy") == "decoder_layers":
        spec["auto_wrap_policy"] = decoder_layer_classes(model) if model is not None else None
    if target.endswith(".FSDPStrategy") and accelerator == "cpu":
        raise ValueError(FSDP_ON_CPU)
    if "DeepSpeed" in target and accelerator == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before DeepSpeed is imported; ranks inherit it
        spec["_target_"] = f"{__name__}.CPUDeepSpeedStrategy"
    strategy = instantiate(spec)
    if "DeepSpeed" in target and max_grad_norm:
        strategy.config.setdefault("gradient_clipping", float(max_grad_norm))  # DeepSpeed clips inside its step
    return strategy


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """Lightning's DeepSpeed strategy on CPU processes (DeepSpeed's CPU accelerator, gloo between ranks).
    Lightning assumes CUDA in three places, the only things changed here: `setup_environment` (the accelerator
    must be CUDA), `setup_distributed` (device indices must equal local ranks) and the `device_rank` it hands
    `deepspeed.initialize` (the root device's index, None for a plain CPU device): the root device here is
    `cpu:<local rank>`, the same memory as `cpu`. Slow, but it runs ZeRO-2/3's sharding, gathering and
    checkpoint code on a laptop."""

    @property
    def root_device(self) -> torch.device:
        return torch.device("cpu", self.local_rank)

    def setup_environment(self) -> None:
        if os.environ.get("DS_ACCELERATOR") != "cpu":
            raise RuntimeError("DeepSpeed on trainer.accelerator=cpu needs DS_ACCELERATOR=cpu set before DeepSpeed "
                               "is imported (r1lab sets it when it builds the strategy; something imported "
                               "DeepSpeed earlier with another accelerator)")
        DDPStrategy.setup_environment(self)  # skips DeepSpeedStrategy's CUDA-only check, nothing else

    def setup_distributed(self) -> None:
        reset_seed()  # DeepSpeedStrategy.setup_distributed without the device-index check
        self.set_world_ranks()
        self._init_deepspeed_distributed()


def decoder_layer_classes(model: torch.nn.Module) -> set[type]:
    """The classes a `transformers` model says must not be split (its decoder layers): FSDP's wrap units."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    classes = {type(m) for m in model.modules() if type(m).__name__ in names}
    if not classes:
        raise ValueError(f"trainer=fsdp wraps the model's decoder layers, but {type(model).__name__} names none "
                         "(_no_split_modules); set trainer.strategy.auto_wrap_policy to a set of layer classes")
    return classes


def is_deepspeed(strategy: Any) -> bool:
    if isinstance(strategy, str):
        return strategy.startswith("deepspeed")
    return isinstance(strategy, DeepSpeedStrategy)


def is_fsdp(strategy: Any) -> bool:
    return isinstance(strategy, FSDPStrategy)


class FSDP2Strategy(ModelParallelStrategy):
    """Lightning's ModelParallelStrategy as plain FSDP2 data parallelism: every process one data-parallel rank
    (tensor parallel size 1), and the model laid out by `RLModule.configure_model` (`shard_fully`). Lightning's
    "auto" sizes would make the ranks of a node one tensor-parallel group instead."""

    def __init__(self, **kwargs: Any):
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, **kwargs)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes  # all ranks, across nodes
        super().setup_environment()


def is_fsdp2(strategy: Any) -> bool:
    """trainer=fsdp2: Lightning's ModelParallelStrategy, with r1lab's `shard_fully` as the model's layout."""
    return isinstance(strategy, ModelParallelStrategy)


def shard_fully(model: torch.nn.Module, mesh: Any) -> None:
    """FSDP2 (torch's `fully_shard`): each decoder layer one unit, the rest of the model the root unit; every
    parameter becomes a DTensor sharded over `mesh` (the data-parallel ranks)."""
    from torch.distributed.fsdp import fully_shard

    layers = tuple(decoder_layer_classes(model))
    for module in model.modules():
        if isinstance(module, layers):
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)


def fsdp2_units(model: torch.nn.Module) -> list[Any]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def deepspeed_stage(strategy: Any) -> int:
    return int(strategy.config.get("zero_optimization", {}).get("stage", 0)) if is_deepspeed(strategy) else 0


@contextmanager
def full_parameters(strategy: Any, model: torch.nn.Module):
    """Under ZeRO-3, every rank holds `model`'s whole weights inside this block (they are gathered on entry
    and partitioned again on exit; every rank must enter). Other strategies: as is."""
    if deepspeed_stage(strategy) == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            yield
    else:
        yield


@contextmanager
def generation_parameters(strategy: Any, model: torch.nn.Module):
    """Generation under ZeRO-3 would gather every layer's weights once per token: gather them once for the
    whole rollout instead, and take DeepSpeed's forward hooks off meanwhile. The hooks fetch and prefetch
    weights with collectives, and ranks decode different numbers of tokens (each stops when its own rows
    end), so with the hooks on, one rank's prefetch meets another's metric all-reduce and gloo aborts
    ("collective mismatch"). DeepSpeed's own `unwrap_model_for_generation` does the same for a whole engine."""
    if is_fsdp2(strategy):
        with fsdp2_unsharded(model):
            yield
        return
    if deepspeed_stage(strategy) != 3:
        yield
        return
    engine = strategy.deepspeed_engine
    offload = getattr(engine.optimizer, "parameter_offload", engine.optimizer)
    with full_parameters(strategy, model):
        for hook in [*offload.forward_hooks, *offload.backward_hooks]:
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            offload._register_deepspeed_module(offload.module)


@contextmanager
def fsdp2_unsharded(model: torch.nn.Module):
    """FSDP2's units gathered once (a collective every rank makes together) and kept whole until the block
    ends: with `reshard_after_forward` off, a unit's forward finds its weights present and communicates
    nothing, so ranks may run different numbers of forwards (decode different numbers of tokens)."""
    units = fsdp2_units(model)
    for unit in units:
        unit.unshard()
        unit.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for unit in units:
            unit.set_reshard_after_forward(True, recurse=False)
            unit.reshard()


def sharded_parameters(model: torch.nn.Module) -> bool:
    """True when some submodule is an FSDP unit: its weights are only whole inside its own forward."""
    return any(type(m).__name__ == "FullyShardedDataParallel" for m in model.modules())


def shards_parameters(strategy: Any) -> bool:
    """FSDP and ZeRO-3 keep each parameter in pieces across ranks: using the whole model outside the
    training step takes every rank."""
    return is_fsdp(strategy) or is_fsdp2(strategy) or deepspeed_stage(strategy) == 3


def full_policy_state_dict(strategy: Any, module: Any) -> dict[str, torch.Tensor] | None:
    """The policy's whole weights under a sharding strategy (every rank must call this: it gathers), None
    where `module.policy.state_dict()` is already whole."""
    if deepspeed_stage(strategy) == 3:
        with full_parameters(strategy, module.policy):
            return {k: v.detach().cpu().clone() for k, v in module.policy.state_dict().items()}
    if is_fsdp2(strategy):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(module.policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if is_fsdp(strategy):
        prefix = "policy."
        return {k[len(prefix):]: v for k, v in strategy.lightning_module_state_dict().items() if k.startswith(prefix)}
    return None
