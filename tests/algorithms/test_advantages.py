import pytest
import torch

from r1lab.algorithms.advantages import ADVANTAGES, AdvantageConfig, compute_advantages, group_stats

# Two groups of G = 4:
#   group 0: [1, 0, 0, 1]  mean 0.5, centred [.5, -.5, -.5, .5], unbiased var (4 * .25) / 3 = 1/3
#   group 1: [0, 1, 2, 3]  mean 1.5, centred [-1.5, -.5, .5, 1.5], unbiased var 5 / 3
REWARDS = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 2.0, 3.0]])


def adv(name, rewards=REWARDS, **kw):
    return compute_advantages(rewards, AdvantageConfig(name=name, **kw))


def test_group_mean_group_std():
    # .5 / sqrt(1/3) = .866025; .5 / sqrt(5/3) = .387298; 1.5 / sqrt(5/3) = 1.161895
    expected = torch.tensor(
        [[0.866025, -0.866025, -0.866025, 0.866025], [-1.161895, -0.387298, 0.387298, 1.161895]]
    )
    torch.testing.assert_close(adv("group_mean", scale="group", eps=0.0), expected, atol=1e-6, rtol=0)
    # eps is added to the std: .5 / (sqrt(1/3) + 0.1) = 0.738170
    assert adv("group_mean", scale="group", eps=0.1)[0, 0].item() == pytest.approx(0.738170, abs=1e-6)


def test_group_mean_batch_std():
    # All 8 rewards: mean 1, squared deviations 0,1,1,0,1,0,1,4 -> sum 8, unbiased var 8/7,
    # std 1.069045. .5 / 1.069045 = .467707; 1.5 / 1.069045 = 1.403121
    expected = torch.tensor(
        [[0.467707, -0.467707, -0.467707, 0.467707], [-1.403121, -0.467707, 0.467707, 1.403121]]
    )
    torch.testing.assert_close(adv("group_mean", scale="batch", eps=0.0), expected, atol=1e-6, rtol=0)


def test_group_mean_no_scale_is_dr_grpo():
    expected = torch.tensor([[0.5, -0.5, -0.5, 0.5], [-1.5, -0.5, 0.5, 1.5]])
    assert torch.equal(adv("group_mean", scale="none"), expected)


def test_rloo():
    # group 0: 1 - (0+0+1)/3 = 2/3, 0 - (1+0+1)/3 = -2/3
    # group 1: 0 - 6/3 = -2, 1 - 5/3 = -2/3, 2 - 4/3 = 2/3, 3 - 3/3 = 2
    expected = torch.tensor([[2 / 3, -2 / 3, -2 / 3, 2 / 3], [-2.0, -2 / 3, 2 / 3, 2.0]])
    torch.testing.assert_close(adv("rloo"), expected)
    # scale is ignored
    torch.testing.assert_close(adv("rloo", scale="none"), expected)


def test_reinforce_pp():
    # centred: [.5,-.5,-.5,.5,-1.5,-.5,.5,1.5], batch mean 0, sum of squares 1 + 5 = 6,
    # unbiased var 6/7, std .9258201. .5 / .9258201 = .540062; 1.5 / .9258201 = 1.620185
    expected = torch.tensor(
        [[0.540062, -0.540062, -0.540062, 0.540062], [-1.620185, -0.540062, 0.540062, 1.620185]]
    )
    torch.testing.assert_close(adv("reinforce_pp", eps=0.0), expected, atol=1e-6, rtol=0)


CONFIGS = [
    AdvantageConfig(name="group_mean", scale="group"),
    AdvantageConfig(name="group_mean", scale="batch"),
    AdvantageConfig(name="group_mean", scale="none"),
    AdvantageConfig(name="group_mean", scale="group", eps=0.0),
    AdvantageConfig(name="rloo"),
    AdvantageConfig(name="reinforce_pp"),
    AdvantageConfig(name="reinforce_pp", eps=0.0),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.name}-{c.scale}-{c.eps}")
