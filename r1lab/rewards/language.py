"""Language-consistency reward (DeepSeek-R1, section 2.3.3): the share of the reasoning's words
written in the target language.

Policy:

* The reasoning is the content of the first ``<think>`` up to the next ``</think>`` (to the end
  if it is never closed); with no ``<think>`` tag at all, the text before ``</think>`` if there is
  one, else the whole completion.
* Words: each CJK ideograph (Unified Ideographs, Extension A-F, Compatibility) is one word,
  because Chinese does not separate words with spaces; any other maximal run of letters of one
  script class is one word. Digits, punctuation, math symbols and underscores are not words.
  Single ASCII letters are ignored as well: they are almost always math variables (``x``,
  ``n``), which are not evidence of language mixing in a Chinese trace.
* Script classes: *Latin* (ASCII letters plus the accented Latin letters U+00C0-U+024F and
  U+1E00-U+1EFF), *CJK* (above), *other* (any other letter: Cyrillic, Greek, kana, Hangul, ...).
* ``en`` counts Latin words as on-target, ``zh`` counts CJK characters.
* Reward = on-target words / all words, in [0, 1]. A reasoning with no words scores **1.0**:
  nothing in it is in the wrong language, and the format reward, not this one, is the place to
  punish an empty trace.

>>> language_consistency_reward(["<think>First add the numbers</think>", "<think>先 add</think>"]).tolist()
[1.0, 0.5]
>>> language_consistency_reward(["<think>所以 x = 5, 对吗</think>"], language="zh").tolist()
[1.0]
"""
from __future__ import annotations

import re
from typing import Sequence

import torch

from r1lab.rewards.registry import register_reward

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"  # skips × (D7) and ÷ (F7)
# [^\W\d_...] = letters only (word characters minus digits, underscore and the listed ranges).
_LATIN_WORD = re.compile(rf"[{_LATIN}]+")
_SINGLE_ASCII_LETTER = re.compile(rf"(?<![{_LATIN}])[A-Za-z](?![{_LATIN}])")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_OTHER_WORD = re.compile(rf"[^\W\d_{_LATIN}{_CJK}]+")

SUPPORTED_LANGUAGES = ("en", "zh")


def reasoning_text(completion: str) -> str:
    """The part of ``completion`` whose language is judged (see the module policy)."""
    start = completion.find("<think>")
    if start < 0:
        end = completion.find("</think>")
        return completion if end < 0 else completion[:end]
    start += len("<think>")
    end = completion.find("</think>", start)
    return completion[start:] if end < 0 else completion[start:end]


def _word_counts(text: str) -> tuple[int, int, int]:
    """(Latin, CJK, other) word counts of ``text``; single ASCII letters are not counted."""
    latin = len(_LATIN_WORD.findall(text)) - len(_SINGLE_ASCII_LETTER.findall(text))
    return latin, len(_CJK_CHAR.findall(text)), len(_OTHER_WORD.findall(text))


def language_consistency_reward(completions: Sequence[str], language: str = "en") -> torch.Tensor:
    """``[N]`` float32 share of reasoning words in ``language`` ("en" or "zh"); 1.0 if no words."""
    if language not in SUPPORTED_LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; supported: {', '.join(SUPPORTED_LANGUAGES)}")
    counts = torch.tensor([_word_counts(reasoning_text(c)) for c in completions], dtype=torch.float32)
    counts = counts.reshape(len(completions), 3)  # [N, (latin, cjk, other)]
    on_target = counts[:, 0] if language == "en" else counts[:, 1]
    total = counts.sum(dim=1)
    return torch.where(total > 0, on_target / total.clamp(min=1), torch.ones_like(total))


@register_reward("language")
def language_en(completions: Sequence[str], **_) -> torch.Tensor:
    """Registry entry: English language consistency; ignores dataset columns."""
    return language_consistency_reward(completions, language="en")


@register_reward("language_zh")
def language_zh(completions: Sequence[str], **_) -> torch.Tensor:
    """Registry entry: Chinese language consistency; ignores dataset columns."""
    return language_consistency_reward(completions, language="zh")
