"""GRPO rewards with parameters: set under the reward's name in `reward_params`, checked at start-up;
the old flat `reward_model_*` fields fail with their new spelling."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from r1lab.config.schema import ReadabilityConfig, RunConfig
from r1lab.validate import ConfigError, validate


def grpo(**fields):
    raw = OmegaConf.merge(
        OmegaConf.structured(RunConfig),
        {"name": "t", "model": {"name_or_path": "tiny"},
         "stages": {"grpo": {"kind": "grpo", "rewards": {"countdown": 1.0, "reward_model": 0.5}, **fields}}},
    )
    return validate(raw)[1][0].cfg


def test_reward_params_under_the_rewards_name():
    cfg = grpo(reward_params={"reward_model": {"path": "my/rm", "batch_size": 4}, "routed": {"routing": {"countdown": 1.0}}})
    assert cfg.reward_params == {"reward_model": {"path": "my/rm", "batch_size": 4}, "routed": {"routing": {"countdown": 1.0}}}
    assert grpo().reward_params == {}


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"reward_model": {"pth": "x"}}, "stages.grpo.reward_params.reward_model: unknown parameter 'pth' of the `reward_model` reward; valid: path, batch_size, normalize"),
        ({"reward_model": {"normalize": "rank"}}, "stages.grpo.reward_params.reward_model: normalize='rank'; valid: sigmoid, zscore, none"),
        ({"reward_model": {"batch_size": 0}}, "stages.grpo.reward_params.reward_model: batch_size must be an integer >= 1"),
        ({"routed": {"routing": {"routed": 1.0}}}, "stages.grpo.reward_params.routed: routing cannot contain `routed` itself"),
        ({"countdown": {"x": 1}}, "stages.grpo.reward_params.countdown: the `countdown` reward takes no parameters; rewards that do: process_validity, reward_model, routed"),
        ({"no_such": {}}, "stages.grpo.reward_params.no_such: unknown reward 'no_such'; valid rewards: countdown"),
        ({"reward_model": 3}, "stages.grpo.reward_params.reward_model: the `reward_model` reward's parameters must be a mapping"),
    ],
)
def test_bad_reward_params_name_the_field(params, expected):
    with pytest.raises(ConfigError) as err:
        grpo(reward_params=params)
    assert str(err.value).startswith(expected)


@pytest.mark.parametrize(
    "old, value, new",
    [
        ("reward_model_path", "my/rm", "reward_params.reward_model.path"),
        ("reward_model_batch_size", 16, "reward_params.reward_model.batch_size"),
        ("reward_model_normalize", "none", "reward_params.reward_model.normalize"),
        ("reward_routing", {"countdown": 1.0}, "reward_params.routed.routing"),
    ],
)
def test_old_flat_fields_name_the_new_spelling(old, value, new):
    with pytest.raises(ConfigError, match=rf"stages\.grpo\.{old} moved: set stages\.grpo\.{new} instead"):
        grpo(**{old: value})


def test_other_grpo_checks_still_fail_as_config_errors():
    with pytest.raises(ConfigError, match="GRPO needs groups of at least 2"):
        grpo(samples_per_prompt=1)
    with pytest.raises(ConfigError, match=r"stages\.grpo\.rewards='nope' is not registered; valid: countdown"):
        grpo(rewards={"nope": 1.0})
    with pytest.raises(ConfigError, match=r"stages\.grpo\.rewards is empty"):
        grpo(rewards={})


def test_readability_config_lives_with_the_schemas():
    from r1lab.stages import filters

    assert filters.ReadabilityConfig is ReadabilityConfig
