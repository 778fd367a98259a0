import math

import pytest

from r1lab.engine.schedule import lr_multiplier


def test_warmup_then_cosine_to_min():
    # 10 steps, 2 warmup: 0.5, 1.0, then cosine from 1 to 0.1 over 8 steps
    assert lr_multiplier(0, 10, 2, "cosine", 0.1) == pytest.approx(0.5)
    assert lr_multiplier(1, 10, 2, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_multiplier(2, 10, 2, "cosine", 0.1) == pytest.approx(1.0)
    mid = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8))
    assert lr_multiplier(6, 10, 2, "cosine", 0.1) == pytest.approx(mid)
    assert lr_multiplier(10, 10, 2, "cosine", 0.1) == pytest.approx(0.1)


def test_linear_and_constant():
    assert lr_multiplier(5, 10, 0, "linear", 0.0) == pytest.approx(0.5)
    assert lr_multiplier(7, 10, 0, "constant", 0.0) == 1.0
    with pytest.raises(KeyError, match="unknown lr schedule 'exp'; valid names: constant, cosine, linear"):
        lr_multiplier(5, 10, 0, "exp", 0.0)



def test_a_registered_schedule_is_valid_in_a_config_and_an_unknown_one_is_named():
    from r1lab.config.errors import ConfigError
    from r1lab.engine.schedule import SCHEDULES
    from r1lab.stages.sft import SFTStageConfig
    from r1lab.validate import check_stage

    SCHEDULES.register("halving", lambda progress: 0.5 ** (10 * progress))
    try:
        assert lr_multiplier(5, 10, 0, "halving", 0.0) == pytest.approx(0.5 ** 5)
        check_stage("cold_start", SFTStageConfig(schedule="halving"))
    finally:
        SCHEDULES.unregister("halving")
    with pytest.raises(ConfigError, match=r"stages.cold_start.schedule='halving'; valid: constant, cosine, linear"):
        check_stage("cold_start", SFTStageConfig(schedule="halving"))
