"""r1lab's GRPO step against TRL's GRPOTrainer on the same model, prompts and settings, steps alternating.

    python benchmarks/vs_trl.py                      # toy base model and a ~10M-parameter Qwen2, 10 steps each
    python benchmarks/vs_trl.py --steps 20 --models toy
    python benchmarks/vs_trl.py --smoke              # 1 warm-up + 1 timed step, toy model only (CI)

Each framework runs its own, unmodified training loop in a worker process; a baton passed at every step
boundary lets exactly one of them run at a time (A B A B ...), so both see the same machine state. A step's
time is all the work between two baton hand-overs (rollout, reward, reference pass, loss, backward,
optimizer, logging). A third worker times a minimal PyTorch KV-cache sampling loop (the floor for rollout
cost) against r1lab's sampler on the same prompt batch. Results go to benchmarks/results/ as JSON and
markdown. Needs the benchmark extra: pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from machine_info import describe_machine  # benchmarks/, beside this script

# The shared settings of the comparison (the protocol).
PROMPTS, GROUP, MAX_NEW_TOKENS, TEMPERATURE, BETA, EPS, LR, THREADS, SEED = 8, 8, 64, 1.0, 0.04, 0.2, 3e-5, 2, 0
QWEN2_10M = {"model_type": "qwen2", "hidden_size": 384, "intermediate_size": 1024, "num_hidden_layers": 6,
             "num_attention_heads": 6, "num_key_value_heads": 2, "max_position_embeddings": 512,
             "tie_word_embeddings": True}


@dataclass
class StepTiming:
    step_s: float
    rollout_s: float
    completion_tokens: int
    flops: int = 0  # matrix-multiply FLOPs of the step, counted on one warm-up step only (counting costs time)


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource  # not Linux: ru_maxrss (bytes on macOS)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class Baton:
    """Step boundaries of a worker: report the finished step, then wait for the parent's go.

    Step `flop_step` (a warm-up step) runs under torch's FLOP counter: the work a step does, to compare
    with its time (a compute-bound step's speed is about its FLOPs over the machine's matmul rate).
    """

    def __init__(self, conn, flop_step: int = -1):
        self.conn, self.started, self.rollout_s, self.tokens = conn, None, 0.0, 0
        self.flop_step, self.step, self.counter = flop_step, -1, None

    def step_boundary(self) -> None:
        self.finish()
        if self.conn.recv() != "go":
            raise SystemExit(0)
        self.step += 1
        if self.step == self.flop_step:
            from torch.utils.flop_counter import FlopCounterMode

            self.counter = FlopCounterMode(display=False)
            self.counter.__enter__()
        self.started, self.rollout_s, self.tokens = time.perf_counter(), 0.0, 0

    def finish(self) -> None:
        if self.started is not None:
            elapsed, flops = time.perf_counter() - self.started, 0
            if self.counter is not None:
                self.counter.__exit__(None, None, None)
                flops, self.counter = self.counter.get_total_flops(), None
            self.conn.send(StepTiming(elapsed, self.rollout_s, self.tokens, flops))
            self.started = None


def task_rows(count: int) -> list[dict]:
    from r1lab.tasks.arithmetic import AdditionTask

    task = AdditionTask(name="toy_addition", num_problems=count, min_digits=2, max_digits=5,
                        digit_weights=[1, 1, 2, 4], seed=1234, prompt_template="User: {question}\nAssistant: <think>")
    return [task[i] for i in range(len(task))]


# ------------------------------------------------------------------------------------------- workers
def r1lab_worker(conn, model_dir: str, total_steps: int, out_dir: str, flop_step: int) -> None:
    import lightning.pytorch as pl
    import torch
    from hydra import compose, initialize_config_module
    from lightning.pytorch.callbacks import Callback
    from omegaconf import open_dict

    from r1lab.plugins import load_plugins, register_search_path
    from r1lab.stages.rl import rl_stage

    torch.set_num_threads(THREADS)
    load_plugins()
    register_search_path()
    with initialize_config_module(config_module="r1lab.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "+experiment=r1_zero", "model=hf", f"model.name_or_path={model_dir}", f"rl.prompts_per_step={PROMPTS}",
            f"sampler.group_size={GROUP}", f"sampler.max_new_tokens={MAX_NEW_TOKENS}",
            f"sampler.temperature={TEMPERATURE}", f"loss.beta={BETA}", f"loss.eps={EPS}", f"rl.optim.lr={LR}",
            f"trainer.max_steps={total_steps}", f"threads={THREADS}", f"seed={SEED}",
            "trainer.enable_progress_bar=false"])
    with open_dict(cfg):
        cfg.paths.output_dir = out_dir
    baton = Baton(conn, flop_step)

    class BatonCallback(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            baton.step_boundary()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            baton.rollout_s = outputs.metrics["perf/rollout_s"]
            baton.tokens = int(outputs.rollout.completion_lengths.sum())

        def on_train_end(self, trainer, pl_module):
            baton.finish()

    pl.seed_everything(SEED, verbose=False)
    rl_stage(cfg, callbacks=[BatonCallback()])
    conn.send({"peak_rss_mb": peak_rss_mb()})


def trl_worker(conn, model_dir: str, total_steps: int, out_dir: str, flop_step: int) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from r1lab.models.policy import load_tokenizer
    from r1lab.rewards.accuracy import AccuracyReward
    from r1lab.rewards.format import FormatReward
    from r1lab.samplers.hf import completion_mask_and_truncation

    torch.set_num_threads(THREADS)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = load_tokenizer(model_dir)  # PreTrainedTokenizerFast: AutoTokenizer mangles char tokenizers
    tokenizer.padding_side = "left"
    rows = task_rows(4000)
    dataset = Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"]} for r in rows])
    accuracy, formatted = AccuracyReward(), FormatReward()

    def accuracy_reward(prompts, completions, **kwargs):
        return accuracy(prompts, completions, answer=kwargs["answer"])

    def format_reward(prompts, completions, **kwargs):
        return formatted(prompts, completions)

    baton = Baton(conn, flop_step)
    generate = model.generate

    def timed_generate(*args, **kwargs):  # TRL calls the model's own generate; time it and count tokens
        started = time.perf_counter()
        sequences = generate(*args, **kwargs)
        baton.rollout_s += time.perf_counter() - started
        prompt_width = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else args[0].shape[1]
        mask, _ = completion_mask_and_truncation(sequences[:, prompt_width:], tokenizer.eos_token_id)
        baton.tokens += int(mask.sum())
        return sequences

    model.generate = timed_generate

    class BatonCallback(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            baton.step_boundary()

        def on_train_end(self, args, state, control, **kwargs):
            baton.finish()

    config = GRPOConfig(
        output_dir=out_dir, per_device_train_batch_size=PROMPTS * GROUP, num_generations=GROUP,
        max_completion_length=MAX_NEW_TOKENS, temperature=TEMPERATURE, beta=BETA, epsilon=EPS, num_iterations=1,
        loss_type="grpo", learning_rate=LR, lr_scheduler_type="constant", adam_beta2=0.99, max_grad_norm=1.0,
        # TRL's defaults turn on bf16 and gradient checkpointing: ~10x slower on a CPU without fast bf16.
        bf16=False, gradient_checkpointing=False, use_cpu=True, max_steps=total_steps, seed=SEED,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=model, reward_funcs=[accuracy_reward, format_reward], args=config,
                          train_dataset=dataset, processing_class=tokenizer, callbacks=[BatonCallback()])
    trainer.train()
    conn.send({"peak_rss_mb": peak_rss_mb()})


def floor_worker(conn, model_dir: str, repeats: int) -> None:
    """Alternate r1lab's sampler and a minimal KV-cache loop over the model's own forward, same prompts."""
    import torch

    from r1lab.models.policy import load_policy
    from r1lab.rollout import PromptBatch
    from r1lab.samplers.hf import HFSampler

    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    policy = load_policy(model_dir)
    model, tokenizer = policy.model.eval(), policy.tokenizer
    rows = task_rows(PROMPTS)
    batch = PromptBatch([r["prompt"] for r in rows], {"answer": [r["answer"] for r in rows]}, list(range(PROMPTS)))
    sampler = HFSampler(group_size=GROUP, temperature=TEMPERATURE, max_new_tokens=MAX_NEW_TOKENS)
    prompts, _ = batch.repeat(GROUP)
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)

    @torch.no_grad()
    def minimal_loop() -> int:
        out = model(**encoded, use_cache=True)
        cache, mask = out.past_key_values, encoded["attention_mask"]
        logits, done = out.logits[:, -1], torch.zeros(len(prompts), dtype=torch.bool)
        for step in range(MAX_NEW_TOKENS):
            token = torch.multinomial(torch.softmax(logits / TEMPERATURE, -1), 1).squeeze(-1)
            token = token.masked_fill(done, tokenizer.pad_token_id)
            done |= token == tokenizer.eos_token_id
            if done.all() or step + 1 == MAX_NEW_TOKENS:
                return step + 1
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            out = model(input_ids=token[:, None], attention_mask=mask, past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1]
        return MAX_NEW_TOKENS

    def r1lab_rollout() -> int:
        return sampler.rollout(model, tokenizer, batch).completion_mask.shape[1]

    results = {"floor": [], "r1lab": []}
    for index in range(repeats + 1):  # the first round warms up
        for name, fn in (("floor", minimal_loop), ("r1lab", r1lab_rollout)):
            started = time.perf_counter()
            decode_steps = fn()
            if index:
                results[name].append((time.perf_counter() - started) / decode_steps)
    conn.send({"engine": sampler.engine_for(model), **results})


# --------------------------------------------------------------------------------------------- driver
def prepare_model(name: str, folder: Path) -> str:
    """A model folder both frameworks load: the shipped toy base model, or a seeded random Qwen2."""
    from r1lab.models.policy import load_policy, resolve_package_path

    if name == "toy":
        return resolve_package_path("pkg://r1lab.toy/base_model")
    import torch

    torch.manual_seed(SEED)
    policy = load_policy(random_init=QWEN2_10M)
    target = folder / name
    policy.model.save_pretrained(target)
    policy.tokenizer.save_pretrained(target)
    return str(target)


def logged(target, log_file: str, *args) -> None:
    """Run a worker with its output in `log_file` (the parent prints tables only)."""
    with open(log_file, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        target(*args)


def start_worker(target, log_file: Path, *args):
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=logged, args=(target, str(log_file), child, *args), daemon=True)
    process.start()
    child.close()  # so that a worker that dies makes recv() fail instead of waiting forever
    return process, parent


def receive(conn, log_file: Path):
    try:
        return conn.recv()
    except EOFError:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:]) if log_file.exists() else ""
        raise RuntimeError(f"a benchmark worker died; the end of {log_file}:\n{tail}") from None


def run_alternating(model_dir: str, warmup: int, steps: int, work: Path, logs: Path, model: str) -> dict:
    workers = {}
    for name, target in (("r1lab", r1lab_worker), ("trl", trl_worker)):
        log_file = logs / f"{model}-{name}.log"
        workers[name] = (*start_worker(target, log_file, model_dir, warmup + steps, str(work / name), warmup - 1),
                         log_file)
    timings: dict[str, list[StepTiming]] = {name: [] for name in workers}
    for _ in range(warmup + steps):
        for name, (_, conn, log_file) in workers.items():  # A B A B: one framework runs at a time
            conn.send("go")
            timings[name].append(receive(conn, log_file))
    summary = {}
    for name, (process, conn, log_file) in workers.items():
        final = receive(conn, log_file)
        process.join(timeout=60)
        timed = timings[name][warmup:]
        step_s = [t.step_s for t in timed]
        summary[name] = {
            "step_s": {"min": min(step_s), "median": statistics.median(step_s), "max": max(step_s)},
            "rollout_s_median": statistics.median(t.rollout_s for t in timed),
            "rollout_tokens_per_s": sum(t.completion_tokens for t in timed) / max(sum(t.rollout_s for t in timed), 1e-9),
            "completion_tokens_per_step": statistics.mean(t.completion_tokens for t in timed),
            "peak_rss_mb": final["peak_rss_mb"],
            "gflop_per_step": max(t.flops for t in timings[name]) / 1e9,  # the counted warm-up step
            "steps": [asdict(t) for t in timings[name]],
        }
    summary["speedup"] = summary["trl"]["step_s"]["median"] / summary["r1lab"]["step_s"]["median"]
    return summary


def run_floor(model_dir: str, repeats: int, logs: Path, model: str) -> dict:
    log_file = logs / f"{model}-floor.log"
    process, conn = start_worker(floor_worker, log_file, model_dir, repeats)
    result = receive(conn, log_file)
    process.join(timeout=60)
    floor, ours = statistics.median(result["floor"]), statistics.median(result["r1lab"])
    return {"engine": result["engine"], "floor_ms_per_decode_step": 1e3 * floor,
            "r1lab_ms_per_decode_step": 1e3 * ours, "r1lab_over_floor": ours / floor}


def machine() -> dict:
    return describe_machine(THREADS, ("torch", "transformers", "trl"))


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [f"# r1lab vs TRL GRPOTrainer ({report['date']})", "",
             f"{s['prompts']} prompts × G {s['group_size']}, ≤ {s['max_new_tokens']} new tokens, T = {s['temperature']}, "
             f"β = {s['beta']}, μ = 1, fp32, {s['threads']} torch threads; {s['steps']} timed steps after "
             f"{s['warmup']} warm-up, alternating. Machine: {report['machine']['processor']}, "
             f"{report['machine']['cpu_count']} cores, torch {report['machine']['torch']}, transformers "
             f"{report['machine']['transformers']}, TRL {report['machine']['trl']}.", "",
             "| model | framework | step s (min / median / max) | rollout s | rollout tok/s | tokens/step | GFLOP/step |"
             " GFLOP/s | peak RSS MB | r1lab speed-up | TRL's FLOPs / r1lab's |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, result in report["models"].items():
        for framework in ("r1lab", "trl"):
            r = result[framework]
            t = r["step_s"]
            speed = f"**{result['speedup']:.2f}×**" if framework == "r1lab" else ""
            work = (f"{result['trl']['gflop_per_step'] / r['gflop_per_step']:.2f}×"
                    if framework == "r1lab" and r["gflop_per_step"] else "")
            lines.append(f"| {name} ({result['parameters'] / 1e6:.2f} M) | {framework} | {t['min']:.3f} / "
                         f"{t['median']:.3f} / {t['max']:.3f} | {r['rollout_s_median']:.3f} | "
                         f"{r['rollout_tokens_per_s']:,.0f} | {r['completion_tokens_per_step']:.0f} | "
                         f"{r['gflop_per_step']:.1f} | {r['gflop_per_step'] / t['median']:.0f} | "
                         f"{r['peak_rss_mb']:.0f} | {speed} | {work} |")
    lines += ["", "GFLOP/step: matrix-multiply FLOPs of one (warm-up) step, counted by torch.utils.flop_counter; "
              "GFLOP/s: that over the median step time. Where both frameworks reach the same GFLOP/s the step "
              "is compute-bound and the speed-up is the ratio of work done."]
    lines += ["", "Rollout cost against a minimal PyTorch KV-cache sampling loop over the model's own forward "
              "(same prompts, per decode step of the whole batch):", "",
              "| model | r1lab engine | floor ms/step | r1lab ms/step | r1lab / floor |", "|---|---|---|---|---|"]
    for name, result in report["models"].items():
        f = result["floor"]
        lines.append(f"| {name} | {f['engine']} | {f['floor_ms_per_decode_step']:.2f} | "
                     f"{f['r1lab_ms_per_decode_step']:.2f} | {f['r1lab_over_floor']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="toy,qwen2_10m", help="comma list of: toy, qwen2_10m")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per framework")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--floor-repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--smoke", action="store_true", help="1 warm-up + 1 step on the toy model (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.models, args.steps, args.warmup, args.floor_repeats = "toy", 1, 1, 1
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(names) - {"toy", "qwen2_10m"})
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from toy, qwen2_10m")
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "models": {},
              "settings": {"prompts": PROMPTS, "group_size": GROUP, "max_new_tokens": MAX_NEW_TOKENS,
                           "temperature": TEMPERATURE, "beta": BETA, "eps": EPS, "lr": LR, "threads": THREADS,
                           "steps": args.steps, "warmup": args.warmup}}
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="r1lab-bench-") as tmp:
        for name in names:
            model_dir = prepare_model(name, Path(tmp))
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(model_dir)
            print(f"[{name}] alternating {args.warmup}+{args.steps} steps of r1lab and TRL ...", flush=True)
            result = run_alternating(model_dir, args.warmup, args.steps, Path(tmp) / f"runs-{name}", logs, name)
            result["floor"] = run_floor(model_dir, args.floor_repeats, logs, name)
            result["parameters"] = _parameters(model_dir, config)
            report["models"][name] = result
    stem = "vs_trl_smoke" if args.smoke else "vs_trl"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return report


def _parameters(model_dir: str, config) -> int:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(config).num_parameters()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
