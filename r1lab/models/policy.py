"""Load the policy: any `transformers` causal LM + tokenizer, from a local folder or an in-repo config.

Weights are never fetched at run time unless `offline=false`: a hub id that is not in the local cache is
an error that says how to point at a local folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerFast

from r1lab.models.gguf import DIST_SCHEME, converted_folder, installed_file, is_gguf_file
from r1lab.models.peft import METHODS, adapter_base, is_adapter_folder, load_adapter
from r1lab.models.tokenizers import R1_TAGS, build_char_tokenizer

# tokenizer_config classes that mean "a plain `tokenizers` file": load them as PreTrainedTokenizerFast, which
# keeps its pre-tokenizer (AutoTokenizer may map them to a model-specific class that drops whitespace).
PLAIN_TOKENIZER_CLASSES = {"PreTrainedTokenizerFast", "TokenizersBackend"}


class ModelLoadError(ValueError):
    pass


@dataclass
class Policy:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    source: str  # where it came from, for the run header


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model",
                   "spiece.model", "merges.txt")


def load_tokenizer(path: str | Path, **kwargs: Any):
    folder = Path(path)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"the model folder {folder} has no tokenizer files (none of {', '.join(TOKENIZER_FILES)}); "
                             "save the tokenizer beside the weights (tokenizer.save_pretrained(folder))")
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file() and json.loads(config_file.read_text()).get("tokenizer_class") in PLAIN_TOKENIZER_CLASSES:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path), **kwargs)
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
    if len(tokenizer) == 0:
        raise ModelLoadError(f"the tokenizer in {path} has an empty vocabulary; save the model's own tokenizer there")
    return tokenizer


def _prepare_tokenizer(tokenizer):
    tokenizer.padding_side = "left"  # prompts are left-padded so completions start in one column
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token is None:
        raise ModelLoadError("the tokenizer has no eos_token: generation could never stop")
    return tokenizer


def build_random_model(random_init: dict[str, Any], dtype: torch.dtype, extra_tokens: Sequence[str] = R1_TAGS
                       ) -> Policy:
    """A randomly initialised model from a `transformers` config plus the char-level tokenizer."""
    spec = dict(random_init)
    model_type = spec.pop("model_type", "qwen2")
    tokenizer = build_char_tokenizer(extra_tokens)
    # A larger vocab_size pads the embedding to a real model's size (for throughput runs): the extra ids
    # decode to nothing.
    vocab_size = max(len(tokenizer), int(spec.pop("vocab_size", 0) or 0))
    config = AutoConfig.for_model(model_type, vocab_size=vocab_size, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **spec)
    model = AutoModelForCausalLM.from_config(config).to(dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return Policy(model, tokenizer, f"random init ({model_type}, {model.num_parameters():,} parameters)")


def resolve_package_path(name_or_path: str) -> str:
    """`pkg://package.module/sub/dir` → the folder inside an installed package (e.g. the shipped toy model);
    `dist://<distribution>/<file>` → a file of an installed distribution (e.g. a GGUF file in a wheel)."""
    if name_or_path.startswith(DIST_SCHEME):
        return str(installed_file(name_or_path))
    if not name_or_path.startswith("pkg://"):
        return name_or_path
    package, _, inner = name_or_path[len("pkg://"):].partition("/")
    return str(resources.files(package).joinpath(inner))


def model_folder(name_or_path: str) -> tuple[str, str]:
    """(the folder or hub id to load, what to call it in the run header): package references resolved, a
    GGUF file converted once into a cached Hugging Face folder."""
    resolved = resolve_package_path(name_or_path)
    if is_gguf_file(resolved):
        folder = str(converted_folder(resolved))
        return folder, f"{resolved} (GGUF, converted to {folder})"
    return resolved, resolved


def load_policy(name_or_path: str | None = None, random_init: dict[str, Any] | None = None,
                dtype: str = "float32", offline: bool = True, extra_tokens: Sequence[str] = R1_TAGS,
                peft: str | None = None, lora: dict[str, Any] | None = None,
                gradient_checkpointing: bool = False) -> Policy:
    """Load a causal LM and its tokenizer from `name_or_path`, or build one from `random_init`.

    `name_or_path` may be a local folder (a model, or a LoRA adapter exported by r1lab, loaded onto its base
    and merged), `pkg://<package>/<folder>` (a model shipped in a package), a `.gguf` file or
    `dist://<distribution>/<file.gguf>` (converted once into a cached folder, r1lab.models.gguf), or a hub id
    already in the local cache. `extra_tokens` are whole-word tokens of the random-init char tokenizer.
    `peft="lora"` adds LoRA adapters (`lora`: r, alpha, dropout, target_modules) and trains only those;
    `gradient_checkpointing` recomputes activations in the backward pass (less memory, ~30% more compute).
    """
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ModelLoadError(f"model.dtype={dtype!r} is not a torch dtype; use float32, bfloat16 or float16")
    if peft is not None and peft not in METHODS:
        raise ModelLoadError(f"model.peft={peft!r} is unknown; choose one of {', '.join(METHODS)} (or null: full "
                             "fine-tuning)")
    if name_or_path is None:
        if random_init is None:
            raise ModelLoadError("set model.name_or_path (a local model folder) or model.random_init (a config)")
        policy = build_random_model(dict(random_init), torch_dtype, list(extra_tokens))
    elif is_adapter_folder(resolve_package_path(str(name_or_path))):
        adapter = resolve_package_path(str(name_or_path))
        policy = _load_pretrained(adapter_base(adapter), torch_dtype, offline)
        policy = Policy(load_adapter(policy.model, adapter), load_tokenizer(adapter), f"{adapter} (LoRA, merged)")
    else:
        folder, source = model_folder(str(name_or_path))
        policy = _load_pretrained(folder, torch_dtype, offline)
        policy.source = source
    _prepare_tokenizer(policy.tokenizer)
    if gradient_checkpointing:
        policy.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if peft is not None:
        adapted = METHODS[peft](policy.model, **dict(lora or {}))
        policy = Policy(adapted, policy.tokenizer, f"{policy.source} + {peft.upper()}")
    return policy


def load_gguf_policy(path: str, **options: Any) -> Policy:
    """`model=gguf model.path=<file.gguf>`: the causal LM in a GGUF file (or `dist://<distribution>/<file>`),
    converted once into a cached folder; `options` as for `load_policy`."""
    if not is_gguf_file(path):
        raise ModelLoadError(f"model.path={path!r} does not name a .gguf file; model=gguf reads GGUF files (a "
                             "model folder loads with model=hf model.name_or_path=<folder>)")
    return load_policy(name_or_path=path, **options)


def _load_pretrained(name_or_path: str, dtype: torch.dtype, offline: bool) -> Policy:
    local = Path(name_or_path).expanduser()
    if not local.is_dir() and (local.exists() or name_or_path.startswith((".", "/", "~"))):
        raise ModelLoadError(f"model.name_or_path={name_or_path!r} is not a model folder "
                             "(expected a directory with config.json and weights)")
    source = str(local) if local.is_dir() else name_or_path
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=offline)
        tokenizer = load_tokenizer(source, local_files_only=offline)
    except (OSError, ValueError) as exc:
        if local.is_dir():
            raise ModelLoadError(f"could not load a causal LM from {source!r}: {exc}") from exc
        raise ModelLoadError(
            f"model.name_or_path={name_or_path!r} is not a local folder and is not in the local Hugging Face "
            "cache; weights cannot be downloaded here (offline). Download it where there is network access "
            f"(e.g. `hf download {name_or_path} --local-dir models/NAME`), then pass "
            "model.name_or_path=models/NAME, or set model.offline=false on a machine with network access."
        ) from exc
    return Policy(model, tokenizer, source)


def model_context(model) -> int | None:
    """The positions the model has (max_position_embeddings), None when its config does not say."""
    return getattr(model.config, "max_position_embeddings", None) or None


def longest_prompt(tokenizer, prompts: Sequence[str], cap: int | None = None) -> tuple[int, int]:
    """(tokens, index) of the longest prompt, tokenizing the 256 longest in characters (a large task's every
    prompt would take seconds; token counts follow character counts closely enough for a bound). With `cap`
    (tokens), only each prompt's first 32 × cap characters are read: a longer count is at least that much."""
    candidates = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)[:256]
    chars = None if cap is None else 32 * cap
    lengths = tokenizer([prompts[i][:chars] for i in candidates], add_special_tokens=False).input_ids
    best = max(range(len(candidates)), key=lambda k: len(lengths[k]))
    return len(lengths[best]), candidates[best]


def check_fits_context(policy: Policy, prompts: Sequence[str], max_new_tokens: int) -> None:
    """Every prompt plus `sampler.max_new_tokens` must fit the model's context; else an error that says what
    fits, before anything is allocated for it."""
    context = model_context(policy.model)
    if not context or not prompts:
        return
    longest, index = longest_prompt(policy.tokenizer, prompts, cap=context)
    if longest >= context:
        raise ValueError(f"prompt {index} of the task has at least {longest} tokens and the model's context is "
                         f"{context}: nothing can be generated after it; shorten the task's prompts (task.limit, "
                         "another template) or use a model with a longer context")
    if longest + max_new_tokens > context:
        raise ValueError(f"sampler.max_new_tokens={max_new_tokens} does not fit the model's context of {context} "
                         f"tokens after the longest prompt ({longest} tokens, prompt {index}); at most "
                         f"{context - longest} fits")
