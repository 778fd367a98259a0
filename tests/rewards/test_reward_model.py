"""The `reward_model` and `routed` rewards with a tiny random LlamaForSequenceClassification."""
from __future__ import annotations

import doctest
import pkgutil
from dataclasses import dataclass

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

import r1lab.rewards
from r1lab.models.tiny import char_tokenizer
from r1lab.rewards import (REWARDS, build_reward, build_rewards, combine_rewards, get_reward, make_params,
                           register_reward, reward_model)
from r1lab.rewards.reward_model import RewardModelParams, RoutedParams, raw_scores

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
    reward_model._loaded.clear()


def direct_scores(path: str, texts: list[str]) -> list[float]:
    """One unpadded forward per text: the reference for the batched, padded scores."""
    tok = char_tokenizer()
    model = LlamaForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return [float(model(input_ids=torch.tensor([tok(t).input_ids])).logits[0, 0]) for t in texts]


TEXTS = ["<answer>1</answer>", "a much longer completion with padding after it", "x"]


def test_doctests():
    assert doctest.testmod(reward_model).failed == 0


def rm(path, **params):
    return build_reward("reward_model", {"path": path, **params})


def test_batched_scores_match_unpadded_ones(rm_path):
    expected = direct_scores(rm_path, TEXTS)
    for batch_size in (1, 2, 8):
        assert raw_scores(TEXTS, RewardModelParams(rm_path, batch_size=batch_size)).tolist() == pytest.approx(expected, abs=1e-5)


def test_normalisation(rm_path):
    raw = torch.tensor(direct_scores(rm_path, TEXTS))
    out = rm(rm_path, normalize="sigmoid")(TEXTS)
    assert out.dtype == torch.float32 and out.shape == (3,)
    assert out.tolist() == pytest.approx(torch.sigmoid(raw).tolist(), abs=1e-5)
    z = rm(rm_path, normalize="zscore")(TEXTS)
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-5) and float(z.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="valid: sigmoid, zscore, none"):
        rm(rm_path, normalize="rank")


def test_prompt_column_is_prepended(rm_path):
    with_prompt = rm(rm_path, normalize="none")(["3</answer>"], prompt=["Use 1 2 to make 3. "])
    assert with_prompt.tolist() == pytest.approx(direct_scores(rm_path, ["Use 1 2 to make 3. 3</answer>"]), abs=1e-5)


def test_loaded_once_and_cached(rm_path, monkeypatch):
    rm(rm_path)(TEXTS)
    model = reward_model._loaded[rm_path][0]
    monkeypatch.setattr(LlamaForSequenceClassification, "from_pretrained", lambda *a, **k: pytest.fail("loaded twice"))
    rm(rm_path)(TEXTS)
    rm(rm_path, batch_size=2)(TEXTS)  # same path, other parameters: the cache stays
    assert reward_model._loaded[rm_path][0] is model


def test_without_a_model_the_error_names_the_parameter():
    with pytest.raises(ValueError, match=r"reward_params\.reward_model\.path"):
        get_reward("reward_model")(["x"])  # registered with its default parameters: no path
    with pytest.raises(ValueError, match=r"reward_params\.routed\.path"):
        build_reward("routed", {"routing": {"countdown": 1.0}})(["x"], verifiable=[False], numbers=[[1]], target=[1])


def test_routed_uses_rules_on_verifiable_rows_and_the_model_elsewhere(rm_path):
    routed = build_reward("routed", {"path": rm_path, "normalize": "sigmoid", "routing": {"countdown": 1.0, "format": 0.5}})
    completions = ["<think>a</think><answer>1+2</answer>", "<think>a</think><answer>1+2</answer>", "hello there"]
    columns = {"numbers": [[1, 2], [1, 2], [0]], "target": [3, 3, 0]}
    out = routed(completions, verifiable=[True, False, False], **columns)
    rm_scores = torch.sigmoid(torch.tensor(direct_scores(rm_path, completions[1:])))
    assert out[0].item() == pytest.approx(1.5)  # correct (1.0) + well formed (0.5 x 1.0)
    assert out[1:].tolist() == pytest.approx(rm_scores.tolist(), abs=1e-5)


