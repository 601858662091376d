"""LoRA through peft (model.peft=lora): only the adapters train, the reference is the base with the adapters off,
checkpoints hold the adapters, the policy is exported merged or as an adapter; gradient checkpointing."""

import json

import pytest
import torch

from r1lab.models import load_policy
from r1lab.models.policy import ModelLoadError
from r1lab.rl.logprobs import completion_logprobs
from r1lab.rollout import PromptBatch
from r1lab.samplers.hf import HFSampler
from r1lab.testing import FAST, read_scalars, run_cli

TOY = "pkg://r1lab.toy/base_model"
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}
COMMON = ["+experiment=r1_zero", *FAST, "callbacks.diagnostics=null", "sampler.max_new_tokens=24"]


def perturbed_lora_policy():
    """The toy model with LoRA adapters that change its outputs (B is zero at init: nudge it)."""
    policy = load_policy(TOY, peft="lora", lora=LORA)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in policy.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    return policy


def test_only_the_adapters_train():
    policy = load_policy(TOY, peft="lora", lora=LORA)
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    total = sum(p.numel() for p in policy.model.parameters())
    assert sum(p.numel() for p in policy.model.parameters() if p.requires_grad) < 0.1 * total
    with pytest.raises(ModelLoadError, match="model.peft='qlora' is unknown; choose one of lora"):
        load_policy(TOY, peft="qlora")
    with pytest.raises(ValueError, match="model.lora needs r >= 1"):
        load_policy(TOY, peft="lora", lora={**LORA, "r": 0})


def test_the_reference_is_the_base_model_with_the_adapters_off():
    policy, base = perturbed_lora_policy(), load_policy(TOY)
    batch = PromptBatch(["User: 12+34\nAssistant: <think>", "User: 5+6\nAssistant: <think>"], {"answer": ["46", "11"]},
                        [0, 1])
    rollout = HFSampler(group_size=2, max_new_tokens=12).rollout(policy.model, policy.tokenizer, batch)
    with torch.no_grad():
        adapted = completion_logprobs(policy.model, rollout)
        with policy.model.disable_adapter():
            switched_off = completion_logprobs(policy.model, rollout)
        plain = completion_logprobs(base.model, rollout)
    mask = rollout.completion_mask.bool()
    assert torch.allclose(switched_off[mask], plain[mask], atol=1e-5)
    assert (adapted[mask] - plain[mask]).abs().max() > 1e-3  # the adapters do change the policy
    # The lean decoder samples from the adapted model: its recorded log-probs are the policy's.
    assert torch.allclose(rollout.sampler_logprobs[mask], adapted[mask], atol=1e-4)


@pytest.mark.slow
def test_a_lora_run_checkpoints_adapters_resumes_and_exports(tmp_path):
    lora = ["model.peft=lora", "model.lora.r=4", "model.lora.alpha=8", "model.lora.dropout=0.0"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_cli([*COMMON, *lora, "trainer.max_steps=3", f"hydra.run.dir={whole}"], cwd=tmp_path)
    run_cli([*COMMON, *lora, "trainer.max_steps=2", f"hydra.run.dir={split}"], cwd=tmp_path)
    checkpoint = torch.load(split / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["state_dict"] and all("lora_" in key for key in checkpoint["state_dict"])
    run_cli([*COMMON, *lora, "trainer.max_steps=3", "resume=auto", "callbacks.policy.peft_export=adapter",
             f"hydra.run.dir={split}"], cwd=tmp_path)
    a, b = read_scalars(whole), read_scalars(split)
    for tag in ("train/reward", "train/loss", "train/kl", "train/grad_norm"):
        assert [v for _, v in b[tag]] == pytest.approx([v for _, v in a[tag]], rel=1e-4, abs=1e-6), tag
    assert max(v for _, v in a["train/kl"]) > 0  # the adapters moved the policy away from its base

    # Exported merged: a plain model; as an adapter: r1lab loads it onto its base. The same weights either way.
    from transformers import AutoModelForCausalLM

    assert not (whole / "policy" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(whole / "policy").state_dict()
    assert json.loads((split / "policy" / "adapter_config.json").read_text())["r"] == 4
    reloaded = load_policy(str(split / "policy")).model.state_dict()
    assert set(reloaded) <= set(merged) and all(torch.allclose(reloaded[k], merged[k], atol=1e-5) for k in reloaded)
    run_cli(["eval", f"model={split / 'policy'}", "task=toy_addition", "n=2", "k=1", "limit=4", "greedy=false",
             "max_new_tokens=16", f"hydra.run.dir={tmp_path / 'eval'}"], cwd=tmp_path)
    assert "(LoRA, merged)" in json.loads((tmp_path / "eval" / "eval.json").read_text())["model"]


@pytest.mark.slow
def test_gradient_checkpointing_changes_memory_not_the_run(tmp_path):
    plain, checkpointed = tmp_path / "plain", tmp_path / "checkpointed"
    run_cli([*COMMON, "trainer.max_steps=2", f"hydra.run.dir={plain}"], cwd=tmp_path)
    run_cli([*COMMON, "trainer.max_steps=2", "model.gradient_checkpointing=true", f"hydra.run.dir={checkpointed}"],
            cwd=tmp_path)
    a, b = read_scalars(plain), read_scalars(checkpointed)
    for tag in ("train/reward", "train/loss", "train/kl", "train/grad_norm"):
        assert [v for _, v in b[tag]] == pytest.approx([v for _, v in a[tag]], rel=1e-4, abs=1e-6), tag
    assert "share_prompts is off" in (checkpointed / "r1lab.log").read_text()


def test_the_lean_decoder_samples_a_lora_policy_through_merged_weights():
    """One multiply by W + s·BA per layer instead of three: the adapters' own forwards never run while decoding,
    the model's weights are untouched, and with the adapters off the decoder samples the base model."""
    from r1lab.samplers.lean_decode import LeanDecoder, merged_lora_weights

    policy = perturbed_lora_policy()
    model = policy.model.get_base_model()
    before = {name: p.clone() for name, p in policy.model.named_parameters()}
    calls = []
    hooks = [m.register_forward_hook(lambda *args: calls.append(1)) for n, m in model.named_modules()
             if n.endswith("lora_A.default")]
    encoded = policy.tokenizer(["User: 12+34\nAssistant: <think>"], return_tensors="pt", add_special_tokens=False)
    try:
        with torch.no_grad():
            decoder = LeanDecoder(model, 1, encoded.input_ids.shape[1])
            logits = decoder.forward(encoded.input_ids, encoded.attention_mask)
            adapter_calls_while_decoding = len(calls)
            expected = policy.model(**encoded).logits[:, -1]
    finally:
        for hook in hooks:
            hook.remove()
    assert len(decoder.merged) == len(hooks) > 0 and adapter_calls_while_decoding == 0
    assert len(calls) == len(hooks)  # the model's own forward does run them (the hooks work)
    assert torch.allclose(logits, expected, atol=1e-4)
    assert all(torch.equal(p, before[name]) for name, p in policy.model.named_parameters())
    with policy.model.disable_adapter():
        assert merged_lora_weights(model, torch.float32) == {}
