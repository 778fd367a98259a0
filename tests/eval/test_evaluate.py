"""evaluate() on a tiny random model, and the summary maths on hand-made scores."""
import numpy as np
import pytest
import torch

from r1lab.config.schema import EvalConfig, TinyModelConfig
from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.tasks import build_task
from r1lab.rewards.behaviours import BEHAVIOURS
from r1lab.eval.evaluate import (
    Rollouts, Scored, evaluate, evaluate_with_samples, sample_records, scaling_curve, summarize, tool_figures_of,
)
from r1lab.models.tiny import build_tiny_model, char_tokenizer
from r1lab.rewards.language import language_consistency_reward

PIPELINE_KEYS = ("num_problems", "greedy_accuracy", "sampled_accuracy", "pass_at_k", "format_rate", "mean_response_length")


def make_scored(correct, keys, distance=None, claims=None, true_claims=None):
    correct = np.asarray(correct, dtype=float)
    p, k = correct.shape
    return Scored(
        responses=[["r"] * k for _ in range(p)],
        correct=correct,
        formatted=np.ones_like(correct),
        keys=keys,
        distance=None if distance is None else np.asarray(distance, dtype=float),
        behaviours={b: np.zeros((p, k), dtype=int) for b in BEHAVIOURS},
        claims=None if claims is None else np.asarray(claims),
        true_claims=None if true_claims is None else np.asarray(true_claims),
    )


def test_summarize_worked_example():
    # 2 problems x 4 samples; greedy right on problem 0 only
    sampled = make_scored(
        [[1, 1, 0, 0], [0, 0, 0, 1]],
        [["22", "22", "21", "20"], ["1", "2", "2", "3"]],
        distance=[[0, 0, 1, 2], [5, 5, 5, 0]],
    )
    greedy = make_scored([[1], [0]], [["22"], ["2"]])
    lengths = np.array([[10, 20, 30, 40], [50, 50, 50, 50]])
    out = summarize(greedy, sampled, lengths, ["easy", "hard"], seed=0)
    assert out["greedy_accuracy"] == 0.5
    assert out["sampled_accuracy"] == pytest.approx(3 / 8)
    assert out["avg_at_k"] == pytest.approx({"1": 0.5, "2": 0.5, "4": 3 / 8})
    # pass@2: problem 0: 1 - C(2,2)/C(4,2) = 5/6; problem 1: 1 - C(3,2)/C(4,2) = 1/2
    assert out["pass_at_k"]["2"] == pytest.approx((5 / 6 + 0.5) / 2)
    assert out["pass_at_k"]["4"] == 1.0
    # maj@4: problem 0 votes 22 (right); problem 1 votes 2 (wrong)
    assert out["maj_at_k"]["4"] == 0.5
    assert out["mean_response_length"] == pytest.approx(37.5)
    assert out["answer_distance"] == pytest.approx((0.75 + 3.75) / 2)
    assert out["by_difficulty"]["easy"] == pytest.approx({"num_problems": 1, "greedy_accuracy": 1.0, "sampled_accuracy": 0.5,
                                            "pass@k": 1.0, "maj@k": 1.0, "answer_distance": 0.75,
                                            "mean_response_length": 25.0,
                                            "response_length_p50": 25.0, "response_length_p90": 37.0, "response_length_p99": 39.7})
    assert out["by_difficulty"]["hard"]["mean_response_length"] == 50.0
    lo, hi = out["ci95"]["greedy_accuracy"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0
    assert set(out["ci95"]) >= {"sampled_accuracy", "pass@4", "maj@4", "format_rate", "mean_response_length"}
    assert out["behaviours"]["reflection"] == {"mean": 0.0, "rate": 0.0}
    assert "process" not in out  # scores without claim counts
    # numpy's linear percentiles: all 8 lengths sorted 10 20 30 40 50 50 50 50 -> p50 between 40 and 50;
    # correct ones 10 20 50: p90 at rank 1.8 = 20 + 0.8 * 30; incorrect ones 30 40 50 50 50
    assert out["response_length_percentiles"] == {"p50": 45.0, "p90": 50.0, "p99": 50.0}
    assert out["response_length_percentiles_correct"] == {"p50": 20.0, "p90": 44.0, "p99": 49.4}
    assert out["response_length_percentiles_incorrect"] == {"p50": 50.0, "p90": 50.0, "p99": 50.0}
    assert out["by_difficulty"]["hard"]["response_length_p99"] == 50.0
    assert "readability" not in out and "readable_rate" not in out["by_difficulty"]["easy"]  # scores not judged for it


def test_summarize_process_validity():
    # 2 problems x 2 samples: claims (true) per completion; correct ones: [0,0], [1,1]
    sampled = make_scored([[1, 0], [1, 0]], [["a", "b"], ["a", "b"]], claims=[[3, 0], [2, 4]], true_claims=[[3, 0], [1, 4]])
    greedy = make_scored([[1], [0]], [["a"], ["b"]], claims=[[0], [0]], true_claims=[[0], [0]])
    out = summarize(greedy, sampled, np.ones((2, 2)), ["easy", "easy"], seed=0)["process"]
    assert out["num_claims"] == 9.0 and out["claims_per_completion"] == pytest.approx(9 / 4)
    assert out["true_claim_share"] == pytest.approx(8 / 9)
    assert out["correct_with_false_claim"] == 0.5  # of the 2 correct ones, [1, 0] states 2 claims, 1 true
    assert out["false_claim_completions"] == 0.25
    # greedy: no claim at all -> share 1.0 by definition, nothing false
    assert out["greedy_num_claims"] == 0.0 and out["greedy_true_claim_share"] == 1.0
    assert out["greedy_correct_with_false_claim"] == 0.0


def test_sample_records_and_tool_figures():
    task = build_task(CountdownTaskConfig(question_style="short", num_train=10, num_test=5, num_test_hard=2))
    rows = task.split("test")[:1]
    stats = {"calls": np.array([[2.0, 0.0]]), "errors": np.array([[1.0, 0.0]]), "timeouts": np.zeros((1, 2)),
             "tool_tokens": np.array([[6.0, 0.0]]), "sampled_tokens": np.array([[10.0, 8.0]])}
    rollouts = Rollouts(texts=[["a", "b"]], lengths=np.array([[16, 8]]), stopped=np.ones((1, 2), bool), seconds=1.0,
                        correct=np.array([[1.0, 0.0]]), formatted=np.ones((1, 2)), tool_stats=stats)
    scored = make_scored([[1, 0]], [["x", "y"]], claims=[[2, 1]], true_claims=[[2, 0]])
    recs = sample_records(task, rows, ["easy"], "sample", rollouts, scored)
    assert [(r["claims"], r["true_claims"], r["tool_calls"]) for r in recs] == [(2, 2, 2), (1, 0, 0)]
    figures = tool_figures_of(rollouts)
    assert figures["calls_per_completion"] == 1.0 and figures["errors_per_completion"] == 0.5
    assert figures["calling_share"] == 0.5 and figures["tool_token_share"] == pytest.approx(6 / 24)
    plain = Rollouts(texts=[["a", "b"]], lengths=np.array([[16, 8]]), stopped=np.ones((1, 2), bool), seconds=1.0,
                     correct=np.array([[1.0, 0.0]]), formatted=np.ones((1, 2)))
    assert tool_figures_of(plain) == {}
    assert all("tool_calls" not in r for r in sample_records(task, rows, ["easy"], "sample", plain, scored))


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    tok = char_tokenizer()
    cfg = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64)
    return build_tiny_model(cfg, len(tok), tok), tok


