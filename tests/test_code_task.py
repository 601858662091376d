"""The code task and its sandbox: right code passes, wrong code fails, and every escape tried is stopped
(scored 0) without harming the run or the machine."""

import json
import os
import socket
import time
from pathlib import Path

import pytest

from conftest import FAST, compose_config, read_scalars
from r1lab.rewards.code_exec import CodeExecReward
from r1lab.judging.sandbox import SANDBOX_UIDS, Limits, available_isolation, run_python
from r1lab.stages import run_stage
from r1lab.tasks.code import CodeTask, extract_code, passes_tests

QUICK = Limits(wall_s=5, cpu_s=2, memory_mb=256)


def answer(code: str) -> str:
    return f"<think>easy</think><answer>```python\n{code}\n```</answer>"


def processes_now() -> int:
    """Processes of the users sandboxed programs run as (drawn from SANDBOX_UIDS, when the tests run as root),
    else all: other work on the machine must not make the count move."""
    if os.geteuid() != 0:
        return sum(1 for p in Path("/proc").iterdir() if p.name.isdigit())
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid = int(status.read_text().split("\nUid:\t", 1)[1].split("\t", 1)[0])
        except (OSError, IndexError, ValueError):
            continue
        count += uid in SANDBOX_UIDS
    return count


@pytest.fixture(params=sorted({"processes", available_isolation()}))
def isolation(request):
    """Both layers where bubblewrap runs (CI installs it), else the process-level one only."""
    return request.param


def test_extract_code_takes_the_last_python_block_of_the_answer():
    assert extract_code(answer("x = 1")) == "x = 1\n"
    assert extract_code("```python\nfirst\n```<answer>```py\nsecond\n```</answer>") == "second\n"
    assert extract_code("<answer>def f(): return 1</answer>") == "def f(): return 1"
    assert extract_code("no code here") is None


def test_right_code_passes_and_wrong_code_fails(isolation):
    tests = "assert add(2, 3) == 5"
    assert passes_tests(answer("def add(a, b):\n    return a + b"), tests, QUICK, isolation)
    assert not passes_tests(answer("def add(a, b):\n    return a - b"), tests, QUICK, isolation)
    assert not passes_tests("I would rather not", tests, QUICK, isolation)


def test_every_shipped_problem_is_solved_by_its_solution_and_not_by_a_wrong_one():
    task = CodeTask(isolation="auto", sandbox={"wall_s": 10})
    assert len(task) == 12
    columns = {"tests": [row["tests"] for row in task.rows]}
    assert task.verify([answer(row["answer"]) for row in task.rows], columns) == [1.0] * len(task)
    assert task.verify([answer(f"def {row['entry_point']}(*args):\n    return None") for row in task.rows],
                       columns) == [0.0] * len(task)


@pytest.mark.parametrize(("name", "program"), [
    ("endless loop", "while True:\n    pass"),
    ("fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"),
    ("huge allocation", "block = bytearray(8 * 1024 ** 3)"),
    ("huge output", "while True:\n    print('x' * 10000)"),
])
def test_resource_attacks_are_stopped_in_time(isolation, name, program):
    before, started = processes_now(), time.monotonic()
    outcome = run_python(program + "\nassert False", QUICK, isolation)
    assert not outcome.ok
    assert time.monotonic() - started < QUICK.wall_s + 3
    assert len(outcome.stdout) <= QUICK.output_chars
    deadline = time.monotonic() + 2.0  # killed processes may take a moment to be reaped
    while processes_now() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_now() <= before  # nothing it started is left running


def test_files_outside_the_scratch_folder_cannot_be_read_or_written(isolation, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the-secret")
    secret.chmod(0o600)
    tmp_path.chmod(0o755)
    target = tmp_path / "escaped.txt"
    read_secret = run_python(f"print(open({str(secret)!r}).read())", QUICK, isolation)
    assert not read_secret.ok and "the-secret" not in read_secret.stdout
    write = run_python(f"open({str(target)!r}, 'w').write('x')", QUICK, isolation)
    assert not write.ok and not target.exists()
    home = run_python("import os\nopen(os.path.expanduser('~/.bashrc'), 'a').write('x')\nprint(os.getcwd())",
                      QUICK, isolation)  # its own home is the scratch folder, thrown away afterwards
    read_public = run_python("print(open('/etc/os-release').read())", QUICK, isolation)  # world-readable
    if isolation == "bwrap":  # the filesystem view holds only Python and system libraries
        assert not read_public.ok and "ID=" not in read_public.stdout
        assert home.ok and home.stdout.strip() == "/sandbox"
    else:  # the documented limit of the process-level layer: world-readable files can be read
        assert read_public.ok and "ID=" in read_public.stdout
    assert scratch_leftovers() == []


def scratch_leftovers() -> list[str]:
    return [p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("r1lab-sandbox-*")]


def test_no_network(isolation):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        outcome = run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)", QUICK,
                             isolation)
        assert not outcome.ok
        with pytest.raises(TimeoutError):
            server.accept()  # nothing reached the machine's loopback
    finally:
        server.close()


def test_mbpp_and_humaneval_files(tmp_path):
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text(json.dumps({"text": "Write a function to double a number.", "code": "def double(x):\n    return 2 * x",
                                "test_list": ["assert double(2) == 4", "assert double(0) == 0"],
                                "test_setup_code": ""}) + "\n")
    humaneval = tmp_path / "humaneval.jsonl"
    humaneval.write_text(json.dumps({"prompt": "def inc(x):\n    \"\"\"x + 1\"\"\"\n", "entry_point": "inc",
                                     "canonical_solution": "    return x + 1\n",
                                     "test": "def check(candidate):\n    assert candidate(1) == 2\n"}) + "\n")
    for path, right, wrong in [(mbpp, "def double(x):\n    return x + x", "def double(x):\n    return x"),
                               (humaneval, "def inc(x):\n    return x + 1", "def inc(x):\n    return x")]:
        task = CodeTask(str(path))
        row = task[0]
        assert "double(2) == 4" in row["prompt"] or "def inc" in row["prompt"]
        assert task.verify([answer(right), answer(wrong), answer(row["answer"])], {"tests": [row["tests"]] * 3}) == [
            1.0, 0.0, 1.0]


def test_the_reward_runs_the_tests_itself_outside_a_code_run():
    reward = CodeExecReward(wall_s=5, cpu_s=2)
    scores = reward(["p", "p"], [answer("def f():\n    return 1"), answer("def f():\n    return 2")],
                    tests=["assert f() == 1"] * 2)
    assert scores == [1.0, 0.0]
    with pytest.raises(KeyError, match="needs the task column 'tests'"):
        reward(["p"], ["x"], answer=["1"])


def test_an_rl_run_on_the_code_task(tmp_path):
    run_dir = tmp_path / "code"
    run_stage(compose_config(["task=code", "reward=[code_exec,format]", *FAST, "trainer.max_steps=2",
                              "callbacks.policy=null", "sampler.max_new_tokens=24"], output_dir=run_dir))
    scalars = read_scalars(run_dir)
    assert [s for s, _ in scalars["train/reward/code_exec"]] == [0, 1]
    assert scalars["train/accuracy"] == scalars["train/reward/code_exec"]  # one verdict, computed once
