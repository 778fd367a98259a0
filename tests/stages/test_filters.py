"""Readability filters, selection, de-duplication, mixing and the report: pure functions, crafted samples."""
import doctest

import pytest

from r1lab.stages import filters
from r1lab.stages.filters import (
    ReadabilityConfig,
    acceptance_report,
    active_filters,
    chat_messages,
    dedup,
    difficulty,
    failed_filters,
    mix_sample,
    num_to_mix,
    render_messages,
    repeated_ngram_fraction,
    select,
)

GOOD = "<think>7*3=21 21+1=22 yes check 7*3+1=22 ok</think><answer>7*3+1</answer>"


def sample(response=GOOD, num_tokens=40, fmt=1.0, lang=1.0, correct=True, row=0, index=0):
    s = {"row": row, "sample_index": index, "response": response, "num_tokens": num_tokens,
         "rewards": {"format": fmt, "language": lang, "countdown": float(correct)}, "correct": correct}
    s["failed"] = failed_filters(s, ReadabilityConfig(max_tokens=100))
    return s


def test_doctests():
    assert doctest.testmod(filters).failed == 0


@pytest.mark.parametrize(
    "kwargs, failed",
    [
        ({}, []),
        ({"fmt": 0.0}, ["well_formed"]),
        ({"lang": 0.9}, ["language"]),
        ({"response": "<think>```py\nx=1\n```</think><answer>1</answer>"}, ["no_code_fences"]),
        ({"num_tokens": 101}, ["length"]),
        ({"num_tokens": 0}, ["length"]),
        ({"response": "<think>" + "7*3=21 no " * 20 + "</think><answer>1</answer>"}, ["repetition"]),
        ({"fmt": 0.0, "lang": 0.0}, ["well_formed", "language"]),
        # a false arithmetic claim in the reasoning (accepted rejection data after GRPO)
        ({"response": "<think>6-1=7 7-1=7 yes\ncheck 6-1/1=10 ok\n</think>\n<answer>6-1/1</answer>"}, ["true_claims"]),
        ({"response": "<think>7*5=35 35-3=32 no\n5*3=15 15+7=22 yes\ncheck 5*3+7=22 ok\n</think>\n<answer>5*3+7</answer>"}, []),
        ({"response": "<think><tool>7*5-3</tool><result>32</result> no\n<tool>5*3+7</tool><result>22</result> yes\n</think>"
                      "\n<answer>5*3+7</answer>"}, []),
        ({"response": "<think>5*3+7=22 yes</think><answer>5*3+7=21</answer>"}, []),  # the answer is not reasoning
    ],
)
def test_each_filter_on_crafted_samples(kwargs, failed):
    assert sample(**kwargs)["failed"] == failed


def test_code_fences_in_the_answer_are_allowed_and_filters_switch_off():
    s = sample(response="<think>plan</think><answer>```1```</answer>")
    assert s["failed"] == []
    off = ReadabilityConfig(well_formed=False, language=False, no_code_fences=False, length=False, repetition=False,
                            true_claims=False)
    assert active_filters(off) == []
    assert failed_filters(sample(fmt=0.0, lang=0.0, num_tokens=0, response="<think>1+1=3</think>"), off) == []


def test_thresholds():
    s = sample(lang=0.96)
    assert failed_filters(s, ReadabilityConfig(min_language_consistency=0.95)) == []
    assert failed_filters(s, ReadabilityConfig(min_language_consistency=0.97)) == ["language"]
    zh = {**s, "rewards": {**s["rewards"], "language_zh": 0.0}}
    assert failed_filters(zh, ReadabilityConfig(language_reward="language_zh")) == ["language"]
    assert repeated_ngram_fraction("a b c d a b c d", 4) == pytest.approx(1 / 5)
    assert failed_filters(s, ReadabilityConfig(min_tokens=41)) == ["length"]