def test_evaluate_keeps_the_pipeline_keys_and_adds_the_analysis(tiny):
    model, tok = tiny
    task = build_task(CountdownTaskConfig(question_style="short", num_train=10, num_test=5, num_test_hard=2))
    cfg = EvalConfig(num_problems=3, samples=2, max_new_tokens=6, batch_size=8)
    res = evaluate(model, tok, task, "r1_zero_short", cfg, seed=0)
    for key in PIPELINE_KEYS + ("avg_at_k", "maj_at_k", "ci95", "by_difficulty", "answer_distance", "behaviours"):
        assert key in res, key
    assert res["num_problems"] == 3 and res["pass_at_k"].keys() == {"1", "2"}
    assert set(res["behaviours"]) == set(BEHAVIOURS)
    assert {"true_claim_share", "claims_per_completion", "greedy_true_claim_share"} <= set(res["process"])
    assert "tools" not in res  # no tool enabled
    again, records = evaluate_with_samples(model, tok, task, "r1_zero_short", cfg, seed=0)
    assert again["sampled_accuracy"] == res["sampled_accuracy"]
    assert len(records) == 3 * (1 + 2)
    assert [r["kind"] for r in records[:3]] == ["greedy", "sample", "sample"]
    assert all(r["response"].startswith("<think>") and 1 <= r["length"] <= 6 for r in records)
    assert all(0 <= r["true_claims"] <= r["claims"] for r in records) and all("tool_calls" not in r for r in records)
    sampled = [r["response"] for r in records if r["kind"] == "sample"]
    assert res["language_consistency"] == pytest.approx(float(language_consistency_reward(sampled).mean()))

    rows = scaling_curve(model, tok, task, "r1_zero_short", cfg, samples=[1, 2], budgets=[3, 6])
    assert [(r["max_new_tokens"], r["samples"]) for r in rows] == [(3, 1), (3, 2), (6, 1), (6, 2)]
    assert rows[1]["tokens_per_problem"] > rows[0]["tokens_per_problem"]


