"""bf16 on a CPU: does this machine multiply bf16 faster than fp32, and what does a run that asks for it get.

A run asks for bf16 with `trainer.precision=bf16-mixed` (fp32 weights and optimizer state, bf16 matrix
multiplies under autocast; log-probs for the ratio and the KL are taken in fp32 from the bf16 logits) and, for
LoRA, `model.dtype=bfloat16` (the frozen base in bf16; the adapters stay fp32). CPUs with AVX512-BF16 or AMX
multiply bf16 ~2.4x faster than fp32; CPUs without them (AVX2 only) fall back to a scalar kernel ~150x slower.
`cpu_bf16` says what happens on those: `fallback` (the default) trains in fp32 and says so, `keep` keeps bf16.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict

log = logging.getLogger("r1lab")

CPU_BF16_CHOICES = ("fallback", "keep")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def matmul_gflops() -> dict[str, float]:
    """GFLOP/s of a 256 × 256 matrix multiply in fp32 and bf16 on this CPU: the best of 5 rounds, the two
    dtypes alternating (a busy moment slows both alike); ~0.2 s where bf16 is slow."""
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    pairs = {name: (torch.randn(256, 256, dtype=dtype), torch.randn(256, 256, dtype=dtype))
             for name, dtype in dtypes.items()}
    best = dict.fromkeys(dtypes, float("inf"))
    for round_ in range(6):  # the first round picks kernels
        for name, (a, b) in pairs.items():
            started = time.perf_counter()
            a @ b
            if round_:
                best[name] = min(best[name], time.perf_counter() - started)
    return {name: 2 * 256**3 / max(seconds, 1e-9) / 1e9 for name, seconds in best.items()}


def cpu_bf16_flags() -> list[str]:
    """The bf16 instruction sets /proc/cpuinfo lists (empty where it says none, or is not there)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def bf16_is_slow_here() -> bool:
    """True where bf16 multiplies are slower than fp32: never on a CPU listing bf16 instructions (a timing
    taken while the machine is busy must not turn bf16 off there); elsewhere as measured."""
    if cpu_bf16_flags():
        return False
    rates = matmul_gflops()
    return rates["bfloat16"] < rates["float32"]


def asks_for_bf16(cfg: DictConfig) -> bool:
    precision = str(cfg.get("trainer", {}).get("precision", ""))
    return "bf16" in precision or str(cfg.get("model", {}).get("dtype", "")) == "bfloat16"


def trains_on_cpu(cfg: DictConfig) -> bool:
    accelerator = str(cfg.get("trainer", {}).get("accelerator", "cpu"))
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


def resolve_cpu_bf16(cfg: DictConfig) -> list[str]:
    """Apply `cpu_bf16` to a run that asks for bf16 on a CPU whose bf16 multiplies are slower than fp32;
    returns the warnings to show (none where bf16 is fast here, or not asked for)."""
    choice = cfg.get("cpu_bf16", "fallback")
    if choice not in CPU_BF16_CHOICES:
        raise ValueError(f"cpu_bf16={choice!r}: choose {' or '.join(CPU_BF16_CHOICES)} (what a run asking for bf16 "
                         "does on a CPU without fast bf16)")
    warnings = []
    model = cfg.get("model", {})
    if str(model.get("dtype", "")) == "bfloat16" and not model.get("peft") and cfg.get("stage", {}).get(
            "_target_", "").endswith(("rl.rl_stage", "sft.sft_stage", "pretrain.pretrain_stage")):
        warnings.append("model.dtype=bfloat16 with full fine-tuning keeps the weights themselves in bf16: AdamW "
                        "steps smaller than bf16's resolution (~0.4% of a weight) are lost; "
                        "trainer.precision=bf16-mixed with model.dtype=float32 keeps fp32 weights")
    if not (asks_for_bf16(cfg) and trains_on_cpu(cfg) and bf16_is_slow_here()):
        return warnings
    rates = matmul_gflops()
    flags = cpu_bf16_flags()
    why = (f"this CPU multiplies bf16 at {rates['bfloat16']:.1f} GFLOP/s against {rates['float32']:.0f} in fp32 "
           f"({'it lists ' + ', '.join(flags) if flags else 'no AVX512-BF16 or AMX instructions'})")
    if choice == "keep":
        return warnings + [f"{why}; cpu_bf16=keep: training in bf16 anyway"]
    with open_dict(cfg):
        if "bf16" in str(cfg.trainer.get("precision", "")):
            cfg.trainer.precision = "32-true"
        if str(model.get("dtype", "")) == "bfloat16":
            cfg.model.dtype = "float32"
    return [f"{why}: training in fp32 instead (trainer.precision=32-true, model.dtype=float32); cpu_bf16=keep "
            "keeps bf16"]


@contextmanager
def weights_cast_once(device: torch.device) -> Iterator[None]:
    """Under autocast, keep each weight's bf16 copy for the whole block (a rollout: many forwards, no update).

    Lightning's bf16-mixed autocast caches nothing (cache_enabled=False: the weights change between forwards
    of a training step), so a decoder would cast every weight again for every token. The weights do not change
    while sampling; the copies are dropped on the way out, before any optimizer step."""
    kind = device.type
    if not torch.is_autocast_enabled(kind):
        yield
        return
    try:
        with torch.autocast(kind, dtype=torch.get_autocast_dtype(kind), cache_enabled=True):
            yield
    finally:
        torch.clear_autocast_cache()  # a nested autocast keeps its cache until the outermost one exits
