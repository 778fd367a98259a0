"""A real rollout worker driven without the CLI: pushed weights arrive exactly (its greedy and seeded
samples equal the trainer's own sampler on the same weights), `AheadRounds` keeps at most ``k``
versions of lag and restores what a checkpoint saved, an idle or busy worker is not taken for a dead one."""
from __future__ import annotations

import json
import time

import pytest
import torch

from tests.rollout.async_helpers import save_micro_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory) -> str:
    return save_micro_model(tmp_path_factory.mktemp("micro"))


# --- on a real worker, without the CLI -----------------------------------------------------------------


@pytest.fixture
def remote(micro_dir):
    """A trainer-side model and a `RemoteEngine` on one embedded worker; ``state["version"]`` is the policy version."""
    from r1lab.config.schema import RolloutConfig
    from r1lab.models.load import load_model, load_tokenizer
    from r1lab.rollout.engine import Policy
    from r1lab.rollout.remote import RemoteEngine

    model, tokenizer = load_model(micro_dir, dtype=torch.float32).eval(), load_tokenizer(micro_dir)
    state = {"version": 0}
    policy = Policy(module=model, path=micro_dir, version=lambda: state["version"])
    engine = RemoteEngine(RolloutConfig(placement="separate"), policy, tokenizer, seed=0)
    yield model, tokenizer, engine, state
    engine.close()


def test_pushed_weights_arrive_exactly(remote):
    from r1lab.rollout.engine import Policy, SamplingParams
    from r1lab.rollout.hf_engine import HFEngine

    model, tokenizer, engine, state = remote
    prompts = [tokenizer("Use 3 5 7 to make 22.", add_special_tokens=False).input_ids] * 2
    greedy = SamplingParams(max_new_tokens=16, temperature=0.0, stop=[])
    local = HFEngine(Policy(module=model, path=""), tokenizer)
    before = [c.token_ids for c in engine.generate(prompts, greedy, None)]
    assert before == [c.token_ids for c in local.generate(prompts, greedy, None)]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
    state["version"] = 7
    pending = engine.submit(prompts, greedy, None)
    completions, results = pending.result()
    assert results[0].version == 7
    assert [c.token_ids for c in completions] == [c.token_ids for c in local.generate(prompts, greedy, None)] != before
    sampled = SamplingParams(max_new_tokens=16, temperature=1.0, stop=[])
    assert [c.token_ids for c in engine.generate(prompts, sampled, 5)] == [c.token_ids for c in local.generate(prompts, sampled, 5)]


def test_ahead_rounds_never_lag_more_than_k_versions(remote):
    from r1lab.rollout.engine import SamplingParams
    from r1lab.rollout.groups import GroupRequest, score_groups
    from r1lab.rollout.rounds import AheadRounds, RoundSpec

    model, tokenizer, engine, state = remote
    prompt = tokenizer("Use 3 5 7 to make 22.", add_special_tokens=False).input_ids

    def spec(draw: int) -> RoundSpec:
        request = GroupRequest(2, [prompt, prompt], {"numbers": [[3, 5, 7]] * 2, "target": [22] * 2}, None)
        return RoundSpec(request, SamplingParams(max_new_tokens=8, temperature=1.0, stop=[]), seed=draw)

    def score(request, completions, seconds):
        return score_groups(request, completions, "none", {"countdown": 1.0}, False, seconds)

    rounds = AheadRounds(engine, spec, score, max_staleness=2, version=lambda: state["version"])
    written_by = []
    for step in range(6):
        written_by.append(int(rounds.get(step).policy_versions[0]))
        state["version"] += 1  # one optimizer step per round
    # rounds 0-2 were sent before any update; from then on each round is two versions behind
    assert written_by == [0, 0, 0, 1, 2, 3]
    figures = rounds.step_figures()
    assert figures["async/version_lag_max"] == 2.0 and figures["async/rounds_in_flight"] == 2.0
    assert figures["async/version_lag_share/0"] == pytest.approx(1 / 6)
    saved = rounds.checkpoint()
    assert sorted(saved["rounds_in_flight"]) == ["6", "7"]
    restored = AheadRounds(engine, spec, score, max_staleness=2, version=lambda: state["version"])
    restored.restore(json.loads(json.dumps(saved)))
    again = restored.get(6)
    assert again.completions == rounds.get(6).completions and int(again.policy_versions[0]) == 4


def test_a_worker_idle_longer_than_the_timeout_is_not_a_failure(micro_dir):
    from r1lab.config.schema import RolloutConfig
    from r1lab.models.load import load_model, load_tokenizer
    from r1lab.rollout.engine import Policy, SamplingParams

    from r1lab.rollout.remote import RemoteEngine

    model, tokenizer = load_model(micro_dir, dtype=torch.float32).eval(), load_tokenizer(micro_dir)
    engine = RemoteEngine(RolloutConfig(placement="separate", worker_timeout_s=1.0), Policy(module=model, path=micro_dir), tokenizer, seed=0)
    try:
        prompts = [tokenizer("Use 3 5 7 to make 22.", add_special_tokens=False).input_ids]
        greedy = SamplingParams(max_new_tokens=4, temperature=0.0, stop=[])
        first = engine.generate(prompts, greedy, None)
        time.sleep(2.5)  # idle, silent: the trainer was busy elsewhere
        assert engine.generate(prompts, greedy, None)[0].token_ids == first[0].token_ids
        # a request that keeps the worker busy for longer than the timeout: its heartbeats keep it alive
        longer = SamplingParams(max_new_tokens=128, temperature=1.0, stop=[])
        assert len(engine.generate(prompts * 2048, longer, 1)) == 2048  # seconds: several heartbeats
    finally:
        engine.close()
