"""benchmarks/vs_trl.py in its smoke mode: both frameworks really run, and the table comes out."""

import json
import math
import subprocess
import sys

import pytest

from conftest import REPO


def test_vs_trl_smoke_writes_json_and_the_markdown_table(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "vs_trl.py"), "--smoke", "--out", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "vs_trl_smoke.json").read_text())
    assert set(report["rows"]) == {"toy fp32"}
    toy = report["rows"]["toy fp32"]
    assert (toy["model"], toy["precision"], toy["prompts"], toy["group"], toy["lora"]) == ("toy", "fp32", 8, 8, False)
    for framework in ("r1lab", "trl"):
        numbers = toy[framework]
        assert len(numbers["steps"]) == 2  # 1 warm-up + 1 timed, each really run
        assert 0 < numbers["step_s"]["min"] <= numbers["step_s"]["median"] <= numbers["step_s"]["max"]
        assert 0 < numbers["rollout_s_median"] < numbers["step_s"]["max"]
        assert numbers["completion_tokens_per_step"] > 0 and numbers["peak_rss_mb"] > 100
        # FLOPs are counted on the warm-up step only (the counter slows the step it watches)
        assert numbers["steps"][0]["flops"] > 0 and numbers["steps"][1]["flops"] == 0
        # at least the forward of every sampled token: 2 FLOPs per parameter per token
        assert numbers["gflop_per_step"] * 1e9 > 2 * toy["parameters"] * numbers["steps"][0]["completion_tokens"]
    # r1lab shares prompt passes and trims padding: less work than TRL for the same step
    assert toy["r1lab"]["gflop_per_step"] < toy["trl"]["gflop_per_step"]
    assert math.isclose(toy["speedup"], toy["trl"]["step_s"]["median"] / toy["r1lab"]["step_s"]["median"])
    floor = toy["floor"]
    assert floor["engine"] == "lean"
    assert 0 < floor["bare_lean_ms_per_decode_step"] and 0 < floor["model_forward_ms_per_decode_step"]
    assert math.isclose(floor["bare_lean_over_r1lab"],
                        floor["bare_lean_ms_per_decode_step"] / floor["r1lab_ms_per_decode_step"])
    assert 0 <= toy["r1lab"]["logprob_mismatch_mean_max"] < 1e-4  # fp32: sampler and trainer agree
    assert report["machine"]["torch_threads"] == 2
    assert set(report["machine"]["matmul_gflops_256"]) == {"float32", "bfloat16"}
    table = (tmp_path / "vs_trl_smoke.md").read_text()
    assert "| toy (0.87 M) | fp32 | 8 × 8 | r1lab |" in table and "| toy (0.87 M) | fp32 | 8 × 8 | trl |" in table
    assert "bare / r1lab" in table
    assert "TRL's FLOPs / r1lab's" in table


def test_bf16_rows_are_skipped_with_the_measured_rates_on_a_cpu_without_fast_bf16(tmp_path):
    from r1lab.engines.precision import bf16_is_slow_here

    if not bf16_is_slow_here():
        pytest.skip("this CPU multiplies bf16 faster than fp32: the bf16 rows run (benchmarks/vs_trl.py)")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "vs_trl.py"), "--models", "toy",
                             "--precisions", "bf16", "--out", str(tmp_path), "--stem", "bf16"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "bf16.json").read_text())
    assert report["rows"] == {} and "GFLOP/s against" in report["skipped"]["toy bf16"]
    assert "| toy bf16 | skipped: this CPU multiplies bf16" in (tmp_path / "bf16.md").read_text()


def test_gpu_check_smoke_runs_what_this_machine_has_and_skips_the_rest_with_reasons(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check_smoke.json").read_text())
    checks = report["checks"]
    for name in ("toy_r1_zero", "qwen0.5b_hf"):
        assert checks[name]["status"] == "ran", checks[name]
        assert checks[name]["steps"] == 2 and checks[name]["step_s_median"] > 0
        assert checks[name]["rollout_tokens_per_s"] > 0 and checks[name]["peak_mem_gb"] > 0.1
    if report["machine"]["gpus"] < 2:
        assert checks["toy_ddp"] == {"status": "skipped", "reason": f"needs 2 GPUs, found {report['machine']['gpus']}"}
    if "vllm" not in report["machine"]:
        assert checks["qwen0.5b_vllm"] == {"status": "skipped", "reason": "vllm not installed"}
    table = (tmp_path / "gpu_check_smoke.md").read_text()
    assert "| toy_r1_zero | ran |" in table and "| qwen0.5b_vllm | skipped |" in table
