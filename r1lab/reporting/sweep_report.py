"""`python -m r1lab report <multirun dir>`: one table per sweep, the verdict on each claim, plots.

A sweep file (sweeps/*.yaml) declares its claims as data under `r1lab_sweep`; every run's composed config
carries them, so the report needs nothing but the folder. Claim kinds:

- `every_run`: `stat(metric) op value` in every run (optionally only runs `where` overrides match);
  `test: exists` asks that the metric was logged at all (e.g. aha/step).
- `compare`: runs grouped by the override `by`; `mean stat(metric)` of group `left` + `margin` op that of
  `right` ("left >= right - 0.1" is `op: ">="`, `margin: 0.1`).
- `correlation`: the Spearman sign of (value of `by`, stat(metric)) across runs is `sign`.
- `pipeline_compare`: in pipeline runs' pipeline.json, stage `left`'s `metric` (+ `margin`) op stage `right`'s,
  as means over the pipeline runs (e.g. one per seed).

Stats: `end` (mean of the last 5 logged values), `start` (first 5), `change` (end − start), `mean`.
Runs Hydra planned but that left no metrics are listed as missing; a claim without data says so.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from r1lab.runs.scalars import read_scalars, silent_reward_terms, silent_term_note, start_end

OPS = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}


@dataclass
class Run:
    name: str
    path: Path
    overrides: dict[str, str]
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    pipeline: dict[str, Any] | None = None

    def stat(self, metric: str, how: str = "end") -> float:
        series = self.scalars.get(metric)
        if not series:
            return math.nan
        values = start_end(series)
        finite = [v for _, v in series if math.isfinite(v)]
        return {"end": values.end, "start": values.start, "change": values.end - values.start,
                "mean": sum(finite) / len(finite) if finite else math.nan}[how]


def is_multirun(folder: Path) -> bool:
    return (folder / "multirun.yaml").is_file() or any((p / ".hydra" / "overrides.yaml").is_file()
                                                       for p in folder.iterdir() if p.is_dir())


def parse_overrides(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        key, _, value = line.partition("=")
        out[key] = value
    return out


def load_runs(folder: Path) -> list[Run]:
    runs = []
    for path in sorted((p for p in folder.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()),
                       key=lambda p: (len(p.name), p.name)):
        overrides = parse_overrides(yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or [])
        run = Run(path.name, path, overrides)
        if (path / "tb").is_dir():
            run.scalars = read_scalars(path)
        if (path / "pipeline.json").is_file():
            run.pipeline = json.loads((path / "pipeline.json").read_text())
        runs.append(run)
    return runs


def sweep_spec(folder: Path, runs: list[Run]) -> dict[str, Any]:
    for source in [run.path / ".hydra" / "config.yaml" for run in runs] + [folder / "multirun.yaml"]:
        if source.is_file():
            spec = (yaml.safe_load(source.read_text()) or {}).get("r1lab_sweep")
            if spec:
                return spec
    return {"name": folder.name, "metrics": ["train/accuracy", "train/reward"], "claims": []}


def planned_jobs(folder: Path) -> list[dict[str, str]]:
    """The override combinations Hydra's basic sweeper planned (from multirun.yaml), in job order."""
    file = folder / "multirun.yaml"
    if not file.is_file():
        return []
    hydra = (yaml.safe_load(file.read_text()) or {}).get("hydra", {})
    params = dict((hydra.get("sweeper") or {}).get("params") or {})
    for override in (hydra.get("overrides") or {}).get("task", []):
        key, _, value = override.partition("=")
        if "," in value and not value.startswith("["):
            params[key] = value
    if not params:
        return []
    keys = list(params)
    values = [split_values(str(params[k])) for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def split_values(text: str) -> list[str]:
    """"a,b" → [a, b]; "[x,y],[z]" → ["[x,y]", "[z]"] (commas inside brackets stay)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return [p.strip('"').strip("'") for p in parts if p]


def matches(run: Run, where: dict[str, Any] | None) -> bool:
    return all(run.overrides.get(k) == str(v) for k, v in (where or {}).items())


def spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sx, sy = math.sqrt(sum((a - mx) ** 2 for a in rx)), math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (sx * sy) if sx and sy else math.nan


def verdict(claim: dict[str, Any], runs: list[Run]) -> dict[str, Any]:
    """{claim, verdict: reproduced | not reproduced | no data, evidence: the numbers}."""
    kind, metric, how = claim["kind"], claim.get("metric"), claim.get("stat", "end")
    out: dict[str, Any] = {"claim": claim["claim"], "kind": kind}
    if kind == "every_run":
        chosen = [r for r in runs if matches(r, claim.get("where")) and r.scalars]
        if claim.get("test") == "exists":
            evidence = {r.name: (r.scalars[metric][0][1] if metric in r.scalars else None) for r in chosen}
            ok = bool(chosen) and all(v is not None for v in evidence.values())
        else:
            evidence = {r.name: r.stat(metric, how) for r in chosen}
            finite = [v for v in evidence.values() if math.isfinite(v)]
            ok = bool(finite) and len(finite) == len(evidence) and all(
                OPS[claim["op"]](v, float(claim["value"])) for v in finite)
        out |= {"evidence": evidence, "ok": ok, "data": bool(chosen)}
    elif kind == "compare":
        groups = {}
        for side in ("left", "right"):
            values = [r.stat(metric, how) for r in runs if r.overrides.get(claim["by"]) == str(claim[side])]
            values = [v for v in values if math.isfinite(v)]
            groups[side] = sum(values) / len(values) if values else math.nan
        data = all(math.isfinite(v) for v in groups.values())
        ok = data and OPS[claim["op"]](groups["left"] + float(claim.get("margin", 0.0)), groups["right"])
        out |= {"evidence": {f"{claim['by']}={claim['left']}": groups["left"],
                             f"{claim['by']}={claim['right']}": groups["right"]}, "ok": ok, "data": data}
    elif kind == "correlation":
        pairs = [(float(r.overrides[claim["by"]]), r.stat(metric, how)) for r in runs if claim["by"] in r.overrides]
        pairs = [(x, y) for x, y in pairs if math.isfinite(y)]
        rho = spearman([x for x, _ in pairs], [y for _, y in pairs]) if len(pairs) >= 2 else math.nan
        data = math.isfinite(rho)
        ok = data and (rho < 0 if claim["sign"] == "negative" else rho > 0)
        out |= {"evidence": {"spearman": rho, "points": pairs}, "ok": ok, "data": data}
    elif kind == "pipeline_compare":
        # Each pipeline run (e.g. one per seed) gives a pair; the claim is about their means.
        pairs = [tuple(r.pipeline.get(claim[s], {}).get(metric, math.nan) for s in ("left", "right"))
                 for r in runs if r.pipeline]
        pairs = [p for p in pairs if all(math.isfinite(v) for v in p)]
        data = bool(pairs)
        left, right = ((sum(p[i] for p in pairs) / len(pairs)) if data else math.nan for i in (0, 1))
        evidence = {claim["left"]: left, claim["right"]: right}
        if len(pairs) > 1:
            evidence[f"per run ({claim['left']}, {claim['right']})"] = pairs
        out |= {"evidence": evidence,
                "ok": data and OPS[claim["op"]](left + float(claim.get("margin", 0.0)), right), "data": data}
    else:
        raise ValueError(f"unknown claim kind {kind!r}; use every_run, compare, correlation or pipeline_compare")
    out["verdict"] = "no data" if not out.pop("data") else ("reproduced" if out.pop("ok") else "not reproduced")
    out.pop("ok", None)
    return out


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    if isinstance(value, (list, tuple)):  # e.g. a correlation's (x, y) points
        inner = ", ".join(fmt(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return str(value)


def swept_keys(runs: list[Run], planned: list[dict[str, str]]) -> list[str]:
    """The overrides that vary: the sweeper's parameters, and any override whose value differs between runs
    (a constant CLI override such as trainer.enable_progress_bar=false is not a column)."""
    keys = {k for job in planned for k in job}
    for key in {k for r in runs for k in r.overrides}:
        if len({r.overrides.get(key) for r in runs}) > 1:
            keys.add(key)
    return sorted(keys)


def sweep_report(folder: Path) -> dict[str, Any]:
    runs = load_runs(folder)
    spec = sweep_spec(folder, runs)
    swept = swept_keys(runs, planned_jobs(folder))
    missing = [job for job in planned_jobs(folder)
               if not any(all(r.overrides.get(k) == v for k, v in job.items()) and (r.scalars or r.pipeline)
                          for r in runs)]
    table = []
    for run in runs:
        row = {"run": run.name, **{k: run.overrides.get(k, "") for k in swept}}
        row |= {metric: run.stat(metric, "end") for metric in spec.get("metrics", [])}
        aha = run.scalars.get("aha/step")
        row["aha step"] = int(aha[0][1]) if aha else None
        row["steps"] = max((s for series in run.scalars.values() for s, _ in series), default=-1) + 1
        table.append(row)
    return {"sweep": spec.get("name", folder.name), "folder": str(folder), "swept": swept, "runs": table,
            "missing": missing, "verdicts": [verdict(c, runs) for c in spec.get("claims", [])], "spec": spec,
            "notes": sweep_notes(runs, swept), "_runs": runs}


def sweep_notes(runs: list[Run], swept: list[str]) -> list[str]:
    """What makes part of a sweep unable to show anything: a reward term that was 0 in every run (its weight,
    swept or not, changed nothing)."""
    logged = [run for run in runs if run.scalars]
    silent = set.intersection(*(set(silent_reward_terms(run.scalars)) for run in logged)) if logged else set()
    notes = []
    for term in sorted(silent):
        swept_weight = f"reward.{term}.weight" in swept
        note = silent_term_note(term).replace("at every step", "at every step of every run")
        notes.append(note + (f"; sweeping reward.{term}.weight cannot show anything" if swept_weight else ""))
    return notes


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Sweep `{report['sweep']}`", "", f"Folder: {report['folder']}", ""]
    if report["runs"]:
        keys = list(report["runs"][0])
        lines += ["| " + " | ".join(keys) + " |", "|---" * len(keys) + "|"]
        lines += ["| " + " | ".join(fmt(row[k]) for k in keys) + " |" for row in report["runs"]]
    for job in report["missing"]:
        lines.append("| missing | " + ", ".join(f"{k}={v}" for k, v in job.items()) + " |")
    lines += ["", "Metrics are means of each run's last 5 logged values."]
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    if report["verdicts"]:
        lines += ["", "## Verdicts", "", "| claim | verdict | numbers |", "|---|---|---|"]
        for v in report["verdicts"]:
            numbers = ", ".join(f"{k}: {fmt(x)}" for k, x in v["evidence"].items())
            lines.append(f"| {v['claim']} | **{v['verdict']}** | {numbers} |")
    else:
        lines += ["", "No claims to judge: a sweep file's `r1lab_sweep.claims` list adds verdicts "
                      "(README, 'Running a sweep')."]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    runs: list[Run] = report["_runs"]
    for metric in report["spec"].get("metrics", []):
        figure, axis = plt.subplots(figsize=(7, 4))
        for run in runs:
            points = run.scalars.get(metric, [])
            label = ", ".join(f"{k}={run.overrides.get(k, '')}" for k in report["swept"]) or run.name
            axis.plot([s for s, _ in points], [v for _, v in points], lw=1, label=label)
        axis.set_title(metric)
        axis.set_xlabel("RL step")
        if runs:
            axis.legend(fontsize=6)
        path = folder / f"{metric.replace('/', '_')}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    heat = report["spec"].get("heatmap")
    if heat:
        facets = sorted({r.overrides.get(heat["facet"], "") for r in runs}, key=_number)
        xs = sorted({r.overrides.get(heat["x"]) for r in runs if heat["x"] in r.overrides}, key=_number)
        ys = sorted({r.overrides.get(heat["y"]) for r in runs if heat["y"] in r.overrides}, key=_number)
        if xs and ys:
            figure, axes = plt.subplots(1, len(facets), figsize=(4 * len(facets), 3.5), squeeze=False)
            for axis, facet in zip(axes[0], facets):
                grid = [[next((r.stat(heat["metric"], "end") for r in runs if r.overrides.get(heat["x"]) == x
                               and r.overrides.get(heat["y"]) == y and r.overrides.get(heat["facet"], "") == facet),
                              math.nan) for x in xs] for y in ys]
                image = axis.imshow(grid, cmap="viridis", origin="lower")
                axis.set_xticks(range(len(xs)), xs)
                axis.set_yticks(range(len(ys)), ys)
                axis.set_xlabel(heat["x"])
                axis.set_ylabel(heat["y"])
                axis.set_title(f"{heat['facet']}={facet}", fontsize=9)
                figure.colorbar(image, ax=axis)
            figure.suptitle(heat["metric"])
            path = folder / "heatmap.png"
            figure.tight_layout()
            figure.savefig(path, dpi=100)
            plt.close(figure)
            written.append(path)
    return written


def _number(value: str | None):
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))


def write_sweep_report(folder: Path, as_json: bool = False) -> list[Path]:
    report = sweep_report(folder)
    written = plot(report, folder)
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    if as_json:
        path = folder / "report.json"
        path.write_text(json.dumps(public, indent=2, default=str))
    else:
        path = folder / "report.md"
        path.write_text(markdown(report))
    return [path, *written]
