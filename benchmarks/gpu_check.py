"""The scale path on a GPU machine, in one go: what runs, how fast, and how much memory it takes.

    python benchmarks/gpu_check.py            # on a GPU machine (writes results/gpu_check.{json,md})
    python benchmarks/gpu_check.py --smoke    # the same checks shrunk to seconds, on whatever is here (CI)

Checks, each an ordinary `python -m r1lab` run whose TensorBoard scalars are read back:
- `toy_r1_zero`: the default experiment (toy model) on one GPU;
- `qwen0.5b_hf`: a randomly initialised model of Qwen2.5-0.5B's shape (no weights can be downloaded) with
  `sampler=hf`, 8 prompts × G 8, 256 new tokens;
- `qwen0.5b_vllm`: the same with `sampler=vllm`, when vLLM imports;
- `qwen0.5b_zero2`: the same with `trainer=deepspeed_zero2`, when DeepSpeed imports;
- `toy_ddp`: `trainer=ddp` over every GPU, when there are two or more.
A check whose package or hardware is missing is recorded as skipped with the reason, never as passed.
Reported per check: median step time after the first step, rollout tokens/s, peak memory (GPU memory
allocated by torch; resident memory on a CPU), the log-prob mismatch where the sampler reports one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

QWEN = "model=qwen2_0_5b_random"
THROUGHPUT = ["rl.prompts_per_step=8", "sampler.group_size=8", "sampler.max_new_tokens=256"]


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def checks(smoke: bool, gpus: int) -> list[dict]:
    trainer = ["trainer=gpu"] if gpus else ["trainer=cpu"]
    steps = ["trainer.max_steps=2"] if smoke else []
    model = ["model=tiny_random"] if smoke else [QWEN]
    size = ["rl.prompts_per_step=2", "sampler.group_size=2", "sampler.max_new_tokens=8"] if smoke else THROUGHPUT
    has_vllm, has_deepspeed = (importlib.util.find_spec(p) is not None for p in ("vllm", "deepspeed"))
    return [
        {"name": "toy_r1_zero", "args": ["+experiment=r1_zero", *trainer, *(steps or ["trainer.max_steps=20"])]},
        {"name": "qwen0.5b_hf", "args": [*model, *trainer, *size, *(steps or ["trainer.max_steps=5"])]},
        {"name": "qwen0.5b_vllm",
         "args": [*model, *trainer, *size, "sampler=vllm", *(steps or ["trainer.max_steps=5"])],
         "skip": None if has_vllm and gpus else "vllm not installed" if not has_vllm else "no GPU"},
        {"name": "qwen0.5b_zero2", "args": [*model, "trainer=deepspeed_zero2", "trainer.devices=1", *size,
                                            *(steps or ["trainer.max_steps=5"])],
         "skip": None if has_deepspeed and gpus else "deepspeed not installed" if not has_deepspeed else "no GPU"},
        {"name": "toy_ddp", "args": ["+experiment=r1_zero", "trainer=ddp", *(steps or ["trainer.max_steps=20"])],
         "skip": None if gpus >= 2 else f"needs 2 GPUs, found {gpus}"},
    ]


def run_check(check: dict, work: Path) -> dict:
    if check.get("skip"):
        return {"status": "skipped", "reason": check["skip"]}
    run_dir = work / check["name"]
    command = [sys.executable, "-m", "r1lab", *check["args"], "trainer.enable_progress_bar=false",
               f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=work)
    out = {"command": " ".join(command[2:]), "wall_s": time.perf_counter() - started}
    if result.returncode != 0:
        return out | {"status": "failed", "reason": (result.stderr or result.stdout)[-2000:]}
    from r1lab.runs.scalars import read_scalars

    scalars = read_scalars(run_dir)

    def values(tag: str) -> list[float]:
        return [v for _, v in scalars.get(tag, [])]

    step_s = values("perf/step_s")
    timed = step_s[1:] or step_s  # the first step pays for compilation and allocation
    mismatch = values("perf/logprob_mismatch")
    return out | {"status": "ran", "steps": len(step_s), "step_s_median": statistics.median(timed),
                  "rollout_tokens_per_s": statistics.median(values("perf/rollout_tokens_per_s")[1:] or
                                                            values("perf/rollout_tokens_per_s")),
                  "peak_mem_gb": max(values("perf/peak_mem_gb")),
                  "logprob_mismatch_max": max(mismatch) if mismatch else None,
                  "final_accuracy": values("train/accuracy")[-1]}


def machine(gpus: int) -> dict:
    import torch
    import transformers

    info = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "gpus": gpus}
    if gpus:
        info["gpu"] = torch.cuda.get_device_name(0)
    for package in ("vllm", "deepspeed"):
        if importlib.util.find_spec(package) is not None:
            info[package] = __import__(package).__version__
    return info


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# r1lab GPU check ({report['date']})", "",
             f"Machine: {m.get('gpu', 'no GPU')} × {m['gpus']}, {m['cpu_count']} CPU cores, torch {m['torch']}, "
             f"transformers {m['transformers']}, vLLM {m.get('vllm', '-')}, DeepSpeed {m.get('deepspeed', '-')}.", "",
             "| check | status | step s (median) | rollout tok/s | peak memory GB | log-prob mismatch | note |",
             "|---|---|---|---|---|---|---|"]
    for name, r in report["checks"].items():
        if r["status"] == "ran":
            mismatch = "-" if r["logprob_mismatch_max"] is None else f"{r['logprob_mismatch_max']:.3g}"
            lines.append(f"| {name} | ran | {r['step_s_median']:.3f} | {r['rollout_tokens_per_s']:,.0f} | "
                         f"{r['peak_mem_gb']:.2f} | {mismatch} | {r['steps']} steps |")
        else:
            reason = r["reason"].strip().splitlines()[-1] if r["reason"].strip() else ""
            lines.append(f"| {name} | {r['status']} | - | - | - | - | {reason[:160]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="2 steps of tiny models: checks the script itself")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--work", type=Path, default=None, help="where the runs go (default: OUT/gpu_check_runs)")
    args = parser.parse_args(argv)
    gpus = gpu_count()
    stem = "gpu_check_smoke" if args.smoke else "gpu_check"
    work = (args.work or args.out / f"{stem}_runs").resolve()
    work.mkdir(parents=True, exist_ok=True)
    report = {"date": dt.date.today().isoformat(), "smoke": args.smoke, "machine": machine(gpus), "checks": {}}
    for check in checks(args.smoke, gpus):
        report["checks"][check["name"]] = run_check(check, work)
        print(check["name"], report["checks"][check["name"]]["status"], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
