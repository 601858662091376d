"""benchmarks/vs_trl.py in its smoke mode: both frameworks really run, and the table comes out."""

import json
import math
import subprocess
import sys

from conftest import REPO


def test_vs_trl_smoke_writes_json_and_the_markdown_table(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "vs_trl.py"), "--smoke", "--out", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "vs_trl_smoke.json").read_text())
    toy = report["models"]["toy"]
    for framework in ("r1lab", "trl"):
        numbers = toy[framework]
        assert len(numbers["steps"]) == 2  # 1 warm-up + 1 timed, each really run
        assert 0 < numbers["step_s"]["min"] <= numbers["step_s"]["median"] <= numbers["step_s"]["max"]
        assert 0 < numbers["rollout_s_median"] < numbers["step_s"]["max"]
        assert numbers["completion_tokens_per_step"] > 0 and numbers["peak_rss_mb"] > 100
    assert math.isclose(toy["speedup"], toy["trl"]["step_s"]["median"] / toy["r1lab"]["step_s"]["median"])
    assert toy["floor"]["engine"] == "lean" and toy["floor"]["r1lab_over_floor"] > 0
    assert report["machine"]["torch_threads"] == 2
    table = (tmp_path / "vs_trl_smoke.md").read_text()
    assert "| toy (0.87 M) | r1lab |" in table and "| toy (0.87 M) | trl |" in table and "r1lab / floor" in table