def test_routed_without_the_column_never_loads_the_model():
    routed = build_reward("routed", {"path": "/does/not/exist", "routing": {"countdown": 1.0}})
    out = routed(["<think>a</think><answer>1+2</answer>"], numbers=[[1, 2]], target=[3])
    assert out.tolist() == [1.0] and not reward_model._loaded
    with pytest.raises(ValueError, match=r"reward_params\.routed\.routing"):
        build_reward("routed")(["x"], numbers=[[1]], target=[1])


def test_parameters_are_checked_by_the_factory():
    assert make_params("reward_model", {"path": "p", "batch_size": 4}) == RewardModelParams("p", 4)
    assert make_params("routed", None) == RoutedParams()
    with pytest.raises(ValueError, match="unknown parameter 'pth' of the `reward_model` reward; valid: path, batch_size, normalize"):
        make_params("reward_model", {"pth": "p"})
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        make_params("reward_model", {"batch_size": 0})
    with pytest.raises(ValueError, match="routing cannot contain `routed`"):
        make_params("routed", {"routing": {"routed": 1.0}})
    with pytest.raises(ValueError, match="the `countdown` reward takes no parameters; rewards that do: process_validity, reward_model, routed"):
        build_reward("countdown", {"path": "p"})
    assert build_reward("countdown") is REWARDS["countdown"]


def test_a_reward_set_scores_with_the_rewards_it_was_built_with(rm_path):
    rewards = build_rewards({"format": 0.5, "reward_model": 1.0}, {"reward_model": {"path": rm_path, "normalize": "none"}})
    assert dict(rewards) == {"format": 0.5, "reward_model": 1.0}  # still the weights mapping
    completions = ["<think>a</think><answer>1</answer>", "x"]
    out = combine_rewards(rewards, completions, {})
    raw = direct_scores(rm_path, completions)
    assert out.components["reward_model"].tolist() == pytest.approx(raw, abs=1e-5)
    assert out.total.tolist() == pytest.approx([0.5 + raw[0], raw[1]], abs=1e-5)
    with pytest.raises(ValueError, match="reward_params.reward_model.path"):  # a plain mapping: default parameters
        combine_rewards({"reward_model": 1.0}, completions, {})


@pytest.fixture
def scratch_rewards():
    """Rewards a test registers are unregistered after it."""
    before = set(REWARDS)
    yield
    for name in set(REWARDS) - before:
        REWARDS.unregister(name)


def test_a_new_reward_with_parameters_is_built_by_its_factory(scratch_rewards):
    @dataclass
    class LengthParams:
        target: int = 10  # characters
        scale: float = 1.0

    @register_reward("length_target", params=LengthParams)
    def make_length_target(params: LengthParams):
        return lambda completions, **_: torch.tensor([-params.scale * abs(len(c) - params.target) for c in completions])

    completions = ["abc", "abcdefghij"]
    assert get_reward("length_target")(completions).tolist() == [-7.0, 0.0]  # default parameters
    rewards = build_rewards({"length_target": 1.0}, {"length_target": {"target": 3, "scale": 0.5}})
    assert combine_rewards(rewards, completions, {}).total.tolist() == [0.0, -3.5]
    with pytest.raises(ValueError, match="unknown parameter 'targte'.*valid: target, scale"):
        build_rewards({"length_target": 1.0}, {"length_target": {"targte": 3}})
    assert REWARDS.meta("length_target") == {"params": LengthParams, "factory": make_length_target}
    with pytest.raises(ValueError, match="registered twice"):
        register_reward("length_target")(lambda completions, **_: torch.zeros(len(completions)))


def test_every_public_reward_module_is_imported_with_the_package():
    public = {m.name for m in pkgutil.iter_modules(r1lab.rewards.__path__) if not m.name.startswith("_")}
    assert {"countdown", "format", "language", "math", "reward_model"} <= public
    for name in public - {"registry"}:
        assert hasattr(r1lab.rewards, name), name  # imported, so its rewards registered themselves
    assert {"countdown", "format", "language", "math", "reward_model", "routed"} <= set(REWARDS)
