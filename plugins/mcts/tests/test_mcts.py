"""MCTS sampler: PUCT and backup by hand, bad budgets, real searches with the toy model, the experiment."""

import math

import pytest
import torch

from r1lab.models import load_policy
from r1lab.rollout import PromptBatch
from r1lab_mcts.sampler import MCTSSampler
from r1lab_mcts.tree import Node, backup, select

PRM = {"scorer": "pkg://r1lab_prm/toy_prm", "steps": "toy", "aggregate": "min"}


def test_puct_and_backup_by_hand():
    root = Node("")
    a, b = Node("a", prior=0.5, parent=root), Node("b", prior=0.5, parent=root)
    root.children = [a, b]
    backup(a, 1.0)
    backup(b, 0.0)
    backup(b, 0.5)
    assert (root.visits, root.value_sum) == (3, 1.5)
    assert (a.visits, a.value, b.visits, b.value) == (1, 1.0, 2, 0.25)
    # PUCT = Q + c · P · sqrt(N_parent) / (1 + N): a = 1 + 0.5·√3/2, b = 0.25 + 0.5·√3/3
    assert a.puct(1.0) == pytest.approx(1 + 0.5 * math.sqrt(3) / 2)
    assert b.puct(1.0) == pytest.approx(0.25 + 0.5 * math.sqrt(3) / 3)
    assert select(root, 1.0) is a
    assert select(root, 100.0) is a  # equal priors: exploration favours the less visited one, which is a too


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"token_budget": 100, "expansions": 4, "max_step_tokens": 32}, "token_budget=100 is below one expansion"),
    ({"value": "oracle"}, "choose one of prm, rollout"),
    ({"value": "prm", "prm": None}, "needs sampler.prm"),
    ({"expansions": 0, "value": "rollout"}, "expansions and sampler.max_step_tokens must be >= 1"),
])
def test_bad_search_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MCTSSampler(**({"prm": PRM} | kwargs))


@pytest.fixture(scope="module")
def toy():
    return load_policy("pkg://r1lab.toy/base_model")


def batch():
    return PromptBatch(["User: 25+9\nAssistant: <think>", "User: 4821+391\nAssistant: <think>"],
                       {"answer": ["34", "5212"]}, [0, 1])


@pytest.mark.parametrize("value", ["prm", "rollout"])
def test_a_search_returns_group_size_completions_in_rollout_format(toy, value):
    torch.manual_seed(0)
    sampler = MCTSSampler(group_size=3, max_new_tokens=48, token_budget=200, expansions=3, value=value, prm=PRM)
    rollout = sampler.rollout(toy.model.eval(), toy.tokenizer, batch())
    assert rollout.num_completions == 6 and rollout.prompts[:3] == [batch().prompts[0]] * 3
    assert rollout.columns["answer"] == ["34"] * 3 + ["5212"] * 3
    lengths = rollout.completion_lengths.view(2, 3)
    # The search stops at its budget or when every leaf has ended; it paid for at least the longest
    # completion it returns, and at most its budget plus one expansion plus completing the group.
    per_prompt = rollout.generated_tokens.view(2, 3).sum(1)
    assert (per_prompt >= lengths.max(1).values).all()
    assert (per_prompt <= 200 + 3 * 32 + 3 * 48).all()
    for text, ids, mask, cut in zip(rollout.completions, rollout.completion_ids, rollout.completion_mask,
                                    rollout.truncated):
        kept = ids[mask.bool()].tolist()
        assert toy.tokenizer.decode(kept if cut else kept[:-1]) == text
        assert (kept[-1] == toy.tokenizer.eos_token_id) is (not bool(cut))


def test_a_search_spends_its_budget_when_the_tree_keeps_growing(toy):
    # Textbook prompts always verify: long, comma-separated traces, so there is always a step to expand.
    torch.manual_seed(1)
    sampler = MCTSSampler(group_size=2, max_new_tokens=64, token_budget=150, expansions=2, max_step_tokens=16,
                          value="prm", prm=PRM)
    textbook = PromptBatch(["Textbook: User: 48213+39175\nAssistant: <think>"], {"answer": ["87388"]}, [0])
    rollout = sampler.rollout(toy.model.eval(), toy.tokenizer, textbook)
    assert rollout.generated_tokens.sum() >= 150
    assert rollout.generated_tokens.sum() > rollout.completion_lengths.sum()


def test_the_experiment_runs_both_samplers(tmp_path):
    from r1lab.testing import read_scalars, run_cli

    run_cli(["+experiment=mcts_vs_sampling", "trainer.max_steps=1", "rl.prompts_per_step=1", "sampler.group_size=2",
             "sampler.max_new_tokens=16", "callbacks.heldout.limit=8", "trainer.enable_progress_bar=false",
             f"hydra.sweep.dir={tmp_path}"], cwd=tmp_path)
    runs = sorted(p for p in tmp_path.iterdir() if (p / "tb").is_dir())
    assert len(runs) == 2
    chosen = [(run / ".hydra" / "overrides.yaml").read_text() for run in runs]
    assert "sampler=hf" in chosen[0] and "sampler=mcts" in chosen[1]
    for run in runs:
        scalars = read_scalars(run)
        assert len(scalars["perf/tokens_per_completion"]) == 1
        assert scalars["perf/generated_tokens"][0][1] > 0  # the budget's running total
        assert [step for step, _ in scalars["eval/heldout_greedy"]] == [0]  # the held-out check after training
