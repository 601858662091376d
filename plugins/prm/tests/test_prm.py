"""PRM plugin: step parsing on PRM800K, aggregation by hand, scoring with real checkpoints, the experiments."""

import json
import math

import pytest
import torch

from r1lab_prm.reward import PRMReward, aggregate
from r1lab_prm.scorer import PRMLoadError, PRMScorer
from r1lab_prm.steps import split_lines, split_steps
from r1lab_prm.toy_data import labelled_trace

TOY_PRM = "pkg://r1lab_prm/toy_prm"


def read_concatenated_json(path):
    """The PRM800K sample files hold several pretty-printed JSON objects one after another."""
    text, decoder, position, records = path.read_text(), json.JSONDecoder(), 0, []
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        record, position = decoder.raw_decode(text, position)
        records.append(record)
    return records


def fold_answer(steps):
    """PRM800K puts "# Answer" sometimes in its own step, sometimes at the end of the last one: fold it."""
    folded = []
    for step in steps:
        if step.startswith("# Answer") and folded:
            folded[-1] += "\n\n" + step
        else:
            folded.append(step)
    return folded


def test_prm800k_solutions_split_back_into_their_labelled_steps(shared_data):
    records = read_concatenated_json(shared_data / "prm800k_sample" / "prm800k-phase2-train-example.jsonl")
    assert len(records) == 9
    recovered = folded = 0
    for record in records:
        steps = record["question"]["pre_generated_steps"]
        assert fold_answer(split_lines("\n".join(steps))) == fold_answer(steps)
        if any("\n# Answer" in step for step in steps):
            folded += 1  # "# Answer" inside a step: the line rule makes it a step of its own
            continue
        assert split_lines("\n".join(steps)) == steps
        recovered += 1
    assert recovered == 8 and folded == 1
    # Multi-line steps (display math, align environments, the answer block) are among them.
    all_steps = [s for r in records for s in r["question"]["pre_generated_steps"]]
    assert sum("\\begin{align*}" in s for s in all_steps) >= 5 and sum(s.startswith("# Answer") for s in all_steps) >= 8


def test_labelled_phase1_trajectories_split_into_their_steps(shared_data):
    records = read_concatenated_json(shared_data / "prm800k_sample" / "prm800k-phase1-train-example.json")
    lengths = []
    for record in records:
        chosen = []
        for step in record["label"]["steps"]:
            index, human = step["chosen_completion"], step["human_completion"]
            if index is None and human is None:  # the labeller gave up here
                break
            chosen.append(step["completions"][index]["text"] if index is not None else human["text"])
        lengths.append(len(chosen))
        assert fold_answer(split_lines("\n".join(chosen))) == fold_answer(chosen)
    assert sum(lengths) >= 20


def test_step_markers_and_toy_traces_split():
    assert split_steps("Step 1: add 2 and 3. Step 2: that is 5.\n# Answer\n5</think>") == [
        "Step 1: add 2 and 3. ", "Step 2: that is 5.", "# Answer\n5"]
    toy = "89312 Wait, let me verify: 4+8+0=12,3+8+1=12 so 89222</think><answer>89222</answer>"
    assert split_steps(toy, "toy") == ["89312", "4+8+0=12", "3+8+1=12", "89222"]
    assert split_steps("57</think><answer>57</answer>", "toy") == ["57"]
    with pytest.raises(ValueError, match="choose one of lines, toy"):
        split_steps("x", "sentences")


def test_aggregations_by_hand():
    scores = [0.9, 0.5, 0.8]
    assert aggregate(scores, "min") == 0.5
    assert aggregate(scores, "mean") == pytest.approx(2.2 / 3)
    assert aggregate(scores, "last") == 0.8
    assert aggregate(scores, "product") == pytest.approx(0.36)
    assert aggregate([], "min") is None


