import math

import pytest
import torch

from r1lab.algorithms.kl import KL_ESTIMATORS, KLConfig, kl_loss_term, kl_penalty_in_reward

LOGP = torch.tensor([[-1.0, -2.0]])
REF = torch.tensor([[-1.5, -1.0]])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("k1", [0.5, -1.0]),  # logp - ref
        ("k2", [0.125, 0.5]),  # (logp - ref)^2 / 2
        # x = ref - logp = [-0.5, 1]: e^-0.5 + 0.5 - 1 = 0.1065307; e^1 - 1 - 1 = 0.7182818
        ("k3", [math.exp(-0.5) - 0.5, math.e - 2.0]),
    ],
)
def test_hand_computed(name, expected):
    torch.testing.assert_close(KL_ESTIMATORS.get(name)(LOGP, REF), torch.tensor([expected]))


def test_zero_when_policies_agree_and_k2_k3_nonnegative():
    logp = torch.randn(4, 7)
    ref = torch.randn(4, 7)
    for name in KL_ESTIMATORS.names():
        assert torch.all(KL_ESTIMATORS.get(name)(logp, logp.clone()) == 0)
    assert torch.all(KL_ESTIMATORS.get("k2")(logp, ref) >= 0)
    assert torch.all(KL_ESTIMATORS.get("k3")(logp, ref) >= 0)


def test_k1_k3_are_unbiased():
    # Exact expectation over a 3-token vocabulary, weighting each sampled token by p(x).
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.2, 0.6])
    true_kl = (p * (p / q).log()).sum()
    for name in ("k1", "k3"):
        est = KL_ESTIMATORS.get(name)(p.log().unsqueeze(0), q.log().unsqueeze(0))
        torch.testing.assert_close((p * est[0]).sum(), true_kl)


def test_k3_gradient():
    # d/dlogp [e^(ref-logp) - (ref-logp) - 1] = 1 - e^(ref-logp): at x = -0.5 -> 1 - e^-0.5
    logp = LOGP.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(KL_ESTIMATORS.get("k3")(logp, REF).sum(), logp)
    torch.testing.assert_close(grad, torch.tensor([[1 - math.exp(-0.5), 1 - math.e]]))


def test_kl_loss_term():
    assert torch.all(kl_loss_term(LOGP, None, KLConfig(beta=0.0)) == 0)
    assert torch.all(kl_loss_term(LOGP, REF, KLConfig(beta=0.1, in_reward=True)) == 0)
    torch.testing.assert_close(
        kl_loss_term(LOGP, REF, KLConfig(beta=0.04, estimator="k1")), torch.tensor([[0.02, -0.04]])
    )


def test_kl_penalty_in_reward():
    # k1 over valid tokens: (-1 - -1.5) + (-2 - -1) = -0.5 (3rd token masked);
    # reward 1 - 0.1 * (-0.5) = 1.05
    logp = torch.tensor([[-1.0, -2.0, -9.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    cfg = KLConfig(beta=0.1, estimator="k1", in_reward=True)
    out = kl_penalty_in_reward(torch.tensor([1.0]), logp, ref, mask, cfg)
    torch.testing.assert_close(out, torch.tensor([1.05]))
    assert not out.requires_grad
    # in_reward False or beta 0: rewards unchanged
    assert kl_penalty_in_reward(torch.tensor([1.0]), logp, ref, mask, KLConfig(beta=0.1)).item() == 1.0


def test_config():
    assert not KLConfig().needs_reference
    assert KLConfig(beta=0.04).needs_reference
    with pytest.raises(ValueError):
        KLConfig(beta=-1.0)
    with pytest.raises(KeyError, match="valid names: k1, k2, k3"):
        kl_loss_term(LOGP, REF, KLConfig(beta=0.1, estimator="k4"))
