"""Sampling with `transformers` generation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel

from r1lab.engines.distributed import rank_and_world
from r1lab.registry import SAMPLERS
from r1lab.rollout import PromptBatch, Rollout
from r1lab.samplers import lean_decode
from r1lab.samplers.base import Sampler, check_decoding, cut_at_stop_strings, end_at_stop_string, stop_token_ids
from r1lab.engines.strategies import sharded_parameters

ENGINES = ("auto", "lean", "generate")
SEEDINGS = ("global", "per_prompt")


class _LogprobRecorder(LogitsProcessor):
    """Records log π(token) of each sampled token under the tempered policy, in O(N·V) memory.

    Generation calls processors before sampling, so the log-probs of step t are gathered at step t+1, when
    the sampled token is the last input id. Custom processors run before temperature/top-p, hence the
    explicit temperature.
    """

    def __init__(self, temperature: float):
        self.temperature = temperature
        self.pending: Tensor | None = None
        self.logprobs: list[Tensor] = []

    def _collect(self, last_tokens: Tensor) -> None:
        if self.pending is not None:
            self.logprobs.append(self.pending.gather(-1, last_tokens[:, None]).squeeze(-1))

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        self._collect(input_ids[:, -1])
        self.pending = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, sequences: Tensor, width: int) -> Tensor:
        self._collect(sequences[:, -1])
        self.pending = None
        return torch.stack(self.logprobs[-width:], dim=1)


def completion_mask_and_truncation(completion_ids: Tensor, eos_token_id: int | Sequence[int]
                                   ) -> tuple[Tensor, Tensor]:
    """Mask tokens up to and including the first stop token (EOS, or any of several); rows without one are
    truncated."""
    stops = torch.as_tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id),
                            device=completion_ids.device)
    is_eos = torch.isin(completion_ids, stops)
    has_eos = is_eos.any(dim=1)
    first_eos = torch.where(has_eos, is_eos.int().argmax(dim=1), completion_ids.shape[1] - 1)
    positions = torch.arange(completion_ids.shape[1], device=completion_ids.device)
    return (positions[None, :] <= first_eos[:, None]).float(), ~has_eos


@SAMPLERS.register("hf")
class HFSampler(Sampler):
    """G completions per prompt from a `transformers` model (temperature, top-p, top-k, max_new_tokens, stop on EOS).

    `engine`: `lean` decodes with r1lab's KV-cache loop (samplers/lean_decode.py: Qwen2/Llama/Mistral-style
    models, several times less per-token overhead on small models), `generate` with `model.generate`
    (any model), `auto` picks `lean` where the architecture is supported.

    `seeding`: `global` draws from torch's global RNG; `per_prompt` (lean engine) draws each prompt's group
    from its own seed (the RL step gives every prompt of the global batch one), so completions do not depend
    on batch layout or on the number of data-parallel ranks.
    """

    def __init__(self, group_size: int = 8, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 max_new_tokens: int = 256, record_logprobs: bool = True, engine: str = "auto",
                 seeding: str = "global", stop_strings: Sequence[str] = ()):
        super().__init__(group_size, temperature, max_new_tokens)
        self.stop_strings = [s for s in stop_strings if s]  # e.g. ["</answer>"]: a completion ends there
        check_decoding(top_p=top_p)
        if engine not in ENGINES:
            raise ValueError(f"sampler.engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        if seeding not in SEEDINGS:
            raise ValueError(f"sampler.seeding must be one of {', '.join(SEEDINGS)}, got {seeding!r}")
        if seeding == "per_prompt" and engine == "generate":
            raise ValueError("sampler.seeding=per_prompt needs sampler.engine=lean (or auto with a supported model); "
                             "model.generate draws from the global RNG")
        self.seeding = seeding
        self.top_p = float(top_p)
        self.top_k = int(top_k)
        self.record_logprobs = record_logprobs
        self.engine = engine

    def engine_for(self, model: PreTrainedModel) -> str:
        if sharded_parameters(model):  # FSDP units gather their weights in their own forward, which lean skips
            if self.engine == "lean":
                raise ValueError("sampler.engine=lean cannot decode an FSDP-sharded model; use sampler.engine=auto "
                                 "or generate")
            return "generate"
        if self.engine != "auto":
            if self.engine == "lean" and not lean_decode.supports(model):
                raise ValueError(f"sampler.engine=lean supports model types {', '.join(lean_decode.SUPPORTED_MODEL_TYPES)} "
                                 f"with default rotary embeddings, not this {model.config.model_type} model; "
                                 "use sampler.engine=generate (or auto)")
            return self.engine
        return "lean" if lean_decode.supports(model) else "generate"

    @torch.no_grad()
    def rollout(self, model: PreTrainedModel, tokenizer, batch: PromptBatch) -> Rollout:
        prompts, columns = batch.repeat(self.group_size)
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        seeds = None
        if self.seeding == "per_prompt":  # batches from outside the RL step carry no seeds: draw them
            seeds = batch.seeds if batch.seeds is not None else torch.randint(2**62, (len(batch),)).tolist()
        sequences, sampler_logprobs = self.generate(model, tokenizer, encoded, group_seeds=seeds)
        prompt_width = encoded["input_ids"].shape[1]
        completion_ids = sequences[:, prompt_width:]
        completion_mask, truncated = completion_mask_and_truncation(completion_ids, stop_token_ids(model, tokenizer))
        by_string = [False] * len(completion_ids)
        if self.stop_strings:  # decoding runs on; the completion ends at its first stop string (kept in it)
            completion_mask, truncated, by_string = cut_at_stop_strings(tokenizer, completion_ids, completion_mask,
                                                                        truncated, self.stop_strings)
        # Tokens after EOS are padding: mask them for attention too.
        attention_mask = torch.cat([encoded["attention_mask"], completion_mask.long()], dim=1)
        texts = [tokenizer.decode(ids[: int(n) - (0 if cut or string else 1)], skip_special_tokens=False)
                 for ids, n, cut, string in zip(completion_ids, completion_mask.sum(1), truncated, by_string)]
        texts = [end_at_stop_string(t, self.stop_strings) if string else t for t, string in zip(texts, by_string)]
        return Rollout(
            prompts=prompts, completions=texts, group_size=self.group_size, input_ids=sequences,
            attention_mask=attention_mask, completion_mask=completion_mask, truncated=truncated, columns=columns,
            sampler_logprobs=sampler_logprobs,
        )

    def generate(self, model: PreTrainedModel, tokenizer, encoded, max_new_tokens: int | None = None,
                 stop_ids: Sequence[int] = (), group_seeds: Sequence[int] | None = None) -> tuple[Tensor, Tensor | None]:
        """(prompt + completion ids, per-token log-probs of the sampled tokens or None).

        Rows stop at EOS or at any of `stop_ids` (e.g. a step delimiter, for step-level search).
        `group_seeds`: one seed per group of `group_size` consecutive rows (lean engine only).
        """
        max_new_tokens = max_new_tokens or self.max_new_tokens
        ends = stop_token_ids(model, tokenizer)
        stops = [*ends, *(i for i in stop_ids if i not in ends)]
        engine = self.engine_for(model)
        if group_seeds is not None and engine != "lean":
            raise ValueError(f"sampler.seeding=per_prompt needs the lean engine; this {model.config.model_type} model "
                             "is not supported by it (use sampler.seeding=global)")
        if engine == "lean":
            noise = None if group_seeds is None else lean_decode.GroupNoise(group_seeds, self.group_size, model.device)
            sequences, logprobs = lean_decode.lean_sample(
                model, encoded["input_ids"], encoded["attention_mask"], max_new_tokens, stops,
                tokenizer.pad_token_id, self.temperature, self.top_p, self.top_k, noise=noise)
            return sequences, logprobs if self.record_logprobs else None
        recorder = _LogprobRecorder(self.temperature) if self.record_logprobs else None
        sequences = model.generate(
            **encoded, do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            max_new_tokens=max_new_tokens, eos_token_id=stops if len(stops) > 1 else stops[0],
            pad_token_id=tokenizer.pad_token_id, logits_processor=LogitsProcessorList([recorder] if recorder else []),
            # FSDP units gather their weights with collectives in every forward: a rank whose rows all ended
            # keeps stepping until every rank's have, or the others would wait on it forever.
            synced_gpus=sharded_parameters(model) and rank_and_world()[1] > 1,
        )
        width = sequences.shape[1] - encoded["input_ids"].shape[1]
        return sequences, recorder.finish(sequences, width) if recorder else None
