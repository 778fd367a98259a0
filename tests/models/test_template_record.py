"""A checkpoint remembers its prompt template; loading it with another one warns and names the fix."""
import warnings

import pytest

from r1lab.config.schema import ModelConfig, TinyModelConfig
from r1lab.models.load import load_tokenizer
from r1lab.models.templates import recorded_template, record_template
from r1lab.models.tiny import save_tiny_model


@pytest.fixture
def trained_with_short(tmp_path):
    path = save_tiny_model(TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64), tmp_path / "ckpt")
    tok = load_tokenizer(str(path))
    assert recorded_template(tok) is None  # a model r1lab did not train records nothing
    record_template(tok, "r1_zero_short")
    tok.save_pretrained(path)
    return str(path)


def test_mismatched_template_warns_with_the_fix(trained_with_short):
    with pytest.warns(UserWarning, match=r"trained by r1lab with model.template=r1_zero_short, but this run uses model.template=r1_zero.*set model.template=r1_zero_short"):
        tok = load_tokenizer(trained_with_short, ModelConfig(name_or_path=trained_with_short, template="r1_zero"))
    assert recorded_template(tok) == "r1_zero_short"


def test_matching_template_is_silent(trained_with_short):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_tokenizer(trained_with_short, ModelConfig(name_or_path=trained_with_short, template="r1_zero_short"))
