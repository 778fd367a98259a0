import math

import pytest
import torch

from r1lab.algorithms.dpo_loss import DPO_LOSSES, DPOLossConfig, compute_dpo_loss

# One pair: chosen logp -10 (ref -11), rejected logp -12 (ref -11); chosen 4 tokens, rejected 2.
CHOSEN, REJECTED = torch.tensor([-10.0]), torch.tensor([-12.0])
REF_CHOSEN, REF_REJECTED = torch.tensor([-11.0]), torch.tensor([-11.0])
LEN_C, LEN_R = torch.tensor([4]), torch.tensor([2])


def dpo(name, chosen=CHOSEN, rejected=REJECTED, len_r=LEN_R, **kw):
    return compute_dpo_loss(
        chosen, rejected, REF_CHOSEN, REF_REJECTED, DPOLossConfig(name=name, **kw), LEN_C, len_r
    )


def test_sigmoid():
    # log-ratios: chosen +1, rejected -1; z = 0.1 * (1 - (-1)) = 0.2
    # loss = -log sigmoid(0.2) = log(1 + e^-0.2) = 0.5981389
    loss, m = dpo("sigmoid", beta=0.1)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.2)), abs=1e-6)
    assert loss.item() == pytest.approx(0.5981389, abs=1e-6)
    assert m["chosen_rewards"].item() == pytest.approx(0.1)
    assert m["rejected_rewards"].item() == pytest.approx(-0.1)
    assert m["margins"].item() == pytest.approx(0.2)
    assert m["accuracy"].item() == 1.0


def test_sigmoid_label_smoothing():
    # 0.9 * log(1 + e^-0.2) + 0.1 * log(1 + e^0.2) = 0.9 * 0.5981389 + 0.1 * 0.7981389 = 0.6181389
    loss, _ = dpo("sigmoid", beta=0.1, label_smoothing=0.1)
    assert loss.item() == pytest.approx(0.6181389, abs=1e-6)


def test_sigmoid_gradient():
    # d loss / d chosen_logp = -beta * sigmoid(-z) = -0.1 * 0.4501660 = -0.0450166
    chosen = CHOSEN.clone().requires_grad_(True)
    loss, _ = dpo("sigmoid", chosen=chosen, beta=0.1)
    (grad,) = torch.autograd.grad(loss.sum(), chosen)
    assert grad.item() == pytest.approx(-0.1 / (1 + math.exp(0.2)), abs=1e-7)


def test_ipo():
    # per-token log-ratios: chosen 1 / 4 = 0.25, rejected -1 / 2 = -0.5; h = 0.75
    # loss = (0.75 - 1 / (2 * 0.1))^2 = (0.75 - 5)^2 = 18.0625
    loss, m = dpo("ipo", beta=0.1)
    assert loss.item() == pytest.approx(18.0625)
    assert m["margins"].item() == pytest.approx(0.2)


def test_simpo():
    # rejected length 4: averages -10/4 = -2.5 and -12/4 = -3. beta 2, gamma 0.5:
    # z = 2 * 0.5 - 0.5 = 0.5; loss = log(1 + e^-0.5) = 0.4740770
    loss, m = dpo("simpo", len_r=torch.tensor([4]), beta=2.0, simpo_gamma=0.5)
    assert loss.item() == pytest.approx(0.4740770, abs=1e-6)
    assert m["chosen_rewards"].item() == pytest.approx(-5.0)  # beta * avg logp
    assert m["rejected_rewards"].item() == pytest.approx(-6.0)
    # reference-free: garbage refs change nothing
    loss2, _ = compute_dpo_loss(
        CHOSEN, REJECTED, torch.tensor([123.0]), torch.tensor([float("nan")]),
        DPOLossConfig("simpo", beta=2.0), LEN_C, torch.tensor([4]),
    )
    assert loss2.item() == pytest.approx(0.4740770, abs=1e-6)


def test_batch_shapes_and_accuracy():
    chosen = torch.tensor([-10.0, -20.0])
    rejected = torch.tensor([-12.0, -5.0])
    ref = torch.tensor([-11.0, -11.0])
    lens = torch.tensor([4, 4])
    for name in DPO_LOSSES.names():
        loss, m = compute_dpo_loss(chosen, rejected, ref, ref, DPOLossConfig(name), lens, lens)
        assert loss.shape == (2,)
        assert set(m) == {"chosen_rewards", "rejected_rewards", "margins", "accuracy"}
        assert m["accuracy"].tolist() == [1.0, 0.0]


def test_config_validation():
    with pytest.raises(ValueError):
        DPOLossConfig(beta=0.0)
    with pytest.raises(ValueError):
        DPOLossConfig(label_smoothing=0.5)


@pytest.mark.slow
def test_simpo_matches_trl_cpo_trainer():
    """TRL's SimPO lives in CPOTrainer.cpo_loss, callable on a stand-in ``self`` (imports are slow)."""
    from types import SimpleNamespace

    cpo = pytest.importorskip("trl.experimental.cpo.cpo_trainer")
    g = torch.Generator().manual_seed(0)
    chosen, rejected = -torch.rand(5, generator=g) * 40, -torch.rand(5, generator=g) * 40
    len_c, len_r = torch.randint(1, 30, (5,), generator=g), torch.randint(1, 30, (5,), generator=g)
    for name, eps in [("simpo", 0.0), ("simpo", 0.2)]:
        cfg = DPOLossConfig(name, beta=2.0, label_smoothing=eps, simpo_gamma=0.7)
        fake = SimpleNamespace(
            alpha=0.0, loss_type=name, beta=2.0, label_smoothing=eps, simpo_gamma=0.7,
            accelerator=SimpleNamespace(device="cpu"),
        )
        trl_loss, trl_chosen, trl_rejected = cpo.CPOTrainer.cpo_loss(fake, chosen / len_c, rejected / len_r)
        ours, m = compute_dpo_loss(chosen, rejected, chosen, rejected, cfg, len_c, len_r)
        torch.testing.assert_close(ours, trl_loss)
        torch.testing.assert_close(m["chosen_rewards"], trl_chosen)
        torch.testing.assert_close(m["rejected_rewards"], trl_rejected)
