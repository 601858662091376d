"""Sweeps: each sweep file's smoke version runs as a Hydra multirun and the report turns it into tables and
verdicts; the verdict logic on hand-made runs; partial sweeps; launchers by composition."""

import json
import os
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO
from r1lab.reporting.sweep_report import Run, spearman, split_values, verdict
from r1lab.testing import FAST, run_cli

SWEEPS = REPO / "sweeps"
SMOKE = ["trainer.max_steps=2", *FAST]
RUNS = {"aha": 3, "beta_eps_group": 8, "length_penalty": 3, "language_consistency": 3, "prm_vs_rule": 3,
        "mcts_vs_sampling": 6, "dr_grpo_vs_grpo": 2, "distill_vs_rl": 1}


def series(*values):
    return list(enumerate(values))


def test_every_run_compare_correlation_and_pipeline_claims_by_hand():
    # Stats use the first and last 5 values: a goes 0 -> 1, b goes 0.5 -> 0.2.
    a = Run("0", Path("0"), {"seed": "1", "x": "0.0"}, {"m": series(*[0] * 5, *[1] * 5), "aha/step": [(7, 7.0)]})
    b = Run("1", Path("1"), {"seed": "2", "x": "1.0"}, {"m": series(*[0.5] * 5, *[0.2] * 5)})
    rises = {"claim": "m rises", "kind": "every_run", "metric": "m", "stat": "change", "op": ">", "value": 0.0}
    assert verdict(rises, [a]) ["verdict"] == "reproduced"
    assert verdict(rises, [a, b])["verdict"] == "not reproduced"  # b falls
    assert verdict(rises | {"where": {"seed": "3"}}, [a, b])["verdict"] == "no data"
    exists = {"claim": "aha", "kind": "every_run", "metric": "aha/step", "test": "exists"}
    assert verdict(exists, [a])["verdict"] == "reproduced" and verdict(exists, [a, b])["verdict"] == "not reproduced"
    compare = {"claim": "c", "kind": "compare", "by": "x", "metric": "m", "stat": "end", "left": "0.0", "op": ">",
               "right": "1.0"}
    result = verdict(compare, [a, b])  # ends: 1.0 vs 0.2
    assert result["verdict"] == "reproduced" and result["evidence"] == {"x=0.0": 1.0, "x=1.0": pytest.approx(0.2)}
    assert verdict(compare | {"margin": -0.9}, [a, b])["verdict"] == "not reproduced"  # 1.0 - 0.9 < 0.2
    correlation = {"claim": "r", "kind": "correlation", "by": "x", "metric": "m", "stat": "end", "sign": "negative"}
    assert verdict(correlation, [a, b])["verdict"] == "reproduced"
    pipeline = Run("0", Path("0"), {}, {}, {"s": {"accuracy": 0.6}, "t": {"accuracy": 0.4}})
    claim = {"claim": "p", "kind": "pipeline_compare", "metric": "accuracy", "left": "s", "op": ">", "right": "t"}
    assert verdict(claim, [pipeline])["verdict"] == "reproduced"
    assert verdict(claim | {"margin": -0.3}, [pipeline])["verdict"] == "not reproduced"  # 0.6 - 0.3 < 0.4
    seeds = [pipeline, Run("1", Path("1"), {}, {}, {"s": {"accuracy": 0.2}, "t": {"accuracy": 0.5}})]
    result = verdict(claim, seeds)  # means over the runs: 0.4 vs 0.45
    assert result["verdict"] == "not reproduced"
    assert result["evidence"]["s"] == pytest.approx(0.4) and result["evidence"]["t"] == pytest.approx(0.45)
    assert result["evidence"]["per run (s, t)"] == [(0.6, 0.4), (0.2, 0.5)]
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert split_values("[accuracy,format],[prm]") == ["[accuracy,format]", "[prm]"]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_each_sweep_smoke_runs_and_reports(name, tmp_path):
    folder = tmp_path / name
    swept = set(compose_sweep(name, hydra=True).hydra.sweeper.params)
    # distill_vs_rl: one seed's pipeline, its stages' own smoke settings (the full sweep runs three seeds)
    extra = (["stage.smoke=true", "seed=0"] if name == "distill_vs_rl"
             else [o for o in SMOKE if o.split("=")[0] not in swept])
    run_cli(["-m", "-cd", str(SWEEPS), "-cn", name, *extra, f"hydra.sweep.dir={folder}"], cwd=tmp_path)
    run_cli(["report", str(folder)], cwd=tmp_path)
    report = (folder / "report.md").read_text()
    claims = compose_sweep(name).r1lab_sweep.claims
    assert report.count("| **") == len(claims)  # one verdict row per claim, with its numbers
    for claim in claims:
        assert claim.claim in report
    header = next(line for line in report.splitlines() if line.startswith("| run |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    spec = compose_sweep(name).r1lab_sweep
    assert columns == ["run", *sorted(swept), *spec.metrics, "aha step", "steps"]  # constant overrides: no column
    run_rows = [line for line in report.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert len(run_rows) == RUNS[name]
    if compose_sweep(name).r1lab_sweep.metrics:
        assert list(folder.glob("*.png"))


def compose_sweep(name, hydra=False):
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        return compose(config_name=name, return_hydra_config=hydra)


def test_a_partial_sweep_reports_missing_runs_and_json(tmp_path):
    folder = tmp_path / "aha"
    run_cli(["-m", "-cd", str(SWEEPS), "-cn", "aha", *SMOKE, "seed=1,2",
             f"hydra.sweep.dir={folder}"], cwd=tmp_path)
    shutil.rmtree(folder / "1")  # a run that never finished
    run_cli(["report", str(folder), "--format", "json"], cwd=tmp_path)
    report = json.loads((folder / "report.json").read_text())
    assert [r["run"] for r in report["runs"]] == ["0"] and report["missing"] == [{"seed": "2"}]
    assert {v["claim"]: v["verdict"] for v in report["verdicts"]}["an aha step is found in every seed"] in (
        "reproduced", "not reproduced")


def test_launchers_compose():
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        slurm = compose(config_name="aha", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                                      "hydra.launcher.nodes=2"], return_hydra_config=True)
        joblib = compose(config_name="aha", overrides=["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                         return_hydra_config=True)
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher")
    assert (slurm.hydra.launcher.partition, slurm.hydra.launcher.nodes, slurm.hydra.launcher.gpus_per_node) == ("gpu", 2, 1)
    assert joblib.hydra.launcher._target_.endswith("JoblibLauncher") and joblib.hydra.launcher.n_jobs == 2


def test_joblib_runs_jobs_in_parallel_with_shared_threads(tmp_path):
    folder = tmp_path / "joblib"
    # threads=auto (the tests pin R1LAB_THREADS): joblib's jobs share the cores
    run_cli(["-m", "+experiment=r1_zero", "trainer.max_steps=1", *FAST, "seed=1,2", "hydra/launcher=joblib",
             "hydra.launcher.n_jobs=2", "threads=auto", f"hydra.sweep.dir={folder}"], cwd=tmp_path)
    logs = [(folder / job / "r1lab.log") for job in ("0", "1")]
    assert all((folder / job / "tb").is_dir() for job in ("0", "1"))
    expected = max(1, (os.cpu_count() or 1) // 2)
    assert all(f"torch threads: {expected}" in log.read_text() for log in logs)


def test_submitit_local_executor_runs_a_job(tmp_path):
    folder = tmp_path / "submitit"
    run_cli(["-m", "+experiment=r1_zero", "trainer.max_steps=1", *FAST, "seed=1", "hydra/launcher=submitit_local",
             "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={folder}"], cwd=tmp_path)
    assert (folder / "0" / "tb").is_dir()
