"""Plain reward functions (TRL's protocol) used by the tests through `_target_` + `_partial_: true`."""


def digit_share(prompts, completions, **columns):
    """Share of characters that are digits: varies across random completions, so GRPO has a signal."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


def not_a_number(prompts, completions, **columns):
    return [float("nan")] * len(completions)


def one_value(prompts, completions, **columns):
    """A broken reward: one value for the whole batch."""
    return [1.0]


def hangs(prompts, completions, **columns):
    """A broken reward that never returns (in time)."""
    import time

    time.sleep(3600)


def strings(prompts, completions, **columns):
    """A broken reward: numbers as text."""
    return ["1.0"] * len(completions)
