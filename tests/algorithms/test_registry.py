import pytest

from r1lab.algorithms import ADVANTAGES, DPO_LOSSES, KL_ESTIMATORS, POLICY_LOSSES, REDUCTIONS
from r1lab.registry import Registry


def test_register_get_names():
    reg: Registry = Registry("widget")

    @reg.register("b")
    def b():
        return "b"

    @reg.register("a")
    def a():
        return "a"

    assert reg.get("a") is a and reg.get("b")() == "b"
    assert reg.names() == ["a", "b"]
    assert "a" in reg and "c" not in reg and len(reg) == 2


def test_unknown_name_lists_valid_names():
    reg: Registry = Registry("widget")
    reg.register("alpha")(lambda: None)
    reg.register("beta")(lambda: None)
    with pytest.raises(KeyError, match=r"unknown widget 'gamma'; valid names: alpha, beta"):
        reg.get("gamma")


def test_duplicate_registration_fails():
    reg: Registry = Registry("widget")
    reg.register("x")(lambda: None)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("x")(lambda: None)


def test_shipped_members():
    assert ADVANTAGES.names() == ["group_mean", "reinforce_pp", "rloo"]
    assert POLICY_LOSSES.names() == ["clipped", "gspo", "vanilla_pg"]
    assert REDUCTIONS.names() == ["seq_mean_token_mean", "seq_mean_token_sum_norm", "token_mean"]
    assert KL_ESTIMATORS.names() == ["k1", "k2", "k3"]
    assert DPO_LOSSES.names() == ["ipo", "sigmoid", "simpo"]


def test_package_imports_without_heavy_dependencies():
    import subprocess
    import sys

    code = (
        "import sys, r1lab.algorithms; "
        "heavy = [m for m in ('deepspeed', 'transformers', 'wandb', 'trl') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
