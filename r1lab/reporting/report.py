"""`python -m r1lab report <run dir>`: plots and a summary from a run's TensorBoard logs (a multirun folder:
r1lab/reporting/sweep_report.py, tables and verdicts per sweep)."""

from __future__ import annotations

from pathlib import Path

from r1lab.runs.scalars import REWARD_TERM_PREFIX, read_scalars, silent_reward_terms, silent_term_note, start_end
from r1lab.reporting.sweep_report import is_multirun, write_sweep_report

# The aha signature: what R1-Zero says rises together.
AHA_METRICS = (("aha/self_verify_rate", "self-verify rate"), ("train/completion_len", "completion length (tokens)"),
               ("train/accuracy_hard", "accuracy on the hardest problems"))
# Tags r1lab itself logs (the README's metrics table); any other prefix is a plugin's (lang/, prm/, mcts/, ...).
CORE_PREFIXES = ("train/", "aha/", "perf/", "diag/", "eval/")


def aha_step(scalars: dict[str, list[tuple[int, float]]]) -> int | None:
    points = scalars.get("aha/step")
    return int(points[0][1]) if points else None


def plot_aha(scalars: dict[str, list[tuple[int, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    moment = aha_step(scalars)
    figure, axes = plt.subplots(len(AHA_METRICS), 1, figsize=(7, 7.5), sharex=True)
    for axis, (tag, label) in zip(axes, AHA_METRICS):
        points = scalars.get(tag, [])
        axis.plot([s for s, _ in points], [v for _, v in points], lw=1.2)
        axis.set_ylabel(label, fontsize=8)
        if not points:
            axis.text(0.5, 0.5, f"{tag} not logged", transform=axis.transAxes, ha="center")
        if moment is not None:
            axis.axvline(moment, color="crimson", ls="--", lw=1)
    axes[0].set_title("aha moment" + (f" at step {moment}" if moment is not None else ": not detected"))
    axes[-1].set_xlabel("RL step")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def summary_markdown(run_dir: Path, scalars: dict[str, list[tuple[int, float]]]) -> str:
    moment = aha_step(scalars)
    lines = [f"# Run summary: {run_dir}", "",
             f"Aha moment: {'step ' + str(moment) if moment is not None else 'not detected'}", ""]
    tags = [t for t, _ in AHA_METRICS] + ["train/accuracy", "train/reward", "train/kl"]
    lines += start_end_table(scalars, tags)
    # Each reward term, and what plugins and curricula log: a plugin's own metric belongs in the summary too.
    extra = sorted(t for t in scalars if t.startswith(REWARD_TERM_PREFIX)) + \
        sorted(t for t in scalars if not t.startswith(CORE_PREFIXES))
    if extra:
        lines += ["", "Reward terms, curriculum and plugin metrics:", ""] + start_end_table(scalars, extra)
    notes = [silent_term_note(term) for term in silent_reward_terms(scalars)]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    heldout = scalars.get("eval/heldout_greedy", [])
    if heldout:  # callbacks.heldout: the final policy's value, and the starting policy's with before=true
        points = " → ".join(f"{value:.3f} (step {step})" for step, value in heldout)
        lines += ["", f"Held-out greedy accuracy (`eval/heldout_greedy`): {points}."]
    steps = max((s for series in scalars.values() for s, _ in series), default=-1) + 1
    lines += ["", f"Steps logged: {steps}.", ""]
    return "\n".join(lines)


def start_end_table(scalars: dict[str, list[tuple[int, float]]], tags: list[str]) -> list[str]:
    lines = ["| metric | start (first 5 steps) | end (last 5 steps) | change |", "|---|---|---|---|"]
    for tag in tags:
        if tag not in scalars:
            lines.append(f"| `{tag}` | missing | missing | |")
            continue
        values = start_end(scalars[tag])
        lines.append(f"| `{tag}` | {values.start:.3f} | {values.end:.3f} | {values.end - values.start:+.3f} |")
    return lines


def report_run(run_dir: Path) -> list[Path]:
    scalars = read_scalars(run_dir)
    plot_aha(scalars, run_dir / "aha.png")
    (run_dir / "summary.md").write_text(summary_markdown(run_dir, scalars))
    return [run_dir / "aha.png", run_dir / "summary.md"]


def main(args: list[str]) -> int:
    as_json = "--format" in args and args[args.index("--format") + 1:args.index("--format") + 2] == ["json"]
    folders = [a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or args[i - 1] != "--format")]
    if len(folders) != 1:
        print("usage: python -m r1lab report <run dir | multirun dir> [--format json]")
        return 2
    run_dir = Path(folders[0])
    try:
        if run_dir.is_dir() and not (run_dir / "tb").is_dir():
            if is_multirun(run_dir):
                for path in write_sweep_report(run_dir, as_json):
                    print(f"wrote {path}")
                return 0
        written = report_run(run_dir)
    except FileNotFoundError as exc:
        print(f"error: {exc}")
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0
