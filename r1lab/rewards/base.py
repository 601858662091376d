"""Rewards: `reward(prompts, completions, **columns) -> list[float | None]` (TRL's reward-function protocol).

Several rewards form a `RewardSet`: named terms with weights. The total is the weighted sum; a term may
return None for completions it does not apply to (it then adds nothing, as in TRL). A term that raises is
retried one completion at a time and the completions it fails on score None; the run goes on.

The task's verdict on each completion (`correct`: 1, 0, or NaN without a gold answer) is computed once, before
the terms run; every term gets it as the column `correct`, so a term about correctness need not check again.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from r1lab.rollout import ScoredRollout

log = logging.getLogger(__name__)

RewardFn = Callable[..., Sequence[float | None]]


class Reward:
    """Base class for reward terms. Subclasses implement `__call__(prompts, completions, **columns)`.

    A term may also define `metrics(values, completions, **columns) -> dict[str, float]`: diagnostics about
    its own values (NaN where it returned None) that the step logs with the rest (e.g. `lang/mixed_rate`).
    """

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
        raise NotImplementedError


class RewardSet:
    """Named, weighted reward terms. `timeouts` (seconds, per term; `reward.<term>.timeout_s`) bound a term
    that may hang: past it, the term scores None for the batch and its completions count as failures."""

    def __init__(self, terms: Mapping[str, tuple[RewardFn, float]], timeouts: Mapping[str, float] | None = None):
        if not terms:
            raise ValueError("reward must name at least one term, e.g. reward=[accuracy,format]")
        self.terms = dict(terms)
        self.timeouts = {name: float(t) for name, t in (timeouts or {}).items() if t is not None}
        for name, seconds in self.timeouts.items():
            if name not in self.terms or not seconds > 0:
                raise ValueError(f"reward.{name}.timeout_s must be > 0 seconds for a reward term, got {seconds}")

    @classmethod
    def from_config(cls, cfg: DictConfig | Mapping[str, Any]) -> RewardSet:
        terms, timeouts = {}, {}
        for name, term_cfg in cfg.items():
            if term_cfg is None:  # `reward.format=null` drops a term
                continue
            options = OmegaConf.to_container(term_cfg, resolve=True) if isinstance(term_cfg, DictConfig) else dict(term_cfg)
            if "_target_" not in options:
                raise ValueError(f"reward term {name!r} has no _target_; each term under reward.<name> needs one")
            weight = float(options.pop("weight", 1.0))
            timeouts[name] = options.pop("timeout_s", None)
            terms[name] = (instantiate(options), weight)
        return cls(terms, timeouts)

    @property
    def names(self) -> list[str]:
        return list(self.terms)

    def __call__(self, prompts: list[str], completions: list[str], columns: Mapping[str, list],
                 correct: Sequence[float] | None = None) -> ScoredRollout:
        """Score every completion with every term. `correct`: the task's verdict per completion, passed to
        the terms as the column `correct` and stored on the result (NaN throughout when not given)."""
        if correct is None:
            correct = [math.nan] * len(completions)
        else:
            correct = [float(v) for v in correct]
            if len(correct) != len(completions):
                raise ValueError(f"{len(correct)} verdicts for {len(completions)} completions")
            columns = {**columns, "correct": correct}
        total = torch.zeros(len(completions))
        terms: dict[str, Tensor] = {}
        failures: dict[str, int] = {}
        nonfinite = 0
        for name, (fn, weight) in self.terms.items():
            raw, failures[name] = _call_term(name, fn, prompts, completions, columns, self.timeouts.get(name))
            if len(raw) != len(completions):
                raise ValueError(f"reward term {name!r} returned {len(raw)} values for {len(completions)} completions")
            _check_values(name, raw)
            bad = sum(1 for v in raw if v is not None and not math.isfinite(float(v)))
            if bad:
                log.warning("reward term %r returned %d non-finite value(s) (nan or inf) in this batch; the step is "
                            "skipped (a reward should return a finite number, or None where it does not apply)",
                            name, bad)
            nonfinite += bad
            terms[name] = torch.tensor([math.nan if v is None else float(v) for v in raw], dtype=torch.float32)
            # None adds nothing to the total; a returned nan/inf stays visible in it.
            total += weight * torch.tensor([0.0 if v is None else float(v) for v in raw], dtype=torch.float32)
        return ScoredRollout(torch.tensor(correct, dtype=torch.float32), total, terms, failures, nonfinite)

    def term_metrics(self, completions: list[str], columns: Mapping[str, list], scored: ScoredRollout
                     ) -> dict[str, float]:
        """What the terms that define `metrics(values, completions, **columns)` report about this batch."""
        metrics: dict[str, float] = {}
        columns = {**columns, "correct": scored.correct.tolist()}
        for name, (fn, _) in self.terms.items():
            report = getattr(fn, "metrics", None)
            if callable(report):
                metrics |= report(scored.terms[name].tolist(), completions, **columns)
        return metrics


def _check_values(name: str, values: Sequence[Any]) -> None:
    """Numbers or None only: a string or another object would be coerced (or fail) far from its cause."""
    for index, value in enumerate(values):
        if value is not None and (isinstance(value, (str, bytes)) or not hasattr(value, "__float__")):
            raise ValueError(f"reward term {name!r} returned {value!r} ({type(value).__name__}) for completion "
                            f"{index}; a reward returns a number (float) per completion, or None where it does not "
                            "apply")


def _call_term(name: str, fn: RewardFn, prompts, completions, columns, timeout_s: float | None = None
               ) -> tuple[list, int]:
    try:
        if timeout_s is None:
            return list(fn(prompts, completions, **columns)), 0
        return list(_within(timeout_s, fn, prompts, completions, **columns)), 0
    except TimeoutError:
        log.warning("reward term %r took longer than its timeout_s=%s s; its %d completions score None",
                    name, timeout_s, len(completions))
        return [None] * len(completions), len(completions)
    except Exception:
        log.exception("reward term %r raised on a batch; scoring its completions one at a time", name)
    scores, failed = [], 0
    for i in range(len(completions)):
        try:
            scores.append(fn(prompts[i:i + 1], completions[i:i + 1], **{k: v[i:i + 1] for k, v in columns.items()})[0])
        except Exception as exc:
            failed += 1
            log.warning("reward term %r raised on completion %d (scored None): %s: %s", name, i, type(exc).__name__, exc)
            scores.append(None)
    return scores, failed


def _within(seconds: float, fn: RewardFn, *args: Any, **kwargs: Any) -> Sequence[float | None]:
    """`fn(*args, **kwargs)`, or TimeoutError after `seconds`. The call runs in a daemon thread: Python cannot
    stop a thread, so a hung term keeps running in the background (it cannot block the run or its exit);
    a term whose work must be stopped belongs in a separate process."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=call, daemon=True, name="r1lab-reward")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
