"""Format rewards on labelled completions."""
from __future__ import annotations

import pytest
import torch

from r1lab.rewards import get_reward
from r1lab.rewards.format import format_reward

# (completion, strict, lenient)
CASES = [
    ("<think>plan</think><answer>42</answer>", 1, 1),
    ("<think>plan</think>\n<answer>42</answer>", 1, 1),
    ("  \n<think>\nplan\n</think>\n\n<answer>\n42\n</answer>\n ", 1, 1),
    ("<think>a<b</think><answer>x > y</answer>", 1, 1),  # stray < > are fine
    ("<think></think><answer>42</answer>", 0, 1),  # empty reasoning
    ("<think>  \n </think><answer>42</answer>", 0, 1),
    ("<think>plan</think><answer></answer>", 0, 0),  # empty answer
    ("<think>plan</think><answer>  </answer>", 0, 0),
    ("<think>plan</think>", 0, 0),
    ("<answer>42</answer>", 0, 0),
    ("plan</think><answer>42</answer>", 0, 0),  # the prepended <think> is missing
    ("<think>plan<answer>42</answer>", 0, 0),
    ("<think>plan</think>so<answer>42</answer>", 0, 1),  # text between the blocks
    ("<think>plan</think><answer>42</answer> done", 0, 1),  # text after
    ("Sure! <think>plan</think><answer>42</answer>", 0, 1),  # text before
    ("<answer>42</answer><think>plan</think>", 0, 0),  # wrong order
    ("<think>plan</think><answer>42", 0, 0),  # unclosed answer
    ("<think>plan <think>more</think><answer>42</answer>", 0, 1),  # nested think
    ("<think>plan</think><think>again</think><answer>42</answer>", 0, 1),  # two thinks
    ("<think>plan</think><answer>4</answer><answer>2</answer>", 0, 1),  # two answers
    ("<think>try <answer>1</answer></think><answer>42</answer>", 0, 1),  # answer tag in reasoning
    ("<think>plan</think><answer>42 </think></answer>", 0, 1),
    ("<think>plan</think><answer><answer>42</answer>", 0, 1),
    ("<THINK>plan</THINK><ANSWER>42</ANSWER>", 0, 0),  # tags are case-sensitive
    ("<think>plan</think> <answer>42</answer></answer>", 0, 1),
    ("", 0, 0),
    ("just an answer: 42", 0, 0),
]


@pytest.mark.parametrize("completion,strict,lenient", CASES)
def test_labelled(completion, strict, lenient):
    assert format_reward([completion]).item() == strict
    assert format_reward([completion], strict=False).item() == lenient


def test_batch_shape_dtype_and_registry():
    completions = [c for c, _, _ in CASES]
    strict = format_reward(completions)
    assert strict.dtype == torch.float32 and strict.shape == (len(CASES),)
    assert strict.tolist() == [float(s) for _, s, _ in CASES]
    assert get_reward("format")(completions, numbers=None).tolist() == strict.tolist()
    lenient = get_reward("format_lenient")(completions, target=None)
    assert lenient.tolist() == [float(l) for _, _, l in CASES]
    assert (lenient >= strict).all()  # strict implies lenient


def test_empty_batch():
    assert format_reward([]).shape == (0,)
