"""Reasoning behaviours in a completion, counted by documented patterns.

The four cognitive behaviours of Gandhi et al. (2025), "Cognitive Behaviors that Enable
Self-Improving Reasoners", plus R1's "aha" reflection phrases, each a set of phrases:

* ``verification``: checking a result. "let me check/verify", "double-check", "to confirm",
  "verify(ing)", "checking", "that works/checks out", "is (indeed) correct"; in the tiny model's
  trace vocabulary (``r1lab.tasks.countdown_traces``) a line that starts with ``check``
  (``check 8*(9-7)=16 ok``).
* ``backtracking``: abandoning an approach. "doesn't/does not work", "not (quite) right/correct",
  "that's wrong", "too big/small/high/low", "try again", "try (something) else", "another
  approach/combination/way", "start over", "go back", "scrap that", "dead end"; in the trace
  vocabulary a line with a computation (``=``) that ends with ``no`` (``9+7=16 16-8=8 no``), and
  in the tool vocabulary a line that ends with ``no`` after a tool's result
  (``<tool>7*5-3</tool><result>32</result> no``).
* ``subgoal``: splitting the problem into intermediate goals. "first, (I/we/let's)", "step 1",
  "break (this/it) down", "sub-goal", "intermediate (goal/step/result)", "next, (I/we/let's)",
  "then we need", "let's first".
* ``backward_chaining``: reasoning from the goal back to the givens. "work(ing) backwards",
  "from the target/goal/answer", "to get/reach/make <number>, (I/we) need", "(is|are) <n> away
  from", "what (number) times/plus ... gives", "the target minus/divided by".
* ``reflection``: R1's re-reading of its own reasoning. "wait", "aha", "hmm", "hold on",
  "on second thought", "actually,", "let me reconsider/re-evaluate/rethink/re-check",
  "I made a mistake", "mistake", "re-examine".
* ``false_verification``: a verification (any of its phrases above) whose line states a false
  arithmetic claim (``check 5*4+3=19 ok``: 5*4+3 is 23; :mod:`r1lab.rewards.claims`). It counts
  here *instead of* as a ``verification``: a check that asserts a falsehood is not a check. The
  line is the one the verification phrase matched on (from the newline before it to the one after;
  a paragraph written as one line is one line). Last in ``BEHAVIOURS``, so the order of the five
  above is unchanged.

How. One compiled regex of named alternatives (one group per behaviour, case-insensitive,
word-bounded, multi-line for the trace vocabulary) is run once over each reasoning text with
``finditer``; every match counts one occurrence of the behaviour of the group that matched.
Matches do not overlap, so "let me check" counts one verification, not a verification and a
reflection; where two phrases could start at the same place the longer, more specific one is
listed first. The reasoning text is what comes before ``</think>`` (the whole completion when
there is none), so an answer's text is never counted. A verification match is then judged on
its line: the claims of the reasoning are found once (only when a verification matched and the
text holds an ``=``) and a false one starting on that line makes it a ``false_verification``.

These are surface patterns: they count what a model *writes* ("wait" used as a verb counts), not
what it does. Tested on labelled examples in ``tests/rewards/test_behaviours.py``.

Not a reward (nothing here is registered or scores a completion), but a text classifier over
completions like the rewards, so it lives beside them: both the GRPO stage (``behaviour/<name>``
of its rollouts) and the evaluation import it, and neither may import the other.
"""
from __future__ import annotations

import bisect
import re
from typing import Iterator, Sequence

import numpy as np

BEHAVIOURS = ("verification", "backtracking", "subgoal", "backward_chaining", "reflection", "false_verification")