def test_evaluate_with_tools_reports_tool_use(tiny):
    from r1lab.config.schema import ToolsConfig

    model, tok = tiny
    task = build_task(CountdownTaskConfig(question_style="short", num_train=10, num_test=5, num_test_hard=2))
    cfg = EvalConfig(num_problems=2, samples=2, max_new_tokens=6, batch_size=8, tools=ToolsConfig(names=["calculator"]))
    res, records = evaluate_with_samples(model, tok, task, "r1_zero_short", cfg, seed=0)
    assert {"calls_per_completion", "errors_per_completion", "timeouts_per_completion", "calling_share",
            "tool_token_share"} <= set(res["tools"])
    assert all(isinstance(r["tool_calls"], int) for r in records) and len(records) == 2 * (1 + 2)
    assert res["tools"]["calls_per_completion"] == pytest.approx(np.mean([r["tool_calls"] for r in records if r["kind"] == "sample"]))


GOOD = "7*3=21 21+1=22 yes</think><answer>7*3+1</answer>"  # after the template's "<think>"
FENCED = "```x```</think><answer>1</answer>"
LOOPING = "a b c d a b c d a b c d a b c d</think><answer>1</answer>"  # 7 of its 13 word 4-grams repeat
MIXED = "先加再乘 ok</think><answer>1</answer>"  # 1 English word of 5: language consistency 0.2


def test_readability_of_the_completions_is_rejection_samplings_filters():
    from r1lab.config.schema import ReadabilityConfig
    from r1lab.eval.evaluate import score_rollouts

    task = build_task(CountdownTaskConfig(question_style="short", num_train=10, num_test=5, num_test_hard=0))
    rows = {"numbers": [[3, 7, 1], [3, 7, 1]], "target": [22, 22]}
    texts = [[GOOD, FENCED], [LOOPING, MIXED]]
    rollouts = Rollouts(texts=texts, lengths=np.array([[20, 12], [30, 0]]), stopped=np.ones((2, 2), dtype=bool), seconds=0.0,
                        correct=np.array([[1.0, 1.0], [0.0, 1.0]]), formatted=np.ones((2, 2)))
    scored = score_rollouts(task, "r1_zero_short", rollouts, rows, ReadabilityConfig())
    assert {n: v.tolist() for n, v in scored.readability_failed.items() if v.any()} == {
        "no_code_fences": [[False, True], [False, False]], "repetition": [[False, False], [True, False]],
        "language": [[False, False], [False, True]], "length": [[False, False], [False, True]]}  # MIXED has 0 tokens too
    assert scored.repeated_ngrams[1, 0] == pytest.approx(7 / 13)
    out = summarize(scored, scored, rollouts.lengths, ["easy", "hard"], seed=0)
    assert out["readability"] == {  # of 4 completions only GOOD passes, and it is correct
        "readable_rate": 0.25, "accepted_rate": 0.25, "repeated_ngram_fraction": pytest.approx(7 / 13 / 4),
        "fail_rate": {"well_formed": 0.0, "language": 0.25, "no_code_fences": 0.25, "length": 0.25, "repetition": 0.25,
                      "true_claims": 0.0}}
    assert out["by_difficulty"]["easy"]["readable_rate"] == 0.5 and out["by_difficulty"]["hard"]["readable_rate"] == 0.0


def test_evaluate_reports_length_percentiles_and_readability(tiny):
    model, tok = tiny
    task = build_task(CountdownTaskConfig(question_style="short", num_train=10, num_test=5, num_test_hard=2))
    cfg = EvalConfig(num_problems=3, samples=2, max_new_tokens=6, batch_size=8)
    res, records = evaluate_with_samples(model, tok, task, "r1_zero_short", cfg, seed=0)
    lengths = [r["length"] for r in records if r["kind"] == "sample"]
    assert res["response_length_percentiles"] == {f"p{q}": pytest.approx(np.percentile(lengths, q)) for q in (50, 90, 99)}
    assert 0.0 <= res["readability"]["accepted_rate"] <= res["readability"]["readable_rate"] <= 1.0
    assert set(res["readability"]["fail_rate"]) == {"well_formed", "language", "no_code_fences", "length", "repetition", "true_claims"}
    assert all({"response_length_p50", "readable_rate"} <= set(row) for row in res["by_difficulty"].values())
