"""The real-model path without downloads: a byte-level BPE tokenizer trained here on GSM8K questions, saved with
a chat template and no pad token, reloaded through AutoTokenizer; a random Qwen2-shaped model beside it, run as
any downloaded model would be (`model=hf model.name_or_path=<folder>`) with chat prompting: RL steps, a
checkpoint and a resume that continues the same run, and evaluation."""

import json

import pytest
import torch
from transformers import AutoTokenizer

from r1lab.judging.answers import extract_answer, is_correct
from r1lab.models import load_policy
from r1lab.tasks.jsonl import JsonlTask
from r1lab.testing import FAST, build_bpe_model, read_scalars, run_cli


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, shared_data):
    lines = (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()
    texts = [json.loads(line)["question"] for line in lines[:400]]
    return build_bpe_model(tmp_path_factory.mktemp("bpe_qwen2"), texts, vocab_size=800)


def test_the_trained_bpe_tokenizer_round_trips_through_autotokenizer(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    text = "Janet's ducks lay 16 eggs.\n  Two  spaces, <think>4+3=7</think> <answer>18</answer> $1,000"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level: spaces, newlines, anything survives
    prose = "She eats three for breakfast every morning and bakes muffins for her friends every day."
    assert len(tokenizer(prose)["input_ids"]) < len(prose) / 3  # a real subword vocabulary, not characters
    assert tokenizer.eos_token == "<|im_end|>"
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert chat == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    saved = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert saved.get("pad_token") is None  # no pad token, as many base models ship
    policy = load_policy(str(model_dir))  # r1lab pads with EOS, on the left
    assert policy.tokenizer.pad_token == "<|im_end|>" and policy.tokenizer.padding_side == "left"
    assert policy.tokenizer.decode(policy.tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_chat_prompts_use_the_tokenizers_template_with_the_system_prompt(model_dir, shared_data):
    task = JsonlTask(str(shared_data / "gsm8k" / "test.jsonl"), answer_regex=r"####\s*(.+?)\s*$", limit=3,
                     prompt_format="chat", system_prompt="Think in <think> tags.",
                     user_template="{question}\nPut the answer in \\boxed{{}}.")
    with pytest.raises(RuntimeError, match="render_prompts"):
        task[0]
    task.render_prompts(AutoTokenizer.from_pretrained(model_dir))
    prompt = task[0]["prompt"]
    assert prompt.startswith("<|im_start|>system\nThink in <think> tags.<|im_end|>\n<|im_start|>user\nJanet")
    assert prompt.endswith("Put the answer in \\boxed{}.<|im_end|>\n<|im_start|>assistant\n")
    toy = load_policy("pkg://r1lab.toy/base_model").tokenizer  # a tokenizer without a chat template
    with pytest.raises(ValueError, match="has none; use task.prompt_format=template"):
        task.render_prompts(toy)
    with pytest.raises(ValueError, match="prompt_format must be one of template, chat"):
        JsonlTask(str(shared_data / "gsm8k" / "test.jsonl"), prompt_format="chatml")


def test_generation_stops_at_every_end_token_the_model_lists(model_dir):
    import torch

    from r1lab.samplers.base import stop_token_ids
    from r1lab.samplers.hf import completion_mask_and_truncation

    policy = load_policy(str(model_dir))
    im_end, endoftext = (policy.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>"))
    assert stop_token_ids(policy.model, policy.tokenizer) == [im_end, endoftext]
    ids = torch.tensor([[5, endoftext, 7, 7], [5, 6, im_end, 7], [5, 6, 7, 8]])
    mask, truncated = completion_mask_and_truncation(ids, [im_end, endoftext])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]] and truncated.tolist() == [False, False, True]


def test_a_completion_ends_at_its_first_stop_string(model_dir):
    from r1lab.rollout import PromptBatch
    from r1lab.samplers.base import cut_at_stop_strings
    from r1lab.samplers.hf import HFSampler

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = ["<think>so 7</think><answer>7</answer> and then more", "no stop here at all"]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, ids))
    padded = torch.tensor([row + [0] * (width - len(row)) for row in ids])
    mask = torch.tensor([[1.0] * len(row) + [0.0] * (width - len(row)) for row in ids])
    cut_mask, truncated, ended = cut_at_stop_strings(tokenizer, padded, mask, torch.tensor([True, True]),
                                                     ["</answer>"])
    kept = tokenizer.decode(ids[0][:int(cut_mask[0].sum())])
    assert kept == "<think>so 7</think><answer>7</answer>" and ended == [True, False]
    assert truncated.tolist() == [False, True] and cut_mask[1].tolist() == mask[1].tolist()
    # In a rollout: no completion runs past the stop string, and one that reached it is not truncated.
    policy = load_policy(str(model_dir))
    batch = PromptBatch(["<answer>", "x"], {"answer": ["1", "2"]}, [0, 1])
    rollout = HFSampler(group_size=4, max_new_tokens=12, stop_strings=["e"]).rollout(policy.model, policy.tokenizer,
                                                                                    batch)
    for completion, cut in zip(rollout.completions, rollout.truncated.tolist()):
        assert "e" not in completion[:-1] and (completion.endswith("e") or cut or completion == "")