_NUM = r"-?\d+(?:\.\d+)?"
_PATTERNS: dict[str, list[str]] = {
    "verification": [
        r"^[ \t]*check\b",  # trace vocabulary: "check 8*(9-7)=16 ok"
        r"\blet(?:'s| me| us) (?:double[- ])?(?:check|verify|confirm)\b",
        r"\bdouble[- ]check(?:ing|ed)?\b",
        r"\bto (?:confirm|verify|check)\b",
        r"\bverif(?:y|ying|ied|ication)\b",
        r"\bchecking\b",
        r"\bsanity check\b",
        r"\b(?:that|this|it) (?:works|checks out)\b",
        r"\bis (?:indeed )?correct\b",
        r"\bplug(?:ging)? (?:it |this |that )?(?:back )?in\b",
    ],
    "backtracking": [
        r"=[^\n]*?[ \t]no[ \t]*$",  # trace vocabulary: "9+7=16 16-8=8 no"
        r"</result>[^\n]*?\bno[ \t]*$",  # tool vocabulary: "<tool>7*5-3</tool><result>32</result> no"
        r"\b(?:doesn't|does not|didn't|did not|won't|will not) work\b",
        r"\bnot (?:quite )?(?:right|correct)\b",
        r"\b(?:that's|that is|this is|it's) wrong\b",
        r"\btoo (?:big|small|high|low|large)\b",
        r"\btry(?:ing)? again\b",
        r"\btry(?:ing)? (?:something|anything) else\b",
        r"\b(?:another|a different) (?:approach|combination|way|method|strategy)\b",
        r"\bstart(?:ing)? over\b",
        r"\bgo(?:ing)? back\b",
        r"\bscrap (?:that|this)\b",
        r"\bdead end\b",
    ],
    "subgoal": [
        r"\b(?:first|firstly),? (?:i|we|let's|let me)\b",
        r"\blet's first\b",
        r"\bstep (?:1|one)\b",
        r"\bbreak (?:this|it|the problem) down\b",
        r"\bsub-?goals?\b",
        r"\bintermediate (?:goal|step|result|value)s?\b",
        r"\bnext,? (?:i|we|let's|let me)\b",
        r"\bthen (?:i|we) need\b",
    ],
    "backward_chaining": [
        r"\bwork(?:ing)? backwards?\b",
        r"\bfrom the (?:target|goal|answer)\b",
        r"\bto (?:get|reach|make) " + _NUM + r",? (?:i|we) (?:need|would need|must)\b",
        r"\b(?:is|are) " + _NUM + r" away from\b",
        r"\bwhat (?:number )?(?:times|plus|minus|divided by) \S+ (?:gives|makes|equals)\b",
        r"\bthe (?:target|goal) (?:minus|divided by|plus|times)\b",
    ],
    "reflection": [
        r"\bon second thought\b",
        r"\bhold on\b",
        r"\blet me (?:reconsider|re-?evaluate|rethink|re-?check|re-?examine)\b",
        r"\b(?:i|we) made (?:a|an) (?:mistake|error)\b",
        r"\bmistake\b",
        r"\bre-?examine\b",
        r"\bwait\b",
        r"\baha\b",
        r"\bhmm+\b",
        r"\bactually,",
    ],
}

# One regex, one named group per behaviour: a single pass over each text classifies every match
# (``m.lastgroup`` is the behaviour).
BEHAVIOUR_REGEX = re.compile(
    "|".join(f"(?P<{name}>{'|'.join(pats)})" for name, pats in _PATTERNS.items()),
    re.IGNORECASE | re.MULTILINE,
)


def reasoning_text(completion: str) -> str:
    """The part of a completion before the last ``</think>`` (all of it when there is none)."""
    end = completion.rfind("</think>")
    return completion if end < 0 else completion[:end]


def _behaviours_of(reasoning: str) -> Iterator[str]:
    """The behaviour of every match in ``reasoning``, in order (a verification whose line holds a
    false claim: ``false_verification``)."""
    false_starts: list[int] | None = None  # starts of the false claims, found on first need
    for m in BEHAVIOUR_REGEX.finditer(reasoning):
        name = m.lastgroup
        if name == "verification" and "=" in reasoning:
            if false_starts is None:
                from r1lab.rewards.claims import claims_in_reasoning  # lazy: claims imports this module

                false_starts = [c.start for c in claims_in_reasoning(reasoning) if not c.true]
            if false_starts:
                line_start = reasoning.rfind("\n", 0, m.start()) + 1
                line_end = reasoning.find("\n", m.start())
                line_end = len(reasoning) if line_end < 0 else line_end
                i = bisect.bisect_left(false_starts, line_start)
                if i < len(false_starts) and false_starts[i] < line_end:  # claims never span a newline
                    name = "false_verification"
        yield name


def count_behaviours(text: str) -> dict[str, int]:
    """Occurrences of each behaviour in the reasoning of one completion.

    >>> count_behaviours("9+7=16 16-8=8 no\\n8*2=16 yes\\ncheck 8*2=16 ok\\ncheck 8+2=11 ok\\n</think>")
    {'verification': 1, 'backtracking': 1, 'subgoal': 0, 'backward_chaining': 0, 'reflection': 0, 'false_verification': 1}
    """
    counts = dict.fromkeys(BEHAVIOURS, 0)
    for name in _behaviours_of(reasoning_text(text)):
        counts[name] += 1
    return counts


def behaviour_counts(texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Per behaviour, ``[N]`` int counts over ``texts``."""
    out = {b: np.zeros(len(texts), dtype=np.int64) for b in BEHAVIOURS}
    for i, text in enumerate(texts):
        for name in _behaviours_of(reasoning_text(text)):
            out[name][i] += 1
    return out


def behaviour_summary(counts: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """``{behaviour: {"mean": occurrences per completion, "rate": share with at least one}}``."""
    return {
        b: {
            "mean": float(c.mean()) if c.size else 0.0,
            "rate": float((c > 0).mean()) if c.size else 0.0,
        }
        for b, c in counts.items()
    }