def test_selection_shortest_longest_random_all():
    xs = [sample(num_tokens=n, index=i) for i, n in enumerate([30, 10, 20, 10])]
    assert [s["sample_index"] for s in select(xs, 2, "shortest", seed=0)] == [1, 3]
    assert [s["sample_index"] for s in select(xs, 2, "longest", seed=0)] == [0, 2]
    assert [s["sample_index"] for s in select(xs[1:], 3, "longest", seed=0)] == [2, 1, 3]  # ties: first drawn first
    assert len(select(xs, 9, "shortest", seed=0)) == 4
    assert len(select(xs, 2, "all", seed=0)) == 4
    picked = select(xs, 2, "random", seed=0)
    assert len(picked) == 2 and picked == select(xs, 2, "random", seed=0)  # deterministic per seed
    runs = {tuple(s["sample_index"] for s in select(xs, 2, "random", seed=k)) for k in range(20)}
    assert len(runs) > 1
    with pytest.raises(ValueError, match="valid: shortest, longest, random, all"):
        select(xs, 1, "longest_first", seed=0)


def test_selection_is_per_prompt():
    xs = [sample(row=r, index=i, num_tokens=10 * i + r) for r in (1, 0) for i in range(3)]
    out = select(xs, 1, "shortest", seed=0)
    assert [(s["row"], s["sample_index"]) for s in out] == [(0, 0), (1, 0)]


def test_dedup_on_normalised_text():
    rows = [
        {"prompt": "Use 1 2", "response": "<think>A  b</think>"},
        {"prompt": " use  1 2", "response": "<think>a\n b</think>\n"},  # same after normalisation
        {"prompt": "Use 1 3", "response": "<think>A  b</think>"},  # another prompt: kept
    ]
    assert dedup(rows) == [rows[0], rows[2]]


def test_mixing_ratio_and_messages():
    assert num_to_mix(300, 3.0, 1000) == 100
    assert num_to_mix(300, 3.0, 8) == 8
    assert num_to_mix(0, 3.0, 8) == 0
    rows = [{"id": i} for i in range(10)]
    picked = mix_sample(rows, 4, seed=0)
    assert len(picked) == 4 and picked == sorted(picked, key=lambda r: r["id"]) and picked == mix_sample(rows, 4, seed=0)
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert chat_messages({"messages": msgs, "id": "x"}) == msgs
    assert chat_messages({"prompt": "Hi", "response": "Hello"}) == msgs
    with pytest.raises(ValueError, match="'messages' or 'prompt' and 'response'"):
        chat_messages({"text": "x"})
    with pytest.raises(ValueError, match="last message"):
        chat_messages({"messages": msgs[:1]})


def test_render_messages_without_a_chat_template():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Fact?"},
            {"role": "assistant", "content": "Octopuses have three hearts."}]
    prompt, response = render_messages(msgs, "r1_zero_short")
    assert prompt == "System: Be brief.\nUser: Hi\nAssistant: Hello\nUser: Fact?\nAssistant:"
    assert response == " Octopuses have three hearts."


def test_difficulty_and_report():
    assert difficulty({"numbers": [1, 2, 3], "target": 99}) == "3 numbers, target 75-99"
    assert difficulty({"level": "Level 5", "answer": "2"}) == "Level 5"
    assert difficulty({"question": "q"}) == "all"
    buckets = ["easy", "easy", "hard"]
    samples = [
        sample(row=0, index=0), sample(row=0, index=1, fmt=0.0),
        sample(row=1, index=0, correct=False), sample(row=1, index=1, correct=False, fmt=0.0),
        sample(row=2, index=0, lang=0.5, fmt=0.0), sample(row=2, index=1),
    ]
    r = acceptance_report(samples, buckets, ["well_formed", "language"])
    assert (r["prompts"], r["samples"], r["correct"], r["accepted"]) == (3, 6, 4, 2)
    assert r["by_difficulty"]["easy"] == {"prompts": 2, "samples": 4, "correct": 2, "accepted": 1,
                                          "prompts_with_accepted": 1, "correct_rate": 0.5, "accept_rate": 0.25}
    assert r["by_difficulty"]["hard"]["prompts_with_accepted"] == 1
    # filters are reported on the 4 correct samples, each on its own
    assert r["by_filter"]["well_formed"] == {"checked": 4, "failed": 2, "fail_rate": 0.5}
    assert r["by_filter"]["language"] == {"checked": 4, "failed": 1, "fail_rate": 0.25}
