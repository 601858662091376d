"""Policies: loading a causal LM and its tokenizer from a folder, pkg://, dist:// or GGUF (policy, gguf), LoRA
(peft), and the toy world's tokenizers (tokenizers).

Components' floor: may import other components and the ground floor, never the RL step or above.
"""

from r1lab.models.policy import ModelLoadError, Policy, load_gguf_policy, load_policy, load_tokenizer

__all__ = ["ModelLoadError", "Policy", "load_gguf_policy", "load_policy", "load_tokenizer"]
