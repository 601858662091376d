"""The code verdict cannot be gamed, and samples cannot reach each other or leave anything behind.

Every hack here is wrong code (`add` that subtracts) dressed to look right: it must score 0 through the task's
verdict and the reward alike, in both isolation layers."""

import json
import os
import threading
import time
from pathlib import Path

import pytest

from conftest import compose_config
from r1lab.rewards.code_exec import CodeExecReward
from r1lab.judging.sandbox import Limits, available_isolation, run_python, writable_places
from r1lab.tasks.code import CodeTask, judge_completion
from r1lab.tasks.code_tests import UnsplittableTests, split_tests
from r1lab.tasks.jsonl import TaskDataError

QUICK = Limits(wall_s=5, cpu_s=2, memory_mb=256)
TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\nassert add(0, 7) == 7"
WRONG = "def add(a, b):\n    return a - b\n"

HACKS = {
    "os._exit before the tests": "import os\n" + WRONG + "os._exit(0)",
    "os._exit without the function": "import os\nos._exit(0)",
    "sys.exit": "import sys\n" + WRONG + "sys.exit(0)",
    "raise SystemExit": WRONG + "raise SystemExit",
    "excepthook that exits 0": "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n" + WRONG,
    "atexit that exits 0": "import atexit, os\natexit.register(lambda: os._exit(0))\n" + WRONG,
    "an int whose __eq__ always holds": (
        "class Yes(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
        "def add(a, b):\n    return Yes(a - b)"),
    "a str subclass and a list subclass that lie": (
        "class Yes(list):\n    def __eq__(self, other):\n        return True\n"
        "def add(a, b):\n    return Yes()"),
    "exit inside the call": "import os\ndef add(a, b):\n    os._exit(0)",
    "settrace": "import sys\nsys.settrace(lambda *a: None)\n" + WRONG,
    "a lookup table from its own files and frames": (
        "import os, re, sys\ntable = {}\n"
        "texts = []\n"
        "for folder in {os.getcwd(), os.path.dirname(os.path.abspath(sys.argv[0]))}:\n"
        "    for name in os.listdir(folder):\n"
        "        try:\n            texts.append(open(os.path.join(folder, name)).read())\n"
        "        except OSError:\n            pass\n"
        "frame = sys._getframe()\n"
        "while frame:\n    texts.append(repr(frame.f_globals.get('spec', '')) + repr(frame.f_locals))\n"
        "    frame = frame.f_back\n"
        "for text in texts:\n"
        "    for args, value in re.findall(r'add\\(([^)]*)\\) == (-?\\d+)', text):\n"
        "        table[args.replace(' ', '')] = int(value)\n"
        "def add(a, b):\n    return table.get(f'{a},{b}', a - b)"),
    "a forged report": (
        "import os, sys\nfd = int(sys.argv[1])\n"
        "os.write(fd, b'{\"loaded\": true}\\n' + b''.join(b'{\"call\": %d, \"value\": {\"yes\": 1}}\\n' % i "
        "for i in range(3)))\nos._exit(0)"),
    "builtins patched to hide the subclass": (
        "import builtins\nreal = builtins.type\n"
        "class Yes(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
        "builtins.type = lambda x, *a: int if real(x) is Yes else real(x, *a)\n"
        "def add(a, b):\n    return Yes(a - b)"),
}


def answer(code: str) -> str:
    return f"<think>easy</think><answer>```python\n{code}\n```</answer>"


@pytest.fixture(params=sorted({"processes", available_isolation()}))
def isolation(request):
    return request.param


@pytest.mark.parametrize("name", sorted(HACKS))
def test_every_hack_scores_zero_through_the_task_and_the_reward(isolation, name):
    task = CodeTask(isolation=isolation, sandbox={"wall_s": 5, "cpu_s": 2, "memory_mb": 256})
    columns = {"tests": [TESTS] * 2, "entry_point": ["add"] * 2}
    completions = [answer(HACKS[name]), answer("def add(a, b):\n    return a + b")]
    assert task.verify(completions, columns) == [0.0, 1.0]
    reward = CodeExecReward(wall_s=5, cpu_s=2, memory_mb=256, isolation=isolation, partial_credit=True)
    assert reward(["p"] * 2, completions, **columns) == [0.0, 1.0]


def test_the_expected_values_never_enter_the_sandbox():
    tests = "expected = 5\nassert add(2, 3) == expected\nassert add(1, 1) == 2"
    plan = split_tests(tests, "add")
    assert plan.calls == ("add(2, 3)", "add(1, 1)")  # the inputs, not the expected values
    assert plan.probe_setup == ""  # the calls need none of the setup, so `expected` stays outside
    peek = "def add(a, b):\n    return globals().get('expected', a - b)"
    assert judge_completion(answer(peek), tests, "add", QUICK).passed == 0


def test_partial_credit_is_the_fraction_of_cases_passed(isolation):
    half_right = "def add(a, b):\n    return a + b if a else -1"  # wrong for add(0, 7) only
    verdict = judge_completion(answer(half_right), TESTS, "add", QUICK, isolation)
    assert (verdict.passed, verdict.total) == (2, 3)
    columns = {"tests": [TESTS], "entry_point": ["add"], "correct": [0.0]}
    assert CodeExecReward(5, 2, 256, isolation, partial_credit=True)(["p"], [answer(half_right)], **columns) == [
        pytest.approx(2 / 3)]
    assert CodeExecReward(5, 2, 256, isolation)(["p"], [answer(half_right)], **columns) == [0.0]  # all-pass default


