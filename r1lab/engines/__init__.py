"""Engines and launch: Lightning strategies for DDP, FSDP2 and DeepSpeed on CPUs and GPUs (strategies), ranks
and per-prompt seeds (distributed), every process-wide Hydra/Lightning workaround (patches), and bf16 on a CPU
(precision).

Ground floor: imports only the standard library, third-party packages and other ground-floor packages.
"""