@pytest.fixture(scope="module")
def random_prm(tmp_path_factory):
    """A local transformers PRM checkpoint by path: a random token-classification Qwen2 and its tokenizer."""
    from r1lab_prm.train import build_prm

    torch.manual_seed(0)
    model, tokenizer = build_prm({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "num_key_value_heads": 1})
    folder = tmp_path_factory.mktemp("prm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_local_checkpoint_scores_each_step_once(random_prm):
    scorer = PRMScorer(str(random_prm), separator="\n")
    prompts = ["User: 1+2\nAssistant: <think>", "User: 5+5\nAssistant: <think>"]  # the prompt has a separator
    scores = scorer.score(prompts, [["3", "1+2+0=03", "3"], ["10"]])
    assert [len(s) for s in scores] == [3, 1]
    assert all(0 < p < 1 for s in scores for p in s)
    # A step's score is the model's P(label 1) at its separator, exactly.
    text = scorer.text(prompts[1], ["10"])
    ids = scorer.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        direct = scorer.model(input_ids=ids).logits.softmax(-1)[0, -1, 1].item()
    assert scores[1][0] == pytest.approx(direct, abs=1e-5)


def test_bad_prm_settings_are_clear_errors(tmp_path, random_prm):
    with pytest.raises(PRMLoadError, match="is not a model folder"):
        PRMScorer(str(tmp_path))
    with pytest.raises(PRMLoadError, match="must be one token"):
        PRMScorer(str(random_prm), separator="<sep>")
    with pytest.raises(ValueError, match="choose one of min, mean, last, product"):
        PRMReward(str(random_prm), aggregate="median")


def test_the_shipped_toy_prm_judges_steps_well():
    from r1lab_prm.train import evaluate

    report = evaluate(PRMScorer(TOY_PRM), problems=200, seed=123)
    # Measured here: all 0.85, ok 0.95, carry 0.91, answer 0.67, sum 0.58, operand 0.11.
    # Wrong operand digits with consistent arithmetic are its blind spot: the opening for reward hacking.
    assert report["step_accuracy_all"] > 0.8
    assert report["step_accuracy_ok"] > 0.9 and report["step_accuracy_carry"] > 0.8
    assert report["step_accuracy_operand"] < 0.5


def test_prm_reward_scores_right_traces_above_flawed_ones():
    import random

    rng = random.Random(7)
    traces = [labelled_trace(rng) for _ in range(300)]
    # As completions the policy would write: guess, self-check, columns, conclusion.
    completions = [f"{t.steps[0]} Wait, let me verify: {','.join(t.steps[1:-1])} so {t.steps[-1]}</think>"
                   if len(t.steps) > 1 else f"{t.steps[0]}</think>" for t in traces]
    reward = PRMReward(TOY_PRM, aggregate="min", steps="toy")
    scores = reward([t.prompt for t in traces], completions)
    right = [s for s, t in zip(scores, traces) if all(t.labels)]
    flawed = [s for s, t in zip(scores, traces) if not all(t.labels)]
    # Measured: 0.69 for the 84 right traces, 0.15 for the 216 with a wrong step (min over steps).
    assert len(right) > 50 and len(flawed) > 50
    assert sum(right) / len(right) > sum(flawed) / len(flawed) + 0.3
    metrics = reward.metrics(scores, completions)
    steps = sum(len(t.steps) for t in traces) / len(traces)
    assert metrics["prm/steps_per_completion"] == pytest.approx(steps)
    assert metrics["prm/score"] == pytest.approx(sum(scores) / len(scores))


def test_toy_traces_are_labelled_against_the_true_sum():
    import random

    rng = random.Random(0)
    for _ in range(200):
        trace = labelled_trace(rng)
        a, b = map(int, trace.prompt.split("User: ")[1].split("\n")[0].split("+"))
        for step, label, kind in zip(trace.steps, trace.labels, trace.kinds):
            assert label == (kind == "ok")
            if "=" not in step:  # guess or conclusion
                assert label == (int(step) == a + b)
            else:
                x, rest = step.split("+", 1)
                y, rest = rest.split("+")
                carry, total = rest.split("=")
                assert (int(x) + int(y) + int(carry) == int(total)) or kind == "sum"


def test_the_experiments_run(tmp_path):
    from r1lab.testing import FAST, read_scalars, run_cli

    hacking = tmp_path / "hacking"
    run_cli(["+experiment=prm_hacking", "trainer.max_steps=2", *FAST, f"hydra.run.dir={hacking}"], cwd=tmp_path)
    scalars = read_scalars(hacking)
    for tag in ("train/reward/prm", "prm/score", "prm/steps_per_completion", "train/accuracy"):
        assert len(scalars[tag]) == 2, tag
    training = tmp_path / "prm_train"
    run_cli(["+experiment=toy_prm_train", "stage.steps=3", "stage.batch_size=4", "stage.eval_problems=10",
             "trainer.enable_progress_bar=false", f"hydra.run.dir={training}"], cwd=tmp_path)
    report = json.loads((training / "prm" / "r1lab_prm_eval.json").read_text())
    assert 0 <= report["step_accuracy_all"] <= 1 and not math.isnan(report["step_accuracy_all"])
    assert PRMScorer(str(training / "prm")).score(["User: 1+1\nAssistant: <think>"], [["2"]])[0]
