"""Tasks: prompts with gold answers and the verifier that judges completions (base.py), arithmetic, JSONL data
sets (GSM8K, MATH-500, Countdown), code problems judged in the sandbox, and the prompt DataModule.

Components' floor: may import other components and the ground floor, never the RL step or above.
"""
