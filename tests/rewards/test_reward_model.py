"""The `reward_model` and `routed` rewards with a tiny random LlamaForSequenceClassification."""
from __future__ import annotations

import doctest

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from r1lab.models.tiny import char_tokenizer
from r1lab.rewards import get_reward, reward_model
from r1lab.rewards.reward_model import configure_reward_model, normalize_scores, raw_scores

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def rm_path(tmp_path_factory) -> str:
    tok = char_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rm") / "model"
    LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(autouse=True)
def reset():
    yield
    configure_reward_model(None)


def direct_scores(path: str, texts: list[str]) -> list[float]:
    """One unpadded forward per text: the reference for the batched, padded scores."""
    tok = char_tokenizer()
    model = LlamaForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return [float(model(input_ids=torch.tensor([tok(t).input_ids])).logits[0, 0]) for t in texts]


TEXTS = ["<answer>1</answer>", "a much longer completion with padding after it", "x"]


def test_doctests():
    assert doctest.testmod(reward_model).failed == 0


def test_batched_scores_match_unpadded_ones(rm_path):
    expected = direct_scores(rm_path, TEXTS)
    for batch_size in (1, 2, 8):
        configure_reward_model(rm_path, batch_size=batch_size, normalize="none")
        assert raw_scores(TEXTS).tolist() == pytest.approx(expected, abs=1e-5)


def test_normalisation(rm_path):
    raw = torch.tensor(direct_scores(rm_path, TEXTS))
    configure_reward_model(rm_path, normalize="sigmoid")
    out = get_reward("reward_model")(TEXTS)
    assert out.dtype == torch.float32 and out.shape == (3,)
    assert out.tolist() == pytest.approx(torch.sigmoid(raw).tolist(), abs=1e-5)
    configure_reward_model(rm_path, normalize="zscore")
    z = get_reward("reward_model")(TEXTS)
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-5) and float(z.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="valid: sigmoid, zscore, none"):
        configure_reward_model(rm_path, normalize="rank")


def test_prompt_column_is_prepended(rm_path):
    configure_reward_model(rm_path, normalize="none")
    with_prompt = get_reward("reward_model")(["3</answer>"], prompt=["Use 1 2 to make 3. "])
    assert with_prompt.tolist() == pytest.approx(direct_scores(rm_path, ["Use 1 2 to make 3. 3</answer>"]), abs=1e-5)


def test_loaded_once_and_cached(rm_path, monkeypatch):
    configure_reward_model(rm_path)
    get_reward("reward_model")(TEXTS)
    model = reward_model._loaded[rm_path][0]
    monkeypatch.setattr(LlamaForSequenceClassification, "from_pretrained", lambda *a, **k: pytest.fail("loaded twice"))
    get_reward("reward_model")(TEXTS)
    configure_reward_model(rm_path, batch_size=2)  # same path: the cache stays
    get_reward("reward_model")(TEXTS)
    assert reward_model._loaded[rm_path][0] is model


def test_without_a_model_the_error_names_the_setting():
    with pytest.raises(ValueError, match="reward_model_path"):
        get_reward("reward_model")(["x"])


def test_routed_uses_rules_on_verifiable_rows_and_the_model_elsewhere(rm_path):
    configure_reward_model(rm_path, normalize="sigmoid", routing={"countdown": 1.0, "format": 0.5})
    completions = ["<think>a</think><answer>1+2</answer>", "<think>a</think><answer>1+2</answer>", "hello there"]
    columns = {"numbers": [[1, 2], [1, 2], [0]], "target": [3, 3, 0]}
    out = get_reward("routed")(completions, verifiable=[True, False, False], **columns)
    rm = torch.sigmoid(torch.tensor(direct_scores(rm_path, completions[1:])))
    assert out[0].item() == pytest.approx(1.5)  # correct (1.0) + well formed (0.5 x 1.0)
    assert out[1:].tolist() == pytest.approx(rm.tolist(), abs=1e-5)


def test_routed_without_the_column_never_loads_the_model(monkeypatch):
    configure_reward_model("/does/not/exist", routing={"countdown": 1.0})
    out = get_reward("routed")(["<think>a</think><answer>1+2</answer>"], numbers=[[1, 2]], target=[3])
    assert out.tolist() == [1.0] and not reward_model._loaded
    configure_reward_model(None)
    with pytest.raises(ValueError, match="reward_routing"):
        get_reward("routed")(["x"], numbers=[[1]], target=[1])
