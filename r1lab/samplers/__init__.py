"""Samplers: G completions per prompt (base.py: the contract), from transformers (hf, with the lean KV-cache
decoder in lean_decode) or vLLM (vllm), registered in SAMPLERS.

Components' floor: may import other components and the ground floor, never the RL step or above.
"""