def test_all_equal_groups_give_exact_zeros(cfg):
    # 0.1 * 3 / 3 != 0.1 in floating point: zeros must be enforced, not hoped for.
    rewards = torch.tensor([[0.1, 0.1, 0.1], [0.7, 0.7, 0.7], [1.0, 0.0, 1.0], [-3.3, -3.3, -3.3]])
    out = compute_advantages(rewards, cfg)
    assert out.dtype == torch.float32 and out.shape == rewards.shape
    assert torch.all(out[[0, 1, 3]] == 0.0)
    assert torch.all(out[2] != 0.0) and torch.isfinite(out).all()


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.name}-{c.scale}-{c.eps}")
def test_degenerate_batches_are_zero_not_nan(cfg):
    everything_equal = torch.full((3, 4), 0.5)
    single_sample = torch.tensor([[1.0], [0.0]])  # G = 1: no baseline possible
    for rewards in (everything_equal, single_sample):
        out = compute_advantages(rewards, cfg)
        assert torch.equal(out, torch.zeros_like(rewards))


def test_integer_rewards_become_float32():
    out = adv("group_mean", rewards=torch.tensor([[1, 0], [0, 0]]))
    assert out.dtype == torch.float32
    assert out[1].tolist() == [0.0, 0.0]


def test_bad_config_and_name():
    with pytest.raises(ValueError, match="scale"):
        AdvantageConfig(scale="global")
    with pytest.raises(KeyError, match="valid names: group_mean, reinforce_pp, rloo"):
        adv("ppo_gae")


def test_every_member_keeps_the_signature():
    lengths = torch.tensor([[3, 5, 8, 2], [4, 4, 9, 1]])
    truncated = torch.tensor([[False, False, True, False], [False, False, True, False]])
    for name in ADVANTAGES.names():
        out = ADVANTAGES.get(name)(REWARDS, AdvantageConfig(name=name))
        assert out.shape == REWARDS.shape
        # the per-sequence inputs are accepted by every estimator; the shipped ones ignore them
        both = ADVANTAGES.get(name)(REWARDS, AdvantageConfig(name=name), lengths=lengths, truncated=truncated)
        assert torch.equal(both, out)


@pytest.fixture
def length_penalised():
    """A per-sequence estimator registered for one test: group mean, minus a penalty per token
    over the group's shortest correct-length, and truncated completions held at -1."""

    @ADVANTAGES.register("length_penalised")
    def estimator(rewards, cfg, *, lengths=None, truncated=None):
        if lengths is None or truncated is None:
            raise ValueError("length_penalised needs lengths and truncated")
        shaped = rewards.float() - 0.1 * (lengths - lengths.amin(dim=1, keepdim=True))
        shaped = torch.where(truncated, torch.full_like(shaped, -1.0), shaped)
        return shaped - shaped.mean(dim=1, keepdim=True)

    yield
    ADVANTAGES._members.pop("length_penalised")


def test_an_estimator_reads_lengths_and_truncation_through_the_one_signature(length_penalised):
    rewards = torch.tensor([[1.0, 1.0, 0.0]])
    lengths = torch.tensor([[2, 12, 5]])
    truncated = torch.tensor([[False, False, True]])
    out = compute_advantages(rewards, AdvantageConfig(name="length_penalised"), lengths=lengths, truncated=truncated)
    # shaped [1.0, 0.0, -1.0] (the long one pays 10 x 0.1, the truncated one is -1): mean 0
    assert out[0].tolist() == pytest.approx([1.0, 0.0, -1.0])
    with pytest.raises(ValueError, match="needs lengths"):
        compute_advantages(rewards, AdvantageConfig(name="length_penalised"))
    with pytest.raises(ValueError, match=r"lengths must be shaped like the rewards \(1, 3\), got \(3,\)"):
        compute_advantages(rewards, AdvantageConfig(name="length_penalised"), lengths=lengths.view(-1), truncated=truncated)


def test_group_stats():
    correct = torch.tensor([[True, True], [False, False], [True, False]])
    rewards = correct.float()
    stats = group_stats(rewards, correct)
    assert stats["frac_groups_zero_std"].item() == pytest.approx(2 / 3)
    assert stats["frac_groups_all_correct"].item() == pytest.approx(1 / 3)
    assert stats["frac_groups_none_correct"].item() == pytest.approx(1 / 3)
    # stds 0, 0, sqrt(.5) -> mean .235702
    assert stats["reward_std_in_group"].item() == pytest.approx(0.235702, abs=1e-6)
