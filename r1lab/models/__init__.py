from r1lab.models.policy import ModelLoadError, Policy, load_gguf_policy, load_policy, load_tokenizer

__all__ = ["ModelLoadError", "Policy", "load_gguf_policy", "load_policy", "load_tokenizer"]
