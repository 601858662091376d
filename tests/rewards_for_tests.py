"""Plain reward functions (TRL's protocol) used by the tests through `_target_` + `_partial_: true`."""


def digit_share(prompts, completions, **columns):
    """Share of characters that are digits: varies across random completions, so GRPO has a signal."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


def not_a_number(prompts, completions, **columns):
    return [float("nan")] * len(completions)
