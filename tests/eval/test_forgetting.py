"""Forgetting (r1lab.eval.forgetting): perplexity against a hand computation on a tiny model built
here, the general questions scored with a scripted engine, and the shipped files."""
import fnmatch
import math
import tomllib

import pytest
import torch

from r1lab.config.schema import TinyModelConfig
from r1lab.eval.forgetting import (
    GENERAL_QA, GENERAL_TEXT, general_qa, load_general_qa, load_general_text, model_context, qa_scores, text_nll,
    text_windows,
)
from r1lab.models.tiny import build_tiny_model, char_tokenizer
from r1lab.rollout.engine import RolloutEngine
from r1lab.rollout.sampler import Completion
from tests.helpers import REPO

TINY = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64,
                       max_position_embeddings=16)


@pytest.fixture(scope="module")
def tiny():
    tok = char_tokenizer()
    return build_tiny_model(TINY, vocab_size=len(tok), tokenizer=tok), tok


def hand_nll(model, windows: list[list[int]]) -> tuple[float, int]:
    """Summed NLL of every window token after the first, from the full logits, one window at a time."""
    total, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            ids = torch.tensor([w])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)  # [T-1, V]
            total -= float(logp.gather(1, ids[0, 1:, None]).sum())
            count += len(w) - 1
    return total, count


def test_text_windows():
    assert text_windows(list(range(10, 17)), 4, bos=1) == [[1, 10, 11, 12], [1, 13, 14, 15], [1, 16]]
    assert text_windows(list(range(10, 15)), 2, bos=None) == [[10, 11], [12, 13], [14]]
    with pytest.raises(ValueError, match=">= 2"):
        text_windows([1, 2], 1, bos=None)


def test_perplexity_matches_a_hand_computation(tiny):
    model, tok = tiny
    text = "The river flows to the sea.\n\nBees make honey."  # 45 characters: 4 windows of 15 text tokens + BOS
    ids = tok(text, add_special_tokens=False).input_ids
    assert model_context(model) == 16
    windows = [[tok.bos_token_id] + ids[i:i + 15] for i in range(0, len(ids), 15)]
    total, count = hand_nll(model, windows)
    model.train()
    out = text_nll(model, tok, text, batch_size=3)  # 3 + 1 windows: the last batch is right padded
    assert model.training  # the train/eval mode is given back
    assert out["num_tokens"] == count == len(ids)  # BOS opens each window: every text token is predicted
    assert out["context"] == 16
    assert out["nll"] == pytest.approx(total / count, rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_perplexity_with_a_shorter_context(tiny):
    model, tok = tiny
    text = "Glass is made by heating sand."
    ids = tok(text, add_special_tokens=False).input_ids
    total, count = hand_nll(model, [[tok.bos_token_id] + ids[i:i + 7] for i in range(0, len(ids), 7)])
    out = text_nll(model, tok, text, context=8)
    assert out["nll"] == pytest.approx(total / count, rel=1e-5) and out["context"] == 8


def test_lenient_and_last_word_scores():
    assert qa_scores("<think>x</think><answer>Paris</answer>", ["Paris"]) == (True, True)
    assert qa_scores("<think>x</think><answer>\\boxed{paris}.</answer>", ["Paris"]) == (True, True)
    assert qa_scores("<think>x</think><answer>Paris, I think</answer>", ["Paris"]) == (True, False)
    assert qa_scores("<think>x</think><answer>Parisian</answer>", ["Paris"]) == (False, False)  # whole words only
    assert qa_scores("<think>the answer is Paris", ["Paris"]) == (False, False)  # cut off mid-reasoning: no answer
    assert qa_scores("<think>x</think> it is south america", ["south america"]) == (True, True)  # no tag: text after reasoning
    assert qa_scores("Mice.", ["mice"]) == (True, True)  # no think tag (chat template): all of it is the answer


class Scripted(RolloutEngine):
    """Answers each question with the reply scripted for the first word after "of" in its prompt."""

    name = "scripted_qa"

    def __init__(self, tokenizer, replies: dict[str, str]):
        self.tokenizer, self.replies, self.calls = tokenizer, replies, []

    def generate(self, prompt_ids, params, seed, max_batch=0):
        self.calls.append((params.temperature, seed))
        out = []
        for p in prompt_ids:
            prompt = self.tokenizer.decode(p)
            key = next((k for k in self.replies if k in prompt), None)
            text = self.replies.get(key, "no idea</think><answer>?</answer>")
            out.append(Completion(self.tokenizer(text, add_special_tokens=False).input_ids, text, True))
        return out


def test_general_qa_scored_with_a_scripted_engine():
    tok = char_tokenizer()
    rows = [{"question": "What is the capital of France?", "answers": ["Paris"], "kind": "capital"},
            {"question": "What is the capital of Japan?", "answers": ["Tokyo"], "kind": "capital"},
            {"question": "What is the plural of mouse?", "answers": ["mice"], "kind": "plural"},
            {"question": "What is the opposite of hot?", "answers": ["cold"], "kind": "opposite"}]
    engine = Scripted(tok, {"France": "easy</think><answer>Paris</answer>",
                            "Japan": "hmm</think><answer>Kyoto</answer>",
                            "mouse": "</think><answer>mice, I believe</answer>"})
    out = general_qa(engine, tok, "r1_zero_short", rows, max_new_tokens=8)
    assert out == {"accuracy": 0.5, "last_word_accuracy": 0.25, "num_questions": 4,
                   "by_kind": {"capital": 0.5, "opposite": 0.0, "plural": 1.0}}
    assert engine.calls == [(0.0, None)]  # greedy, one call


def test_shipped_files():
    paragraphs = load_general_text().split("\n\n")
    assert len(paragraphs) == 30 and all(len(p.split()) >= 20 for p in paragraphs)
    rows = load_general_qa()
    assert len(rows) == 60 and len({r["question"] for r in rows}) == 60
    assert all(r["question"].endswith("Answer with one word.") for r in rows)
    # both ship with the package (setuptools package-data of r1lab.data)
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["r1lab.data"]
    for path in (GENERAL_TEXT, GENERAL_QA):
        assert any(fnmatch.fnmatch(f"samples/{path.name}", p) for p in patterns), path.name


def test_bad_qa_file_names_the_row(tmp_path):
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"question": "Q?", "answers": ["a"]}\n{"question": "R?"}\n')
    with pytest.raises(ValueError, match="row 1 of .*needs 'question'"):
        load_general_qa(bad)
