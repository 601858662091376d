"""The Hydra app behind `python -m r1lab ...`: compose the config, run its stage, return the swept metric.

Only the CLI calls it; the library's entry for a composed config is `r1lab.stages.run_stage`.
"""

import hydra
from omegaconf import DictConfig

from r1lab.runs.errors import reported
from r1lab.commandline.sweep_jobs import in_sweep, sweep_job


@hydra.main(version_base="1.3", config_path="pkg://r1lab.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from r1lab.stages import run_stage  # heavy imports after Hydra has parsed the command line

    # A failing job of a sweep is recorded and the sweep goes on; a single run: one paragraph, exit status 2.
    with sweep_job() if in_sweep() else reported():
        return run_stage(cfg)