def test_checks_beyond_plain_comparisons_are_judged_without_the_code(isolation):
    tests = ("import math\ndef close(x, y):\n    return math.isclose(x, y, rel_tol=1e-9)\n"
             "def check(candidate):\n    assert close(candidate(0.1, 0.2), 0.3)\n    assert not candidate(1, -1)\n"
             "    assert abs(candidate(1.5, 1.5) - 3.0) < 1e-9\n\ncheck(add)")
    plan = split_tests(tests, "")
    assert plan.entry_point == "add" and [c.pure for c in plan.cases] == [False, True, False]
    right = judge_completion(answer("def add(a, b):\n    return a + b"), tests, "", QUICK, isolation)
    lying = "class F(float):\n    def __sub__(self, o):\n        return 0.0\ndef add(a, b):\n    return F(a * b)"
    assert (right.passed, right.total) == (3, 3)
    assert judge_completion(answer(lying), tests, "", QUICK, isolation).passed == 0


@pytest.mark.parametrize(("tests", "why"), [
    ("for x in range(3):\n    assert add(x, 0) == x", "neither an assert nor setup"),
    ("assert list(map(add, [1], [2])) == [3]", "other than by calling it"),
    ("result = add(1, 2)\nassert result == 3", "neither an assert nor setup"),
    ("assert 1 == 1", "no assert calls add"),
])
def test_tests_that_cannot_be_split_are_refused_with_the_reason(tests, why):
    with pytest.raises(UnsplittableTests, match=why):
        split_tests(tests, "add")


def test_the_task_refuses_or_skips_unsplittable_problems(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [{"question": "add", "entry_point": "add", "tests": TESTS, "solution": "def add(a, b): return a + b"},
            {"question": "loop", "entry_point": "add", "tests": "for x in range(3):\n    assert add(x, 0) == x",
             "solution": ""}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TaskDataError, match=r"mixed.jsonl:2: its tests cannot be judged outside the sandbox.*"
                                            r"task.unsplittable_tests=skip"):
        CodeTask(str(path))
    assert len(CodeTask(str(path), unsplittable_tests="skip")) == 1


def test_the_reward_takes_the_tasks_sandbox_limits():
    cfg = compose_config(["task=code", "reward=[code_exec]", "task.sandbox.wall_s=3", "task.isolation=processes"])
    assert cfg.reward.code_exec.wall_s == 3 and cfg.reward.code_exec.isolation == "processes"
    assert compose_config(["reward=[code_exec]"]).reward.code_exec.wall_s == 10.0  # no code task: its own


# Containment: samples run at once cannot reach each other, nothing outlives a program, scratch has a size.

SNOOP = """
import glob, os, sys
own = os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[0])))
found, wrote = [f for f in glob.glob('/tmp/r1lab-sandbox-*') if f != own], []
for folder in found:
    for target in ('program/solution.py', 'program/main.py', 'scratch/x.py'):
        try:
            with open(os.path.join(folder, target), 'a') as handle:
                handle.write('def add(a, b):\\n    return a + b\\n')
            wrote.append(target)
        except OSError:
            pass
os.write(int(sys.argv[1]), repr((len(found), wrote)).encode())
"""


def test_a_sample_cannot_reach_another_samples_files(isolation):
    victim_done: dict = {}

    def victim():
        victim_done["outcome"] = run_python("import time, os, sys\ntime.sleep(2)\n"
                                            "os.write(int(sys.argv[1]), repr(sorted(os.listdir('.'))).encode())",
                                            QUICK, isolation, files={"solution.py": WRONG})

    thread = threading.Thread(target=victim)
    thread.start()
    time.sleep(0.7)  # the victim's folders exist now
    snooper = run_python(SNOOP, QUICK, isolation)
    thread.join()
    found, wrote = eval(snooper.report)
    assert wrote == []
    assert victim_done["outcome"].report == "[]"  # its scratch holds nothing another sample put there


def test_nothing_outlives_the_program_and_scratch_has_a_size(isolation):
    marker = f"r1lab-leftover-{os.getpid()}-{isolation}"
    program = f"""
import os, sys
written = []
for place in {writable_places()!r}:
    try:
        with open(os.path.join(place, {marker!r}), 'w') as handle:
            handle.write('x' * 1000)
        written.append(place)
    except OSError:
        pass
total = 0
try:
    for i in range(64):
        with open('big%d' % i, 'wb') as handle:
            handle.write(b'x' * 4_000_000)
        total += 4_000_000
except OSError:
    pass
processes = [p for p in os.listdir('/proc') if p.isdigit()]
os.write(int(sys.argv[1]), repr((written, total, len(processes))).encode())
"""
    limits = Limits(wall_s=10, cpu_s=5, memory_mb=256, scratch_mb=16)
    outcome = run_python(program, limits, isolation)
    written, total, processes = eval(outcome.report)
    assert total <= 16 * 1024 * 1024  # stopped by the scratch size, not after 256 MB
    assert processes <= 4  # /proc shows its own processes, not the machine's
    left = [place for place in writable_places() if (Path(place) / marker).exists()]
    assert left == []
