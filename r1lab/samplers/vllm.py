"""Rollouts from a vLLM engine colocated in the trainer's process (`sampler=vllm`, extra `r1lab[vllm]`, CUDA only).

Each training process (rank) owns one engine on its GPU. Before sampling, the policy's current weights are
pushed into it (gathered first under DeepSpeed ZeRO-3 by the RL step); with `sleep: true` the engine frees
its weights and KV cache between rollouts so that training gets the GPU memory back. vLLM's log-probs are
the behaviour policy's: the RL step recomputes them with the trained policy and logs the largest difference
as `perf/logprob_mismatch` (bf16 kernels and a different attention implementation make it nonzero).
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from r1lab.distributed import rank_and_world
from r1lab.registry import SAMPLERS
from r1lab.rollout import PromptBatch, Rollout
from r1lab.samplers.base import Sampler, rollout_from_ids, stop_token_ids
from r1lab.strategies import fsdp2_units, sharded_parameters

INSTALL_HINT = ("sampler=vllm needs vLLM, which is not installed: pip install 'r1lab[vllm]' (CUDA GPUs only; the "
                "extra pins the torch and transformers versions vLLM was built against). Without a GPU use sampler=hf.")


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


@dataclass
class EngineSlot:
    """The engine and what it holds: the weights it was last given and the folder it started from."""
    llm: Any = None
    weights_current: bool = False
    model_dir: tempfile.TemporaryDirectory | None = None


@SAMPLERS.register("vllm")
class VLLMSampler(Sampler):
    checks_logprobs = True

    def __init__(self, group_size: int = 8, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 max_new_tokens: int = 256, gpu_memory_utilization: float = 0.3, tensor_parallel_size: int = 1,
                 max_model_len: int | None = None, sleep: bool = True, dtype: str = "auto",
                 enforce_eager: bool = False, stop_strings: Sequence[str] = ()):
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
        self.top_p, self.top_k = float(top_p), int(top_k)
        self.engine_args = dict(gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=1,
                                max_model_len=max_model_len, enable_sleep_mode=sleep, dtype=dtype,
                                enforce_eager=enforce_eager)
        self.sleep = sleep
        self.slot = EngineSlot()  # shared with the variants `with_settings` makes: one engine per process

    def policy_updated(self) -> None:
        self.slot.weights_current = False

    @torch.no_grad()
    def rollout(self, model, tokenizer, batch: PromptBatch) -> Rollout:
        from vllm import SamplingParams

        if sharded_parameters(model) or fsdp2_units(model):
            raise ValueError("sampler=vllm cannot read FSDP-sharded weights inside the RL step; use trainer=ddp, "
                             "deepspeed_zero2 or deepspeed_zero3 with it")
        llm = self.engine(model)
        if not self.slot.weights_current:
            self.push_weights(model)
        if self.sleep:
            llm.wake_up(tags=["kv_cache"])
        prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in batch.prompts]
        seeds: Sequence[int | None] = batch.seeds if batch.seeds is not None else [None] * len(batch)
        ends = stop_token_ids(model, tokenizer)
        params = [SamplingParams(n=self.group_size, temperature=self.temperature, top_p=self.top_p,
                                 top_k=self.top_k if self.top_k > 0 else -1, max_tokens=self.max_new_tokens,
                                 logprobs=0, seed=seed, stop_token_ids=ends, stop=self.stop_strings or None,
                                 include_stop_str_in_output=True) for seed in seeds]
        outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], sampling_params=params,
                               use_tqdm=False)
        if self.sleep:  # level 2 drops the weights too: the next rollout pushes the updated ones anyway
            llm.sleep(level=2)
            self.slot.weights_current = False
        return rollout_from_vllm(outputs, tokenizer, batch, self.group_size, device=model.device, stops=ends)

    def engine(self, model) -> Any:
        if self.slot.llm is None:
            from vllm import LLM

            rank, _ = rank_and_world()
            self.slot.llm = LLM(model=self.weights_folder(model), skip_tokenizer_init=True, seed=rank,
                           distributed_executor_backend="external_launcher",  # in this process, this rank's GPU
                           logprobs_mode="processed_logprobs",  # log-probs after temperature: what the loss scores
                           **self.engine_args)
            self.slot.weights_current = False
        return self.slot.llm

    def weights_folder(self, model) -> str:
        """vLLM starts from a model folder: the policy's own, or the policy saved once to a temporary one."""
        source = Path(str(getattr(model.config, "_name_or_path", "") or ""))
        if (source / "config.json").is_file():
            return str(source)
        self.slot.model_dir = tempfile.TemporaryDirectory(prefix="r1lab-vllm-")
        model.save_pretrained(self.slot.model_dir.name)
        return self.slot.model_dir.name

    def push_weights(self, model) -> None:
        if self.sleep:
            self.slot.llm.wake_up(tags=["weights"])
        runner = self.slot.llm.llm_engine.model_executor.driver_worker.model_runner.model
        runner.load_weights((name, tensor.detach()) for name, tensor in model.state_dict().items())
        self.slot.llm.reset_prefix_cache()
        self.slot.weights_current = True


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
            texts.append(tokenizer.decode(ids[:-1] if done and not by_string else ids, skip_special_tokens=False))
    known = all(values is not None for values in logprobs)
    return rollout_from_ids(tokenizer.pad_token_id, prompts, texts, prompt_ids, completion_ids, finished, group_size,
                            columns, logprobs=logprobs if known else None, device=device)
