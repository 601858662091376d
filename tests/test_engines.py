"""The scale path's engines on CPU ranks: DeepSpeed ZeRO-2 and ZeRO-3 and FSDP2 (two gloo processes each),
FSDP1's refusal of CPUs (checked against torch itself), two "nodes" of one process on localhost, and a
SLURM-style job that hits its time limit, is requeued by submitit and continues with resume=auto.

Each multi-process run logs the same metrics as one process with the same global batch and seed
(sampler.seeding=per_prompt: completions do not depend on the number of ranks). Outside the default run (they
would push it past 20 minutes): FSDP2, two nodes and the SLURM requeue with `python -m pytest -m distributed`
(about 2.5 minutes); DeepSpeed, after `pip install -e ".[deepspeed]"`, with `python -m pytest -m deepspeed`."""

import importlib.util
import os
import socket
import subprocess
import sys

import pytest
import torch

from conftest import compose_config, read_scalars, run_cli
from r1lab.engines.strategies import FSDP_ON_CPU, build_strategy

COMMON = ["+experiment=r1_zero", "trainer.enable_progress_bar=false", "rl.prompts_per_step=4", "sampler.group_size=4",
          "sampler.max_new_tokens=24", "sampler.seeding=per_prompt", "threads=1", "callbacks.diagnostics=null"]
CPU_RANKS = ["trainer.accelerator=cpu", "trainer.precision=32-true"]
TAGS = ["train/reward", "train/accuracy", "train/completion_len", "train/loss", "train/kl", "train/grad_norm"]

needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="needs DeepSpeed: pip install -e '.[deepspeed]'")


@pytest.fixture(scope="module")
def one_process_dir(tmp_path_factory):
    """The reference: 5 RL steps in one process (tests compare the first 3, or all 5 after a resume)."""
    folder = tmp_path_factory.mktemp("one")
    run_cli([*COMMON, "trainer.max_steps=5", f"hydra.run.dir={folder}"], cwd=folder)
    return folder


@pytest.fixture(scope="module")
def one_process(one_process_dir):
    return read_scalars(one_process_dir)


def assert_same_policy(reference_dir, run_dir):
    """The saved policies (whole models, gathered from the shards) hold the same weights."""
    from transformers import AutoModelForCausalLM

    expected = AutoModelForCausalLM.from_pretrained(reference_dir / "policy").state_dict()
    got = AutoModelForCausalLM.from_pretrained(run_dir / "policy").state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert got[name].shape == tensor.shape, name
        assert torch.allclose(got[name], tensor, atol=1e-5), name


def assert_same_metrics(reference, run, steps):
    for tag in TAGS:
        expected = [v for step, v in reference[tag] if step < steps]
        got = [v for _, v in run[tag]]
        assert len(got) == len(expected) == steps, tag
        assert got == pytest.approx(expected, rel=1e-3, abs=1e-5), tag


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ DeepSpeed
@pytest.mark.deepspeed
@needs_deepspeed
def test_deepspeed_zero2_on_two_cpu_ranks_matches_one_process(tmp_path, one_process):
    run = tmp_path / "zero2"
    run_cli([*COMMON, *CPU_RANKS, "trainer=deepspeed_zero2", "trainer.devices=2", "trainer.max_steps=3",
             f"hydra.run.dir={run}"], cwd=tmp_path)
    assert_same_metrics(one_process, read_scalars(run), 3)
    assert (run / "checkpoints" / "last.ckpt" / "latest").is_file()  # DeepSpeed's own checkpoint folder


@pytest.mark.deepspeed
@needs_deepspeed
def test_deepspeed_zero3_matches_one_process_saves_a_whole_policy_and_resumes(tmp_path, one_process_dir,
                                                                             one_process):
    """ZeRO-3 shards the parameters: the rollout gathers them once (with DeepSpeed's fetch hooks off, which
    otherwise abort the run when ranks decode different numbers of tokens), the saved policy is gathered into
    one loadable model, and a resumed run continues with the same metrics as the uninterrupted one."""
    run = tmp_path / "zero3"
    zero3 = [*COMMON, *CPU_RANKS, "trainer=deepspeed_zero3", "trainer.devices=2", f"hydra.run.dir={run}"]
    run_cli([*zero3, "trainer.max_steps=3"], cwd=tmp_path)
    assert_same_metrics(one_process, read_scalars(run), 3)
    shards = sorted(p.name for p in (run / "checkpoints" / "last.ckpt" / "checkpoint").iterdir())
    assert "zero_pp_rank_1_mp_rank_00_model_states.pt" in shards  # each rank saved its own shard

    run_cli([*zero3, "trainer.max_steps=5", "resume=auto"], cwd=tmp_path)
    assert_same_metrics(one_process, read_scalars(run), 5)
    assert_same_policy(one_process_dir, run)


# ----------------------------------------------------------------------------------------------------- FSDP
def test_fsdp_on_cpu_is_refused_with_the_reason_and_the_alternatives():
    with pytest.raises(ValueError) as refused:
        build_strategy(compose_config(["trainer=fsdp"]).trainer.strategy, accelerator="cpu")
    assert str(refused.value) == FSDP_ON_CPU
    assert all(option in FSDP_ON_CPU for option in ("trainer=fsdp2", "trainer=deepspeed_zero3", "trainer=ddp"))


