"""The lean KV-cache decoder gives the `transformers` model's own logits and `generate`'s greedy output."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from r1lab.models import load_policy
from r1lab.samplers.hf import HFSampler
from r1lab.samplers.lean_decode import LeanDecoder, lean_sample, supports

# Grouped-query attention (2 heads, 1 key/value head) and Qwen2's q/k/v biases; Llama has neither bias.
QWEN2 = {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 256}
LLAMA = QWEN2 | {"model_type": "llama", "num_key_value_heads": 2}


@pytest.fixture(scope="module", params=[QWEN2, LLAMA], ids=["qwen2", "llama"])
def policy(request):
    torch.manual_seed(0)
    policy = load_policy(random_init=request.param)
    policy.model.eval()
    return policy


def encode(policy, prompts):
    return policy.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)


def test_prefill_and_decode_logits_equal_the_full_forward(policy):
    encoded = encode(policy, ["User: 1+2=", "User: 123+4567=?", "Hi"])  # left padding of different widths
    continuation = torch.randint(3, 60, (3, 5))
    ids = torch.cat([encoded.input_ids, continuation], dim=1)
    mask = torch.cat([encoded.attention_mask, torch.ones_like(continuation)], dim=1)
    with torch.no_grad():
        full = policy.model(input_ids=ids, attention_mask=mask).logits
        decoder = LeanDecoder(policy.model, 3, ids.shape[1])
        steps = [decoder.forward(encoded.input_ids, encoded.attention_mask)]
        for t in range(continuation.shape[1]):
            steps.append(decoder.forward(continuation[:, t:t + 1], torch.ones(3, 1, dtype=mask.dtype)))
    width = encoded.input_ids.shape[1]
    expected = full[:, width - 1:]
    assert torch.allclose(torch.stack(steps, 1), expected, atol=1e-5)


def test_greedy_decoding_equals_generate(policy):
    encoded = encode(policy, ["User: 12+34=", "User: 5+678="])
    tokenizer = policy.tokenizer
    with torch.no_grad():
        ours, _ = lean_sample(policy.model, encoded.input_ids, encoded.attention_mask, 20, tokenizer.eos_token_id,
                              tokenizer.pad_token_id, do_sample=False)
        theirs = policy.model.generate(**encoded, do_sample=False, max_new_tokens=20, pad_token_id=tokenizer.pad_token_id,
                                       eos_token_id=tokenizer.eos_token_id)
    assert torch.equal(ours, theirs)


def test_top_k_1_and_a_tiny_top_p_sample_the_argmax(policy):
    encoded = encode(policy, ["User: 1+1=", "User: 99+1="])
    args = (policy.model, encoded.input_ids, encoded.attention_mask, 10, -1, policy.tokenizer.pad_token_id)
    greedy, _ = lean_sample(*args, do_sample=False)
    assert torch.equal(lean_sample(*args, temperature=2.0, top_k=1)[0], greedy)
    assert torch.equal(lean_sample(*args, temperature=2.0, top_p=1e-6)[0], greedy)


def test_sampling_is_reproducible_under_a_seed(policy):
    encoded = encode(policy, ["User: 3+4="])
    args = (policy.model, encoded.input_ids.repeat(4, 1), encoded.attention_mask.repeat(4, 1), 12, -1, 0)
    torch.manual_seed(5)
    first = lean_sample(*args)
    torch.manual_seed(5)
    second = lean_sample(*args)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert len({tuple(row) for row in first[0].tolist()}) > 1  # rows differ: it really samples


def test_unsupported_architectures_fall_back_to_generate_or_fail_clearly(policy):
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=policy.tokenizer.vocab_size + 8))
    assert supports(policy.model) and not supports(gpt2)
    assert HFSampler(engine="auto").engine_for(gpt2) == "generate"
    assert HFSampler(engine="auto").engine_for(policy.model) == "lean"
    with pytest.raises(ValueError, match="engine=lean supports model types qwen2, llama, mistral"):
        HFSampler(engine="lean").engine_for(gpt2)


def test_rows_that_finish_early_leave_the_batch_without_changing_the_output():
    # The toy base model stops at different lengths, so the decoding batch shrinks several times.
    toy = load_policy("pkg://r1lab.toy/base_model")
    tokenizer = toy.tokenizer
    pairs = [(1, 2), (12, 345), (9876, 54321), (5, 55), (99, 1), (123, 4567), (31415, 92653), (7, 8)]
    encoded = encode(toy, [f"User: What is {a} + {b}?\nAssistant: <think>" for a, b in pairs])
    with torch.no_grad():
        ours, logprobs = lean_sample(toy.model, encoded.input_ids, encoded.attention_mask, 64, tokenizer.eos_token_id,
                                     tokenizer.pad_token_id, do_sample=False)
        theirs = toy.model.generate(**encoded, do_sample=False, max_new_tokens=64, eos_token_id=tokenizer.eos_token_id,
                                    pad_token_id=tokenizer.pad_token_id)
    assert torch.equal(ours, theirs)
    completion = ours[:, encoded.input_ids.shape[1]:]
    lengths = {int((row == tokenizer.eos_token_id).int().argmax()) for row in completion}
    assert len(lengths) >= 3  # really different lengths
    after_eos = completion == tokenizer.pad_token_id
    assert (logprobs[after_eos] == 0).all() and (logprobs[~after_eos] < 0).all()


def test_each_distinct_prompt_is_prefilled_once(policy):
    """A group's G rows share one prompt: the prefill runs the distinct prompts only, then copies their keys and
    values to every row; the output is the same as prefilling every row."""
    encoded = encode(policy, ["User: 12+34=", "User: 5+678=", "Hi"])
    ids, mask = encoded.input_ids.repeat_interleave(3, 0), encoded.attention_mask.repeat_interleave(3, 0)
    tokenizer = policy.tokenizer
    prefill_rows = []
    hook = policy.model.model.embed_tokens.register_forward_hook(
        lambda module, args, out: prefill_rows.append(args[0].shape[0]) if args[0].shape[1] > 1 else None)
    try:
        with torch.no_grad():
            ours, _ = lean_sample(policy.model, ids, mask, 12, tokenizer.eos_token_id, tokenizer.pad_token_id,
                                  do_sample=False)
    finally:
        hook.remove()
    theirs = policy.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=12,
                                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    assert prefill_rows == [3]
    assert torch.equal(ours, theirs)


def test_under_bf16_autocast_the_decoder_caches_bf16_and_matches_the_autocast_forward(policy):
    """trainer.precision=bf16-mixed: fp32 weights, bf16 multiplies. The decoder's cache holds bf16 (no cast per
    step) and its logits match the model's own forward under the same autocast to bf16 rounding."""
    encoded = encode(policy, ["User: 1+2=", "User: 123+4567=?"])
    continuation = torch.randint(3, 60, (2, 4))
    ids = torch.cat([encoded.input_ids, continuation], dim=1)
    mask = torch.cat([encoded.attention_mask, torch.ones_like(continuation)], dim=1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        full = policy.model(input_ids=ids, attention_mask=mask).logits.float()
        decoder = LeanDecoder(policy.model, 2, ids.shape[1])
        steps = [decoder.forward(encoded.input_ids, encoded.attention_mask)]
        for t in range(continuation.shape[1]):
            steps.append(decoder.forward(continuation[:, t:t + 1], torch.ones(2, 1, dtype=mask.dtype)))
    assert decoder.keys.dtype == torch.bfloat16 and next(policy.model.parameters()).dtype == torch.float32
    assert all(step.dtype == torch.bfloat16 for step in steps)  # the multiplies really ran in bf16
    ours = torch.stack(steps, 1).float()
    expected = full[:, encoded.input_ids.shape[1] - 1:]
    assert (ours - expected).abs().max() <= 0.02 * expected.abs().max()  # bf16 keeps ~3 significant digits


def test_inverse_cdf_sampling_follows_the_distribution_and_never_picks_a_zero_probability_token():
    from r1lab.samplers.lean_decode import sample_categorical

    torch.manual_seed(0)
    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0]).repeat(20000, 1)
    draws = sample_categorical(probs, 1.0 - torch.rand(len(probs), 1))
    frequencies = torch.bincount(draws, minlength=6).float() / len(draws)
    assert torch.allclose(frequencies, probs[0], atol=0.015)
    assert frequencies[[0, 2, 5]].sum() == 0
    # The extremes of u in (0, 1]: the first and the last token of positive probability.
    edges = sample_categorical(probs[:2], torch.tensor([[1e-12], [1.0]]))
    assert edges.tolist() == [1, 4]
