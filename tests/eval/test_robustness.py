"""Robustness (r1lab.eval.robustness): perturbed sets scored beside the plain one with a scripted
engine whose answers are known, and the start-up check of perturbation names."""
import re

import pytest

from r1lab.config.errors import ConfigError
from r1lab.config.schema import EvalConfig
from r1lab.tasks.arith import ArithTaskConfig
from r1lab.eval.robustness import check_perturbations, robustness_figures
from r1lab.models.tiny import char_tokenizer
from r1lab.rollout.engine import RolloutEngine
from r1lab.rollout.sampler import Completion
from r1lab.tasks import build_task
from r1lab.tasks.perturb import DISTRACTORS


def arith_task():
    return build_task(ArithTaskConfig(num_train=10, num_test=12, lenient_answer=False))


class Calculator(RolloutEngine):
    """Answers ``What is a op b?`` right, unless the prompt holds a distractor sentence (then 1 off),
    and never reads reworded questions (no answer)."""

    name = "calculator"

    def __init__(self, tokenizer):
        self.tokenizer, self.seeds = tokenizer, []

    def generate(self, prompt_ids, params, seed, max_batch=0):
        self.seeds.append(seed)
        out = []
        for p in prompt_ids:
            prompt = self.tokenizer.decode(p)
            m = re.search(r"What is (\d+) ([-+*]) (\d+)\?", prompt)
            if m is None:
                text = "</think> no idea"
            else:
                a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
                value = {"+": a + b, "-": a - b, "*": a * b}[op] + any(d in prompt for d in DISTRACTORS)
                text = f"</think> \\boxed{{{value}}}"
            out.append(Completion(self.tokenizer(text, add_special_tokens=False).input_ids, text, True))
        return out


def test_figures_per_perturbation():
    task, tok = arith_task(), char_tokenizer()
    problems = task.split("test")
    cfg = EvalConfig(samples=2, max_new_tokens=8, batch_size=4, robustness=["reorder", "renumber", "distractor", "wording"])
    engine = Calculator(tok)
    out = robustness_figures(engine, tok, task, "r1_zero_short", cfg, problems, seed=7)
    assert out["plain"] == {"greedy_accuracy": 1.0, "sampled_accuracy": 1.0}  # generated: no plain figures given
    per = out["perturbed"]
    assert list(per) == cfg.robustness
    for name in ("reorder", "renumber"):  # recomputed golds: the calculator stays right
        assert per[name]["greedy_accuracy"] == per[name]["sampled_accuracy"] == 1.0
        assert per[name]["greedy_drop"] == per[name]["sampled_drop"] == 0.0
    assert per["distractor"] == {"greedy_accuracy": 0.0, "sampled_accuracy": 0.0, "greedy_drop": 1.0, "sampled_drop": 1.0,
                                 "changed_share": 1.0, "num_problems": 12}
    assert per["wording"]["greedy_drop"] == 1.0
    assert per["renumber"]["changed_share"] == 1.0
    swapped = sum(q.split()[3] in "+*" and q.split()[2] != q.split()[4].rstrip("?") for q in problems["question"]) / 12
    assert per["reorder"]["changed_share"] == pytest.approx(swapped)
    assert set(engine.seeds) == {None, 7}  # greedy unseeded; every sampled set drawn with the plain evaluation's seed


def test_given_plain_figures_are_reused():
    task, tok = arith_task(), char_tokenizer()
    cfg = EvalConfig(samples=1, max_new_tokens=8, robustness=["distractor"])
    engine = Calculator(tok)
    out = robustness_figures(engine, tok, task, "r1_zero_short", cfg, task.split("test"), 0,
                             plain={"greedy_accuracy": 0.75, "sampled_accuracy": 0.5, "pass_at_k": {}})
    assert out["plain"] == {"greedy_accuracy": 0.75, "sampled_accuracy": 0.5}
    assert out["perturbed"]["distractor"]["greedy_drop"] == 0.75 and out["perturbed"]["distractor"]["sampled_drop"] == 0.5
    assert len(engine.seeds) == 2  # only the perturbed set was generated (greedy + sampled)


def test_unknown_or_repeated_names_fail_naming_the_field():
    task = arith_task()
    with pytest.raises(ConfigError, match=r"eval.robustness=\['nope'\]: task 'arith' has no perturbation 'nope'; "
                                          r"valid: reorder, renumber, distractor, wording"):
        check_perturbations(["nope"], task)
    with pytest.raises(ConfigError, match="names a perturbation twice"):
        check_perturbations(["reorder", "reorder"], task)
    task.perturbations = {}
    with pytest.raises(ConfigError, match="defines no perturbations; set it to"):
        check_perturbations(["reorder"], task)
    check_perturbations([], task)