def test_torch_itself_refuses_fsdp_on_cpu(tmp_path):
    """The reason r1lab gives, checked at its source: torch's FullyShardedDataParallel on a CPU (gloo) process
    group. When torch starts accepting CPUs this test fails, and trainer=fsdp can be let through."""
    script = tmp_path / "fsdp_on_cpu.py"
    script.write_text(
        "import torch, torch.distributed as dist\n"
        "from torch.distributed.fsdp import FullyShardedDataParallel\n"
        f"dist.init_process_group('gloo', init_method='tcp://127.0.0.1:{free_port()}', rank=0, world_size=1)\n"
        "try:\n"
        "    FullyShardedDataParallel(torch.nn.Linear(4, 4))\n"
        "    print('accepted')\n"
        "except RuntimeError as exc:\n"
        "    print('refused:', exc)\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert "refused: FSDP needs a non-CPU accelerator device" in result.stdout, result.stdout + result.stderr


@pytest.mark.distributed
def test_fsdp2_on_two_cpu_ranks_matches_one_process_saves_a_whole_policy_and_resumes(tmp_path, one_process_dir,
                                                                                    one_process):
    """trainer=fsdp2 (torch's fully_shard through Lightning's ModelParallelStrategy) runs on CPU: every policy
    parameter is a DTensor sharded over both ranks, rollouts gather each unit once, and the run logs the
    same metrics as one process, saves the same policy and resumes where it stopped."""
    run = tmp_path / "fsdp2"
    fsdp2 = [*COMMON, *CPU_RANKS, "trainer=fsdp2", "trainer.devices=2", f"hydra.run.dir={run}"]
    run_cli([*fsdp2, "trainer.max_steps=3"], cwd=tmp_path)
    assert_same_metrics(one_process, read_scalars(run), 3)
    log = (run / "r1lab.log").read_text()
    total = log.split("FSDP2: ")[1].split(" of ")[1].split(" ")[0]
    assert f"FSDP2: {total} of {total} policy parameters sharded over 2 ranks" in log

    run_cli([*fsdp2, "trainer.max_steps=5", "resume=auto"], cwd=tmp_path)
    assert_same_metrics(one_process, read_scalars(run), 5)
    assert_same_policy(one_process_dir, run)


def test_the_fsdp_preset_on_cpu_stops_with_the_explanation(tmp_path):
    result = run_cli([*COMMON, *CPU_RANKS, "trainer=fsdp", "trainer.devices=2", "trainer.max_steps=1",
                      f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "trainer=fsdp cannot run on CPU processes" in result.stderr


# ----------------------------------------------------------------------------------------------- multi-node
@pytest.mark.distributed
def test_two_nodes_of_one_process_each_match_one_process(tmp_path, one_process):
    """trainer=multinode as 2 nodes × 1 process on localhost: each "node" is started by hand, as a cluster's
    launcher would, with Lightning's variables (MASTER_ADDR, MASTER_PORT, NODE_RANK); both share the run dir."""
    run = tmp_path / "two_nodes"
    args = [*COMMON, *CPU_RANKS, "trainer=multinode", "trainer.num_nodes=2", "trainer.devices=1",
            "trainer.max_steps=3", f"hydra.run.dir={run}"]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    second = subprocess.Popen([sys.executable, "-m", "r1lab", *args], cwd=tmp_path, env={**env, "NODE_RANK": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        run_cli(args, cwd=tmp_path, env={"MASTER_ADDR": env["MASTER_ADDR"], "MASTER_PORT": env["MASTER_PORT"],
                                         "NODE_RANK": "0"})
        output, _ = second.communicate(timeout=120)
    finally:
        second.kill()
    assert second.returncode == 0, output
    assert_same_metrics(one_process, read_scalars(run), 3)
    # Each node's process logs to its own file in the shared run directory.
    assert (run / "r1lab.log").is_file() and (run / "node_1_rank_0.log").is_file()
    assert "torch threads" in (run / "node_1_rank_0.log").read_text()


# -------------------------------------------------------------------------------------------- SLURM requeue
@pytest.mark.distributed
def test_a_job_at_its_time_limit_is_requeued_and_continues_where_it_stopped(tmp_path):
    """Through submitit's local executor, which behaves as on SLURM: 30 s before the 1-minute limit it sends
    SIGUSR2; r1lab checkpoints and stops, submitit requeues the job, which resumes (resume=auto) and finishes.
    200 steps take about twice one attempt's 30 s here (and up to 3 requeues are allowed)."""
    sweep = tmp_path / "sweep"
    run_cli(["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=1", "+experiment=r1_zero",
             "trainer.enable_progress_bar=false", "rl.prompts_per_step=4", "sampler.group_size=4",
             "sampler.max_new_tokens=24", "threads=1", "callbacks.diagnostics=null", "trainer.max_steps=200",
             "resume=auto", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    job_log = (sweep / "0" / "r1lab.log").read_text()
    assert "stopped by SIGUSR2 after step" in job_log and "Requeued job" in job_log
    assert "Job completed successfully" in job_log
    steps = [step for step, _ in read_scalars(sweep / "0")["train/reward"]]
    assert steps == list(range(200))  # every step once: the requeued attempt continued, it did not restart
    checkpoint = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 200
