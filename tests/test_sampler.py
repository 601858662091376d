import pytest
import torch

from conftest import TINY
from r1lab.models import load_policy, load_tokenizer
from r1lab.models.tokenizers import build_char_tokenizer
from r1lab.rl.logprobs import completion_logprobs
from r1lab.rollout import PromptBatch
from r1lab.samplers.hf import HFSampler, completion_mask_and_truncation


def batch(*prompts: str) -> PromptBatch:
    return PromptBatch(list(prompts), {"answer": [str(i) for i in range(len(prompts))]}, list(range(len(prompts))))


ENGINES = ["lean", "generate"]


@pytest.mark.parametrize("engine", ENGINES)
def test_rollout_has_group_size_completions_per_prompt_with_consistent_tensors(policy, engine):
    sampler = HFSampler(group_size=3, max_new_tokens=12, engine=engine)
    rollout = sampler.rollout(policy.model, policy.tokenizer, batch("User: 1+2", "User: 10+20=?"))
    assert rollout.num_completions == 6 and rollout.num_groups == 2
    assert rollout.prompts == ["User: 1+2"] * 3 + ["User: 10+20=?"] * 3
    assert rollout.columns["answer"] == ["0"] * 3 + ["1"] * 3
    width = rollout.completion_mask.shape[1]
    assert width <= 12 and rollout.input_ids.shape == rollout.attention_mask.shape
    # Completion text is exactly the masked tokens minus the EOS.
    eos = policy.tokenizer.eos_token_id
    for text, ids, mask, cut in zip(rollout.completions, rollout.completion_ids, rollout.completion_mask,
                                    rollout.truncated):
        kept = ids[mask.bool()].tolist()
        assert (kept[-1] == eos) is (not bool(cut))
        assert policy.tokenizer.decode(kept if cut else kept[:-1]) == text


@pytest.mark.parametrize("engine", ENGINES)
def test_sampler_logprobs_match_a_forward_pass(policy, engine):
    sampler = HFSampler(group_size=4, temperature=0.7, max_new_tokens=16, engine=engine)
    rollout = sampler.rollout(policy.model, policy.tokenizer, batch("User: 123+456", "User: 7+8"))
    with torch.no_grad():
        forward = completion_logprobs(policy.model, rollout, temperature=0.7)
    gap = ((forward - rollout.sampler_logprobs).abs() * rollout.completion_mask).max()
    assert gap < 1e-4


def test_completion_mask_stops_after_the_first_eos():
    ids = torch.tensor([[5, 1, 0, 0], [5, 6, 7, 8], [1, 0, 0, 0]])
    mask, truncated = completion_mask_and_truncation(ids, eos_token_id=1)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert truncated.tolist() == [False, True, False]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"group_size": 1}, "group_size must be >= 2"), ({"temperature": 0.0}, "temperature must be > 0"),
    ({"top_p": 0.0}, "top_p must be in"), ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
    ({"engine": "vllm"}, "engine must be one of auto, lean, generate"),
])
def test_bad_sampler_settings_are_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HFSampler(**kwargs)


def test_char_tokenizer_round_trips_through_save_and_auto_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = build_char_tokenizer()
    text = "User: 12 + 34?\n  <think>4+2=6, 1+3=4</think> <answer>46</answer>"
    ids = tokenizer(text)["input_ids"]
    assert len(ids) < len(text)  # the tags are single tokens
    tokenizer.save_pretrained(tmp_path)
    for reloaded in (load_tokenizer(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert reloaded(text)["input_ids"] == ids
        assert reloaded.decode(ids) == text


def test_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    from r1lab.models import ModelLoadError

    with pytest.raises(ModelLoadError, match="could not load a causal LM"):
        load_policy(str(tmp_path))
    with pytest.raises(ModelLoadError, match="not a torch dtype"):
        load_policy(random_init=TINY, dtype="float12")
