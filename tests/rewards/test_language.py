"""Language-consistency reward on labelled completions."""
from __future__ import annotations

import pytest
import torch

from r1lab.rewards import get_reward
from r1lab.rewards.language import language_consistency_reward, reasoning_text

# (completion, language, expected share)
CASES = [
    ("<think>First add the numbers then check</think><answer>5</answer>", "en", 1.0),
    ("<think>First add 三 numbers</think>", "en", 3 / 4),  # one CJK character
    ("<think>先 add</think>", "en", 1 / 2),
    ("<think>我们先加</think>", "en", 0.0),
    ("<think>Сначала add them</think>", "en", 2 / 3),  # Cyrillic word
    ("<think>café naïve résumé</think>", "en", 1.0),  # accented Latin is Latin
    ("<think>x + y = 12, so x = 5</think>", "en", 1.0),  # only "so" is a word
    ("<think>12 + 5 = 17 !!</think>", "en", 1.0),  # no words at all
    ("<think></think><answer>中文</answer>", "en", 1.0),  # the answer is not judged
    ("<think>ok</think><answer>中文答案</answer>", "en", 1.0),
    ("no tags at all, plain English", "en", 1.0),
    ("没有标签 plain", "en", 1 / 5),  # whole completion when no tags
    ("<think>unclosed reasoning 中", "en", 2 / 3),
    ("reasoning before the close</think><answer>中</answer>", "en", 1.0),
    ("<think>hello_world snake_case</think>", "en", 1.0),  # underscores split words
    ("<think>所以答案是五</think>", "zh", 1.0),
    ("<think>所以 x = 5，对吗</think>", "zh", 1.0),  # single-letter variables are ignored
    ("<think>所以 answer 是五</think>", "zh", 4 / 5),
    ("<think>First add</think>", "zh", 0.0),
    ("<think>12 + 5</think>", "zh", 1.0),
    ("<think>これは日本語</think>", "zh", 3 / 4),  # the kana run is one "other" word; 日本語 are 3 CJK
    ("<think>한국어 中</think>", "zh", 1 / 2),
]


@pytest.mark.parametrize("completion,language,expected", CASES)
def test_labelled(completion, language, expected):
    got = language_consistency_reward([completion], language=language)
    assert got.item() == pytest.approx(expected)


def test_batch_and_registry():
    completions = [c for c, lang, _ in CASES if lang == "en"]
    got = get_reward("language")(completions, numbers=None)
    assert got.dtype == torch.float32 and got.shape == (len(completions),)
    assert got.tolist() == pytest.approx([e for _, lang, e in CASES if lang == "en"])
    zh = [c for c, lang, _ in CASES if lang == "zh"]
    assert get_reward("language_zh")(zh).tolist() == pytest.approx([e for _, lang, e in CASES if lang == "zh"])


def test_reasoning_text():
    assert reasoning_text("<think>a b</think><answer>c</answer>") == "a b"
    assert reasoning_text("a b</think>c") == "a b"
    assert reasoning_text("<think>a b") == "a b"
    assert reasoning_text("plain") == "plain"


def test_unknown_language_raises():
    with pytest.raises(ValueError, match="supported"):
        language_consistency_reward(["x"], language="fr")


def test_empty_batch():
    assert language_consistency_reward([]).shape == (0,)
