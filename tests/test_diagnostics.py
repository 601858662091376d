"""Each aha diagnostic on hand-made completions that should and should not trigger it; the ablation on the toy model."""

import random

import pytest

from r1lab.judging.diagnostics import (PlateauDetector, conditional_accuracy, cut_before_check, format_hack, loops,
                               mixes_languages)
from r1lab.judging.language import make_identifier
from r1lab.models import load_policy
from r1lab.samplers.hf import HFSampler
from r1lab.tasks.base import PromptTask
from r1lab.testing import FAST, read_scalars, run_cli
from r1lab.toy.corpus import QA_TEMPLATE, column_trace, random_digit_guess

TRACE = "4325 Wait, let me verify: 5+9+0=14,2+0+1=03 so 314</think><answer>314</answer>"


def test_loops():
    assert loops("1+1+0=02,1+1+0=02,1+1+0=02,1+1+0=02")
    assert loops("I think I think I think that")
    assert not loops(TRACE)
    assert not loops("4+8+0=12,3+8+1=12,2+9+1=12")  # similar columns are not a loop


def test_format_hacks():
    assert format_hack("314</think><answer>314</answer> Wait, let me verify: yes")
    assert format_hack("314</think> Wait, let me verify: 5+9 <answer>314</answer>")
    assert not format_hack(TRACE)
    assert not format_hack("314</think><answer>314</answer>")


def test_language_mixing_uses_the_shared_identifier():
    toy = make_identifier("toy")
    assert mixes_languages(f"1 Wait, let me verify: {column_trace(4821, 391, 4, switch_at=2)} so 5212</think>", toy)
    assert not mixes_languages(f"1 Wait, let me verify: {column_trace(4821, 391, 4)} so 5212</think>", toy)
    assert not mixes_languages("5212</think><answer>5212</answer>", toy)


def test_conditional_accuracy_and_the_cut():
    completions = [TRACE, "314</think><answer>314</answer>", "31</think><answer>31</answer>", TRACE.replace("314", "9")]
    assert conditional_accuracy(completions, [1.0, 1.0, 0.0, 0.0]) == {"diag/acc_given_verify": 0.5,
                                                                      "diag/acc_given_direct": 0.5}
    assert conditional_accuracy(["5</think>"], [1.0]) == {"diag/acc_given_direct": 1.0}
    assert cut_before_check(TRACE) == "4325" and cut_before_check("314</think>") is None


def test_plateau_fires_once_when_the_verify_rate_falls_back():
    detector = PlateauDetector(window=3, threshold=0.5, drop=0.2)
    fired = [detector.update(rate) for rate in [0.1] * 4 + [0.8] * 4 + [0.2] * 4]
    # Window means: ... 0.6 (index 8), 0.4 (index 9: not yet below 0.5 - 0.2), 0.2 (index 10: fires).
    assert fired.count(True) == 1 and fired.index(True) == 10
    steady = PlateauDetector(window=3, threshold=0.5, drop=0.2)
    assert not any(steady.update(rate) for rate in [0.1] * 4 + [0.8] * 8)
    with pytest.raises(ValueError, match="plateau detector"):
        PlateauDetector(drop=0.9, threshold=0.5)


def test_the_ablation_shows_real_verification_pays_on_the_toy_model():
    from r1lab.callbacks.diagnostics import verify_gain

    toy = load_policy("pkg://r1lab.toy/base_model")
    rng = random.Random(0)
    prompts, real, ritual, answers = [], [], [], []
    for _ in range(24):
        a, b = rng.randint(10000, 99999), rng.randint(10000, 99999)
        guess = random_digit_guess(a + b, rng, wrong_rate=1.0)
        prompts.append(QA_TEMPLATE.format(question=f"{a}+{b}"))
        answers.append(str(a + b))
        # After the flip: a wrong first guess, then a check that really computes the sum.
        real.append(f"{guess} Wait, let me verify: {column_trace(a, b, 5)} so {a + b}</think><answer>{a + b}</answer>")
        # A ritual: the check restates the first guess and changes nothing.
        ritual.append(f"{guess} Wait, let me verify: {guess} so {guess}</think><answer>{guess}</answer>")
    verify, columns = PromptTask().verify, {"answer": answers}
    sampler = HFSampler(group_size=4)  # the run's sampler; the ablation makes a greedy variant of it
    gain, count = verify_gain(toy.model, toy.tokenizer, sampler, verify, prompts, real, verify(real, columns), columns)
    assert count == 24 and gain > 0.5
    ritual_gain, _ = verify_gain(toy.model, toy.tokenizer, sampler, verify, prompts, ritual, verify(ritual, columns),
                                 columns)
    assert abs(ritual_gain) < 0.2


def test_a_run_logs_the_diagnostics(tmp_path):
    run_cli(["+experiment=r1_zero", "trainer.max_steps=2", *FAST, "callbacks.diagnostics.ablation_every=1",
             f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    scalars = read_scalars(tmp_path)
    for tag in ("diag/loop_rate", "diag/truncated_frac", "diag/format_hack_rate", "diag/mixed_rate"):
        assert len(scalars[tag]) == 2, tag
    assert any(tag.startswith("diag/acc_given") for tag in scalars)
