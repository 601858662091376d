"""Score steps with a process reward model: a `transformers` token-classification model read at step ends.

The PRM input is the prompt followed by each step and a separator; the model's 2-way logits at each
separator give P(step is correct) (label 1). This is the format of the toy PRM that r1lab trains and of
Qwen2.5-Math-PRM-style checkpoints (separator `<extra_0>`; theirs needs `trust_remote_code=true`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from r1lab.models.policy import load_tokenizer, resolve_package_path


class PRMLoadError(ValueError):
    pass


class PRMScorer:
    def __init__(self, path: str, separator: str = "\n", batch_size: int = 64, trust_remote_code: bool = False,
                 device: str | None = None):
        folder = Path(resolve_package_path(str(path))).expanduser()
        if not (folder / "config.json").is_file():
            raise PRMLoadError(f"reward.prm.scorer={path!r} is not a model folder (no config.json in {folder}); "
                               "point it at a local transformers PRM checkpoint, or train the toy PRM with "
                               "+experiment=toy_prm_train")
        from transformers import AutoModel, AutoModelForTokenClassification

        try:
            self.model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=trust_remote_code)
        except (ValueError, OSError) as exc:
            if not trust_remote_code:
                raise PRMLoadError(f"could not load a token-classification PRM from {folder}: {exc}; a PRM with its "
                                   "own code (e.g. Qwen2.5-Math-PRM) needs reward.prm.trust_remote_code=true") from exc
            self.model = AutoModel.from_pretrained(folder, trust_remote_code=True)
        self.model.eval().requires_grad_(False)
        if device:
            self.model.to(device)
        self.tokenizer = load_tokenizer(folder)
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        separator_ids = self.tokenizer(separator, add_special_tokens=False)["input_ids"]
        if len(separator_ids) != 1:
            raise PRMLoadError(f"the PRM separator {separator!r} must be one token of the PRM's tokenizer, "
                               f"got {len(separator_ids)} tokens")
        self.separator, self.separator_id = separator, separator_ids[0]
        self.batch_size = batch_size

    def text(self, prompt: str, steps: list[str]) -> str:
        return prompt + "".join(step.replace(self.separator, " ") + self.separator for step in steps)

    @torch.no_grad()
    def score(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        """P(correct) of every step of every completion."""
        scores: list[list[float]] = []
        device = next(self.model.parameters()).device
        for start in range(0, len(prompts), self.batch_size):
            texts = [self.text(p, s) for p, s in zip(prompts[start:start + self.batch_size],
                                                      steps[start:start + self.batch_size])]
            encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            out = self.model(**encoded)
            logits = out.logits if hasattr(out, "logits") else out[0]
            probs = logits.float().softmax(-1)[..., 1]
            for row, (ids, mask) in enumerate(zip(encoded["input_ids"], encoded["attention_mask"])):
                at = (ids == self.separator_id) & mask.bool()
                # The prompt may itself contain separators: a completion's steps are the last ones.
                wanted = len(steps[start + row])
                scores.append(probs[row][at][-wanted:].tolist() if wanted else [])
        return scores
