"""SFT on completion tokens, the toy cold start, rejection sampling's filters, and their stages' smoke runs."""

import json

import pytest

from r1lab.models import load_policy
from r1lab.stages.rejection_sample import Candidate, apply_filters, build_filters
from r1lab.rewards.format import FormatReward
from r1lab.tasks.base import PromptTask
from r1lab.stages.sft import CompletionPairs, SFTDataError, jsonl_pairs
from r1lab.testing import read_scalars, run_cli
from r1lab.toy.cold_start import cold_start_rows


def test_sft_labels_cover_the_completion_and_eos_only():
    policy = load_policy("pkg://r1lab.toy/base_model")
    pairs = CompletionPairs([{"prompt": "User: 1+1\nAssistant: <think>", "completion": "2</think><answer>2</answer>"}],
                            policy.tokenizer, seed=0)
    encoded = pairs.encode(pairs.rows[0])
    prompt_length = len(policy.tokenizer("User: 1+1\nAssistant: <think>", add_special_tokens=False)["input_ids"])
    assert (encoded["labels"][:prompt_length] == -100).all()
    assert encoded["labels"][prompt_length:].tolist() == encoded["input_ids"][prompt_length:].tolist()
    assert encoded["labels"][-1] == policy.tokenizer.eos_token_id


def test_cold_start_traces_are_well_formatted_and_right():
    rows = cold_start_rows(50, seed=1)
    assert len({r["prompt"] for r in rows}) > 40
    assert all(FormatReward()([r["prompt"]], [r["completion"]]) == [1.0] for r in rows)
    for row in rows:
        a, b = map(int, row["prompt"].split("User: ")[1].split("\n")[0].split("+"))
        assert f"Summary: {a}+{b}={a + b}</think><answer>{a + b}</answer>" in row["completion"]


def test_jsonl_pairs_reads_pairs_and_names_missing_columns(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "p", "completion": "c", "answer": "1"}\n')
    assert jsonl_pairs(str(good)) == [{"prompt": "p", "completion": "c"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p"}\n')
    with pytest.raises(SFTDataError, match="bad.jsonl:1 needs 'prompt' and 'completion'"):
        jsonl_pairs(str(bad))


def candidate(completion, answer="12", tokens=10, prompt="User: 5+7\nAssistant: <think>"):
    correct = PromptTask().verify([completion], {"answer": [answer]})[0]  # the task's verdict, as the stage has it
    return Candidate(prompt, completion, answer, tokens, correct)


def test_rejection_keeps_exactly_the_completions_that_pass():
    right = "5+7=12</think><answer>12</answer>"
    candidates = [
        candidate(right),  # kept
        candidate(right),  # duplicate of the first: dropped by dedupe
        candidate("5+7=13</think><answer>13</answer>"),  # wrong
        candidate("12"),  # right answer? no tags: no answer at all -> fails accuracy
        candidate("</think><answer>12</answer> extra </answer>", tokens=5),  # right answer, broken format
        candidate("1 Wait, let me verify: fb=ac so 12</think><answer>12</answer>"),  # letter language
        candidate("2+5+0=07,0+0+0=00 ok 12</think><answer>12</answer>", tokens=99),  # too long
        candidate("5 and 7 make 12</think><answer>12</answer>", tokens=20),  # kept
    ]
    filters = build_filters(language={"identifier": "toy", "target": "digits", "min_share": 1.0}, max_tokens=50)
    kept, summary = apply_filters(candidates, filters)
    assert [c.completion for c in kept] == [right, "5 and 7 make 12</think><answer>12</answer>"]
    assert [(f["filter"], f["in"], f["kept"]) for f in summary["filters"]] == [
        ("accuracy", 8, 6), ("format", 6, 5), ("language", 5, 4), ("length", 4, 3), ("dedupe", 3, 2)]
    assert summary["sampled"] == 8 and summary["kept"] == 2 and summary["kept_rate"] == 0.25


def test_the_sft_and_rejection_stages_run(tmp_path):
    sft = tmp_path / "sft"
    run_cli(["+experiment=toy_cold_start", "stage.steps=30", "stage.data.n=32", "stage.batch_size=8", "stage.lr=3e-4",
             "trainer.enable_progress_bar=false", f"hydra.run.dir={sft}"], cwd=tmp_path)
    losses = [v for _, v in read_scalars(sft)["sft/loss"]]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5  # it learns the traces
    assert load_policy(str(sft / "policy")).model is not None
    sampled = tmp_path / "rejection"
    run_cli(["+experiment=rejection_sample", f"model.name_or_path={sft / 'policy'}", "model=hf", "stage.limit=6",
             "stage.samples_per_prompt=3", "sampler.max_new_tokens=64", f"hydra.run.dir={sampled}"], cwd=tmp_path)
    summary = json.loads((sampled / "summary.json").read_text())
    rows = [json.loads(line) for line in (sampled / "dataset.jsonl").read_text().splitlines()]
    assert summary["sampled"] == 18 and summary["kept"] == len(rows)
    assert [f["filter"] for f in summary["filters"]] == ["accuracy", "format", "language", "dedupe"]
    judge = build_filters(dedupe=False)
    kept, _ = apply_filters([candidate(r["completion"], r["answer"], prompt=r["prompt"]) for r in rows], judge)
    assert len(kept) == len(rows)  # every written row passes accuracy and format


def test_sft_reprompts_pairs_into_the_students_format_and_refuses_pairs_without_a_question():
    from r1lab.stages.sft import SFTDataError, reprompted
    from r1lab.tasks.arithmetic import AdditionTask

    student = AdditionTask(num_problems=1, prompt_template="Q: {question}\nA:")
    rows = [{"prompt": "User: 2+3\nAssistant: <think>", "completion": "2+3=5</think>", "question": "2+3"}]
    assert reprompted(rows, student, tokenizer=None) == [{**rows[0], "prompt": "Q: 2+3\nA:"}]
    with pytest.raises(SFTDataError, match="1 of 2 pairs have none"):
        reprompted(rows + [{"prompt": "p", "completion": "c", "question": None}], student, tokenizer=None)
