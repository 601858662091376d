"""Length-bucketed log-probs: the same values and gradients as one padded forward pass, on fewer columns."""

import pytest
import torch

from conftest import TINY
from r1lab.models import load_policy
from r1lab.rl.logprobs import completion_logprobs, length_buckets
from r1lab.rollout import PromptBatch
from r1lab.samplers.hf import HFSampler


@pytest.fixture(scope="module")
def policy_and_rollout():
    torch.manual_seed(0)
    policy = load_policy(random_init=TINY)
    prompts = ["User: 1+2=", "User: 123+4567=?", "User: 5+5"]
    batch = PromptBatch(prompts, {"answer": ["3", "4690", "10"]}, [0, 1, 2])
    rollout = HFSampler(group_size=4, max_new_tokens=24).rollout(policy.model, policy.tokenizer, batch)
    # Different completion lengths, so buckets really trim: cut some rows short by hand.
    for row, keep in enumerate([3, 24, 10, 1, 24, 7, 15, 2, 24, 5, 11, 20]):
        rollout.completion_mask[row, keep:] = 0
    rollout.attention_mask[:, rollout.prompt_length:] = rollout.completion_mask.long()
    return policy, rollout


def test_buckets_cover_every_row_once_and_trim_to_their_longest_row(policy_and_rollout):
    _, rollout = policy_and_rollout
    buckets = length_buckets(rollout, 3)
    assert sorted(torch.cat([rows for rows, _, _ in buckets]).tolist()) == list(range(12))
    lengths = rollout.completion_mask.sum(1)
    for rows, _, width in buckets:
        assert width == int(lengths[rows].max())
    assert buckets[0][2] < buckets[-1][2] == 24


@pytest.mark.parametrize("buckets", [2, 3, 12, 50])
def test_bucketed_logprobs_and_gradients_equal_one_padded_pass(policy_and_rollout, buckets):
    policy, rollout = policy_and_rollout
    mask = rollout.completion_mask
    results = []
    for count in (1, buckets):
        policy.model.zero_grad()
        logprobs, entropy = completion_logprobs(policy.model, rollout, 0.8, with_entropy=True, buckets=count)
        (logprobs * mask).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in policy.model.parameters() if p.grad is not None])
        results.append((logprobs * mask, entropy * mask, grads))
    (one_lp, one_ent, one_grad), (lp, ent, grad) = results
    assert torch.allclose(lp, one_lp, atol=1e-4) and torch.allclose(ent, one_ent, atol=1e-4)
    assert torch.allclose(grad, one_grad, rtol=1e-3, atol=1e-5)
    assert lp.shape == mask.shape


def test_logits_are_computed_for_completion_positions_only(policy_and_rollout):
    """The LM head runs on C + 1 positions, not P + C: prompt logits would cost N × P × vocab floats."""
    policy, rollout = policy_and_rollout
    widths = []
    hook = policy.model.lm_head.register_forward_hook(lambda module, args, out: widths.append(args[0].shape[1]))
    try:
        completion_logprobs(policy.model, rollout, buckets=1)
    finally:
        hook.remove()
    assert widths == [rollout.completion_mask.shape[1] + 1] and rollout.prompt_length > 1


@pytest.mark.parametrize("buckets", [1, 3])
def test_shared_prompt_passes_give_the_same_logprobs_and_gradients(policy_and_rollout, buckets):
    """Each group's prompt once, its keys and values expanded to the group's rows: same numbers as every row
    running its own prompt, with G times fewer prompt rows through the model."""
    policy, rollout = policy_and_rollout
    mask = rollout.completion_mask
    results, rows_seen = [], []
    hook = policy.model.model.embed_tokens.register_forward_hook(
        lambda module, args, out: rows_seen.append(args[0].shape))
    try:
        for share in (False, True):
            policy.model.zero_grad()
            rows_seen.clear()
            logprobs, entropy = completion_logprobs(policy.model, rollout, 0.8, with_entropy=True, buckets=buckets,
                                                    share_prompts=share)
            (logprobs * mask).sum().backward()
            grads = torch.cat([p.grad.flatten() for p in policy.model.parameters() if p.grad is not None])
            results.append((logprobs * mask, entropy * mask, grads, list(rows_seen)))
    finally:
        hook.remove()
    (lp0, ent0, grad0, seen0), (lp, ent, grad, seen) = results
    assert torch.allclose(lp, lp0, atol=1e-4) and torch.allclose(ent, ent0, atol=1e-4)
    assert torch.allclose(grad, grad0, rtol=1e-3, atol=1e-5)
    prompt_tokens = lambda shapes: sum(n * w for n, w in shapes)  # noqa: E731
    assert prompt_tokens(seen) < prompt_tokens(seen0)
    # The 3 prompts run once each (whatever the buckets), then the 12 completion rows in their buckets.
    assert seen[0][0] == 3 and sum(n for n, _ in seen[1:]) == 12 and len(seen) == 1 + buckets


def test_shared_prompts_follow_rows_in_any_order(policy_and_rollout):
    """Minibatches shuffle rows: prompts are matched by their tokens, not by row position."""
    policy, rollout = policy_and_rollout
    order = torch.randperm(rollout.num_completions, generator=torch.Generator().manual_seed(3))
    shuffled = rollout.select(order)
    with torch.no_grad():
        plain = completion_logprobs(policy.model, shuffled, buckets=2)
        shared = completion_logprobs(policy.model, shuffled, buckets=2, share_prompts=True)
    assert torch.allclose(shared * shuffled.completion_mask, plain * shuffled.completion_mask, atol=1e-4)
