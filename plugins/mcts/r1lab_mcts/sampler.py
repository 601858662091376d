"""`sampler=mcts`: step-level tree search that returns completions in the usual Rollout format.

Per prompt: select a leaf by PUCT, expand it with `expansions` sampled next steps (a step ends at one of
`step_delimiters`, at EOS, or after `max_step_tokens`), value each new node (the PRM's score of its steps
so far, or the accuracy of one policy rollout from it), back the value up; until `token_budget` tokens
have been generated for the prompt. The G returned completions are the best finished leaves by value;
missing ones are completed from the best leaves by sampling. Every generated token counts toward
`perf/tokens_per_completion` and `perf/tokens_per_correct`, so its cost is comparable to plain sampling.
"""

from __future__ import annotations

from typing import Any

import torch

from r1lab.registry import SAMPLERS
from r1lab.rewards.accuracy import AccuracyReward
from r1lab.rollout import PromptBatch, Rollout
from r1lab.samplers.base import Sampler, rollout_from_texts
from r1lab.samplers.hf import HFSampler
from r1lab_mcts.tree import Node, backup, select

VALUES = ("prm", "rollout")


@SAMPLERS.register("mcts")
class MCTSSampler(Sampler):
    def __init__(self, group_size: int = 8, temperature: float = 1.0, max_new_tokens: int = 256,
                 token_budget: int = 4096, expansions: int = 4, c_puct: float = 1.0, value: str = "prm",
                 prm: dict[str, Any] | None = None, step_delimiters: list[str] = (",", "\n"),
                 max_step_tokens: int = 32, top_p: float = 1.0, top_k: int = 0, engine: str = "auto"):
        super().__init__(group_size, temperature, max_new_tokens)
        if expansions < 1 or max_step_tokens < 1:
            raise ValueError(f"sampler.expansions and sampler.max_step_tokens must be >= 1, got {expansions}, "
                             f"{max_step_tokens}")
        if token_budget < expansions * max_step_tokens:
            raise ValueError(f"sampler.token_budget={token_budget} is below one expansion (expansions × "
                             f"max_step_tokens = {expansions * max_step_tokens} tokens): the search could not grow "
                             f"the tree at all (plain sampling spends up to group_size × max_new_tokens = "
                             f"{group_size * max_new_tokens} tokens per prompt)")
        if value not in VALUES:
            raise ValueError(f"sampler.value={value!r} is unknown; choose one of {', '.join(VALUES)}")
        if value == "prm" and not prm:
            raise ValueError("sampler.value=prm needs sampler.prm (a PRM reward's options: scorer, steps, aggregate)")
        self.token_budget, self.expansions, self.c_puct, self.value = token_budget, expansions, c_puct, value
        self.step_delimiters, self.max_step_tokens = list(step_delimiters), max_step_tokens
        self.top_p, self.top_k = top_p, top_k
        self.steps = HFSampler(group_size, temperature, top_p, top_k, max_new_tokens, record_logprobs=False,
                               engine=engine)
        self.prm = None
        if value == "prm":
            from r1lab_prm.reward import PRMReward  # the PRM plugin's reward term, shared rather than copied

            self.prm = PRMReward(**dict(prm))
        self.accuracy = AccuracyReward()

    def settings_changed(self) -> None:
        """A variant for evaluation (`with_settings`) decodes its steps with its own settings."""
        self.steps = self.steps.with_settings(group_size=self.group_size, temperature=self.temperature,
                                              top_p=self.top_p, top_k=self.top_k, max_new_tokens=self.max_new_tokens)

    # --------------------------------------------------------------------------------------- sampling
    def sample(self, model, tokenizer, prompt: str, prefixes: list[str], max_tokens: int, stop: bool
               ) -> list[tuple[str, int, bool]]:
        """Continue each prefix by one step (`stop`) or to the end: (text, tokens, ended with EOS) each."""
        encoded = tokenizer([prompt + p for p in prefixes], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
        stop_ids = [tokenizer(d, add_special_tokens=False)["input_ids"][-1] for d in self.step_delimiters] if stop else []
        sequences, _ = self.steps.generate(model, tokenizer, encoded, max_new_tokens=max_tokens, stop_ids=stop_ids)
        out = []
        for row in sequences[:, encoded["input_ids"].shape[1]:].tolist():
            ids: list[int] = []
            ended = False
            for token in row:
                if token == tokenizer.eos_token_id:
                    ended = True
                    break
                ids.append(token)
                if token in stop_ids:
                    break
            out.append((tokenizer.decode(ids), len(ids) + int(ended), ended))
        return out

    def evaluate(self, model, tokenizer, prompt: str, answer: Any, nodes: list[Node]) -> tuple[list[float], int]:
        """Values of new nodes, and the tokens spent getting them."""
        if self.value == "prm":
            scores = self.prm([prompt] * len(nodes), [n.text for n in nodes])
            return [0.0 if s is None else float(s) for s in scores], 0
        values, spent = [], 0
        open_nodes = [n for n in nodes if not n.terminal]
        finished = {id(n): n.text for n in nodes if n.terminal}
        if open_nodes:
            budget = max(1, self.max_new_tokens - min(n.tokens for n in open_nodes))
            for node, (text, tokens, _) in zip(open_nodes, self.sample(model, tokenizer, prompt,
                                                                         [n.text for n in open_nodes], budget, False)):
                finished[id(node)] = node.text + text
                spent += tokens
        texts = [finished[id(n)] for n in nodes]
        values = self.accuracy([prompt] * len(nodes), texts, answer=[answer] * len(nodes))
        return [float(v) for v in values], spent

    def search(self, model, tokenizer, prompt: str, answer: Any) -> tuple[list[tuple[str, bool]], int]:
        """G completions (text, finished) for one prompt, and the tokens generated to find them."""
        root, spent = Node(""), 0
        while spent < self.token_budget:
            leaf = select(root, self.c_puct)
            if leaf.terminal:
                backup(leaf, leaf.value)  # nothing to expand: revisit (the search is done if all leaves are)
                if all(node.terminal for node in root.leaves()):
                    break
                continue
            room = self.max_new_tokens - leaf.tokens
            steps = self.sample(model, tokenizer, prompt, [leaf.text] * self.expansions,
                                min(self.max_step_tokens, room), True)
            for text, tokens, ended in steps:
                child = Node(leaf.text + text, prior=1.0 / self.expansions, parent=leaf, finished=ended,
                             tokens=leaf.tokens + tokens)
                child.terminal = ended or child.tokens >= self.max_new_tokens
                leaf.children.append(child)
                spent += tokens
            values, cost = self.evaluate(model, tokenizer, prompt, answer, leaf.children)
            spent += cost
            for child, value in zip(leaf.children, values):
                backup(child, value)
        return self.pick(model, tokenizer, prompt, root, spent)

    def pick(self, model, tokenizer, prompt: str, root: Node, spent: int) -> tuple[list[tuple[str, bool]], int]:
        leaves = sorted(root.leaves(), key=lambda n: n.value, reverse=True)
        done = [(n.text, n.finished) for n in leaves if n.terminal][:self.group_size]
        missing = self.group_size - len(done)
        if missing:
            starts = [n for n in leaves if not n.terminal and n is not root] or [root]
            nodes = [starts[i % len(starts)] for i in range(missing)]
            budget = max(1, self.max_new_tokens - min(n.tokens for n in nodes))
            for node, (text, tokens, ended) in zip(nodes, self.sample(model, tokenizer, prompt,
                                                                       [n.text for n in nodes], budget, False)):
                done.append((node.text + text, ended))
                spent += tokens
        return done, spent

    @torch.no_grad()
    def rollout(self, model, tokenizer, batch: PromptBatch) -> Rollout:
        prompts, columns = batch.repeat(self.group_size)
        completions, finished, cost = [], [], []
        answers = batch.columns.get("answer", [None] * len(batch))
        for prompt, answer in zip(batch.prompts, answers):
            found, spent = self.search(model, tokenizer, prompt, answer)
            completions += [text for text, _ in found]
            finished += [ended for _, ended in found]
            cost += [spent / self.group_size] * self.group_size
        rollout = rollout_from_texts(tokenizer, prompts, completions, finished, self.group_size, columns, model.device)
        rollout.generated_tokens = torch.tensor(cost)
        return rollout