def test_the_answer_is_read_where_the_task_says():
    both = "<think>\\boxed{3}</think><answer>5</answer>"
    assert extract_answer(both) == "5" and extract_answer(both, "boxed") == "3"
    assert extract_answer("so \\boxed{7}.", "answer_tag") is None and extract_answer("so \\boxed{7}.") == "7"
    with pytest.raises(ValueError, match="answer_format must be one of auto, answer_tag, boxed, last_number"):
        extract_answer("x", "last_answer")


def test_last_number_reads_the_last_number_written_in_prose():
    cases = {"23 + 58 = 81.": "81", "It costs 1,234 dollars": "1,234", "58-23=35": "35", "x is -5": "-5",
             "pi is 3.14 and then 2.": "2", "1,2,3": "3", "no digits here": None, "v2 of the plan": None}
    assert {text: extract_answer(text, "last_number") for text in cases} == cases
    assert is_correct("so 23 + 58 = 1,081.", "1081", "last_number")  # thousands separators as graders drop them
    assert not is_correct("81, or maybe 82", "81", "last_number")  # the last number is the answer, not any


@pytest.mark.slow
def test_a_bpe_chat_model_trains_checkpoints_resumes_and_evaluates(model_dir, tmp_path):
    common = ["+experiment=r1_zero", "model=hf", f"model.name_or_path={model_dir}", "task=gsm8k",
              "task.prompt_format=chat", "task.system_prompt=${templates.system_think}", "task.limit=32",
              *FAST, "sampler.max_new_tokens=24", "callbacks.diagnostics=null"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_cli([*common, "trainer.max_steps=3", f"hydra.run.dir={whole}"], cwd=tmp_path)
    run_cli([*common, "trainer.max_steps=2", f"hydra.run.dir={split}"], cwd=tmp_path)
    run_cli([*common, "trainer.max_steps=3", "resume=auto", f"hydra.run.dir={split}"], cwd=tmp_path)
    a, b = read_scalars(whole), read_scalars(split)
    for tag in ("train/reward", "train/completion_len", "train/loss", "train/kl", "train/grad_norm"):
        assert [s for s, _ in b[tag]] == [0, 1, 2], tag
        assert [v for _, v in b[tag]] == pytest.approx([v for _, v in a[tag]], rel=1e-4, abs=1e-6), tag
    sample = json.loads((whole / "samples.jsonl").read_text().splitlines()[0])
    assert sample["prompt"].startswith("<|im_start|>system\nA conversation between User and Assistant")
    assert sample["prompt"].endswith("<|im_start|>assistant\n")

    evaluated = tmp_path / "eval"
    run_cli(["eval", f"model={whole / 'policy'}", "task=gsm8k", "task.prompt_format=chat", "n=2", "k=1,2",
             "limit=4", "max_new_tokens=16", f"hydra.run.dir={evaluated}"], cwd=tmp_path)
    report = json.loads((evaluated / "eval.json").read_text())
    assert report["results"]["all"]["problems"] == 4 and 0 <= report["results"]["all"]["pass@1"] <= 1
