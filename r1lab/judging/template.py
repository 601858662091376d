"""Where the R1 template's tags live, and a completion split into its thinking and its answer.

The template asks for `<think> reasoning </think> <answer> answer </answer>`. Where the opening `<think>` is
depends on the prompt: the toy and `short` prompts end in "Assistant: <think>" (TinyZero style), so their
completions start inside the thinking and hold no `<think>` of their own; the `r1` prompt and chat prompts
leave the tag to the completion. A reward that looks for `<think>` in the completion alone would score the
toy task 0 everywhere; `split_completion(completion, prompt)` reads the parts the same way for both styles.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"


def with_prompt_opening(prompt: str, completion: str, opening: str = THINK_OPEN) -> str:
    """The completion as if it carried the opening tag a prompt ending in `opening` left out."""
    if prompt.rstrip().endswith(opening) and not completion.lstrip().startswith(opening):
        return opening + completion
    return completion


@dataclass(frozen=True)
class CompletionParts:
    """A completion read against the template.

    thinking: the reasoning (the text inside `<think>`; without `</think>`, everything up to `<answer>`, or the
        whole completion), stripped and without tags; "" when there is none.
    answer: the text inside `<answer>…</answer>`, stripped; None when the completion has no closed answer.
    thinking_closed: the completion wrote `</think>` (the model finished thinking).
    opened_in_prompt: the `<think>` came from the prompt, not from the completion.
    """

    thinking: str
    answer: str | None
    thinking_closed: bool
    opened_in_prompt: bool


def split_completion(completion: str, prompt: str = "") -> CompletionParts:
    """Thinking and answer of `completion`, whichever side (prompt or completion) opened `<think>`."""
    full = with_prompt_opening(prompt, completion)
    opened_in_prompt = len(full) != len(completion)
    thinking = full
    closed = THINK_CLOSE in thinking
    for end in (THINK_CLOSE, ANSWER_OPEN):
        thinking = thinking.split(end, 1)[0]
    thinking = thinking.replace(THINK_OPEN, "").strip()
    answer = None
    after = full.split(THINK_CLOSE, 1)[1] if closed else full
    if ANSWER_OPEN in after and ANSWER_CLOSE in after.split(ANSWER_OPEN, 1)[1]:
        answer = after.split(ANSWER_OPEN, 1)[1].split(ANSWER_CLOSE, 1)[0].strip()
    return CompletionParts(thinking, answer, closed, opened_in_prompt)
