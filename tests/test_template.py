"""split_completion reads thinking and answer the same way whichever side opened <think>."""

from r1lab.rewards.format import FormatReward
from r1lab.judging.template import split_completion

TOY_PROMPT = "User: 12+34=?\nAssistant: <think>"
R1_PROMPT = "... User: 12+34=? Assistant:"


def test_a_toy_completion_starts_inside_the_thinking_opened_by_the_prompt():
    parts = split_completion("12+34 is 46</think><answer>46</answer>", TOY_PROMPT)
    assert parts.thinking == "12+34 is 46" and parts.answer == "46"
    assert parts.thinking_closed and parts.opened_in_prompt


def test_an_r1_style_completion_opens_its_own_thinking():
    parts = split_completion(" <think> add the columns </think> <answer> 46 </answer>", R1_PROMPT)
    assert parts.thinking == "add the columns" and parts.answer == "46"
    assert parts.thinking_closed and not parts.opened_in_prompt


def test_unfinished_or_answerless_completions():
    cut = split_completion("12+34 is 4", TOY_PROMPT)  # max_new_tokens cut it mid-thought
    assert cut.thinking == "12+34 is 4" and cut.answer is None and not cut.thinking_closed
    no_close = split_completion("<think>maybe 46<answer>46</answer>")  # the answer without closing the thinking
    assert no_close.thinking == "maybe 46" and no_close.answer == "46" and not no_close.thinking_closed
    unclosed_answer = split_completion("46</think><answer>46", TOY_PROMPT)
    assert unclosed_answer.answer is None and unclosed_answer.thinking == "46"


def test_the_answer_is_read_after_the_thinking_only():
    parts = split_completion("I could write <answer>1</answer> here</think><answer>2</answer>", TOY_PROMPT)
    assert parts.answer == "2" and parts.thinking == "I could write"


def test_the_format_reward_agrees_on_both_prompt_styles():
    reward = FormatReward()
    assert reward([TOY_PROMPT, R1_PROMPT], ["46</think><answer>46</answer>",
                                            "<think>46</think><answer>46</answer>"]) == [1.0, 1.0]
    assert reward([R1_PROMPT], ["46</think><answer>46</answer>"]) == [0.0]  # nothing opened the thinking
