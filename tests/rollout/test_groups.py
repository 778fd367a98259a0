import torch

from r1lab.rollout.groups import Rollout


def _rollout(rewards, g=2):
    n = len(rewards)
    return Rollout(
        group_size=g,
        prompts=[[i // g] for i in range(n)],
        completions=[[100 + i] for i in range(n)],
        texts=[f"text {i}" for i in range(n)],
        responses=[f"response {i}" for i in range(n)],
        sampler_logprobs=[[-0.1 * i] for i in range(n)],
        truncated=torch.zeros(n, dtype=torch.bool),
        rewards=torch.tensor(rewards, dtype=torch.float32),
        components={"countdown": torch.tensor(rewards, dtype=torch.float32)},
    )


def test_varied_groups_flags_only_groups_with_a_learning_signal():
    r = _rollout([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.5, 0.25])
    assert r.varied_groups().tolist() == [False, True, False, True]


def test_keep_groups_and_concat_never_keep_an_all_equal_group():
    a = _rollout([1.0, 1.0, 0.0, 1.0])
    b = _rollout([0.0, 0.0, 1.0, 0.0])
    kept = Rollout.concat([a.keep_groups(a.varied_groups()), b.keep_groups(b.varied_groups())])
    assert kept.num_groups == 2
    assert kept.completions == [[102], [103], [102], [103]]
    assert kept.responses == ["response 2", "response 3", "response 2", "response 3"]
    assert kept.texts == ["text 2", "text 3", "text 2", "text 3"]
    assert kept.sampler_logprobs == [[-0.2], [-0.30000000000000004], [-0.2], [-0.30000000000000004]]
    assert kept.rewards.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert kept.components["countdown"].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert kept.varied_groups().all()
