"""What a run does (`cfg.stage`, mirroring conf/stage/): rl, pretrain, sft, rejection_sample, eval, pipeline.

Each stage is a function `stage(cfg, **options) -> metric`; `run_stage(cfg)` prepares the process (plugins,
torch threads, seeds) and calls the configured one.
"""

from r1lab.stages.run import run_stage

__all__ = ["run_stage"]
