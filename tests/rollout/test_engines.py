"""The two rollout engines against each other and against the trainer's forward: the real vLLM
engine (its CPU build, in-process), not a mock.

Tolerances: fp32 on both sides; vLLM's CPU kernels (oneDNN matmuls, its own attention) and the
trainer's sum in different orders, so log-probs agree to ~1e-6 here and are compared at 1e-4.
"""
from __future__ import annotations

import pytest
import torch

from r1lab.config.schema import LoRAConfig, RolloutConfig, TinyModelConfig
from r1lab.models.forward import token_logprobs
from r1lab.models.load import load_model, load_tokenizer
from r1lab.models.lora import apply_lora
from r1lab.models.tiny import save_tiny_model
from r1lab.rollout.engine import Policy, SamplingParams, build_rollout_engine

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

LOGP_TOL = 1e-4
# head_dim 32: vLLM's CPU attention has no kernel for 16
MODEL = TinyModelConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128, max_position_embeddings=256)
VLLM = RolloutConfig(backend="vllm", max_model_len=256, max_num_seqs=32, kv_cache_gb=0.25)
PROMPTS = ["User: Use 1 2 3 to make 6\nAssistant: <think>", "User: Use 4 5 to make 9\nAssistant: <think>", "Use 9"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(save_tiny_model(MODEL, tmp_path_factory.mktemp("engines") / "tiny"))


class Trainer:
    """A model, its tokenizer, an optimizer, and the step count the engines read as the version."""

    def __init__(self, path: str, lora: bool = False) -> None:
        self.tokenizer = load_tokenizer(path)
        model = load_model(path)
        self.model = apply_lora(model, LoRAConfig(enabled=True, r=4, alpha=8, target_modules=["q_proj", "v_proj"])) if lora else model
        self.steps = 0
        self.opt = torch.optim.SGD([p for p in self.model.parameters() if p.requires_grad], lr=0.5 if lora else 0.05)
        self.policy = Policy(module=self.model, path=path, version=lambda: self.steps)

    def prompt_ids(self, prompts=PROMPTS) -> list[list[int]]:
        return [self.tokenizer(p).input_ids for p in prompts]

    def step(self, prompt: list[int], completion: list[int]) -> None:
        """One optimizer step raising the log-prob of ``completion``: it changes what greedy picks."""
        ids = torch.tensor([prompt + completion])
        mask = torch.zeros_like(ids)
        mask[0, len(prompt) :] = 1
        logp, _ = token_logprobs(self.model, ids, torch.ones_like(ids), mask)
        loss = -(logp * mask[:, 1:]).sum()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.steps += 1

    @torch.no_grad()
    def logprobs(self, prompt: list[int], completion: list[int], temperature: float = 1.0) -> list[float]:
        ids = torch.tensor([prompt + completion])
        mask = torch.zeros_like(ids)
        mask[0, len(prompt) :] = 1
        logp, _ = token_logprobs(self.model, ids, torch.ones_like(ids), mask, temperature=temperature)
        return logp[0, len(prompt) - 1 :].tolist()


@pytest.fixture(scope="module")
def trainer(tiny_dir):
    return Trainer(tiny_dir)


@pytest.fixture(scope="module")
def engines(trainer):
    hf = build_rollout_engine(RolloutConfig(backend="hf"), trainer.policy, trainer.tokenizer, seed=0)
    vllm = build_rollout_engine(VLLM, trainer.policy, trainer.tokenizer, seed=0)
    yield hf, vllm
    vllm.close()


def test_greedy_completions_agree(trainer, engines):
    hf, vllm = engines
    prompts = trainer.prompt_ids() + trainer.prompt_ids()[:1]  # a repeated prompt too
    unstopped = hf.generate(prompts, SamplingParams(max_new_tokens=40, temperature=0.0, stop=[]), seed=None)
    reached = unstopped[0].text[10:12]  # a stop string the first row does reach
    for stop in ([], ["</answer>"], [reached]):
        params = SamplingParams(max_new_tokens=40, temperature=0.0, stop=stop)
        a, b = hf.generate(prompts, params, seed=None), vllm.generate(prompts, params, seed=None)
        assert [c.token_ids for c in a] == [c.token_ids for c in b]
        assert [c.text for c in a] == [c.text for c in b]
        assert [c.stopped for c in a] == [c.stopped for c in b]
    assert b[0].stopped and b[0].text.endswith(reached) and len(b[0].token_ids) <= 12


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_logprobs_are_the_trainers(trainer, engines, temperature):
    """Both engines report the log-prob of each sampled token under the distribution sampled
    (temperature applied), which is what the trainer's forward recomputes."""
    prompts = [p for p in trainer.prompt_ids() for _ in range(3)]
    params = SamplingParams(max_new_tokens=30, temperature=temperature, stop=[])
    for engine in engines:
        for p, c in zip(prompts, engine.generate(prompts, params, seed=3)):
            assert len(c.logprobs) == len(c.token_ids)
            torch.testing.assert_close(torch.tensor(c.logprobs), torch.tensor(trainer.logprobs(p, c.token_ids, temperature)), atol=LOGP_TOL, rtol=0)


def test_same_seed_same_samples(trainer, engines):
    prompts = [p for p in trainer.prompt_ids() for _ in range(4)]
    params = SamplingParams(max_new_tokens=20, temperature=1.0, stop=[])
    for engine in engines:
        a, b, c = (engine.generate(prompts, params, seed=s) for s in (11, 11, 12))
        assert [x.token_ids for x in a] == [x.token_ids for x in b]
        assert [x.token_ids for x in a] != [x.token_ids for x in c]
        assert len({tuple(x.token_ids) for x in a[:4]}) > 1  # the 4 samples of one prompt differ


def _push_check(trainer: Trainer, vllm) -> None:
    """After an optimizer step the vLLM engine samples from the updated weights."""
    hf = build_rollout_engine(RolloutConfig(backend="hf"), trainer.policy, trainer.tokenizer, seed=0)
    prompts = trainer.prompt_ids()
    greedy = SamplingParams(max_new_tokens=24, temperature=0.0, stop=[])
    before = vllm.generate(prompts, greedy, seed=None)
    target = [trainer.tokenizer("3*2=6</think><answer>", add_special_tokens=False).input_ids for _ in prompts]
    for _ in range(3):
        for p, t in zip(prompts, target):
            trainer.step(p, t)
    a, b = hf.generate(prompts, greedy, seed=None), vllm.generate(prompts, greedy, seed=None)
    assert [c.token_ids for c in b] != [c.token_ids for c in before]  # the steps changed the model
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    sampled = vllm.generate(prompts, SamplingParams(max_new_tokens=24, temperature=1.0, stop=[]), seed=5)
    for p, c in zip(prompts, sampled):
        torch.testing.assert_close(torch.tensor(c.logprobs), torch.tensor(trainer.logprobs(p, c.token_ids)), atol=LOGP_TOL, rtol=0)


def test_weights_pushed_after_an_optimizer_step(tiny_dir):
    trainer = Trainer(tiny_dir)
    vllm = build_rollout_engine(VLLM, trainer.policy, trainer.tokenizer, seed=0)
    try:
        _push_check(trainer, vllm)
    finally:
        vllm.close()


def test_lora_weights_pushed_merged(tiny_dir):
    """Under LoRA the engine serves base + adapters (merged on the way), the trainer stays unmerged."""
    trainer = Trainer(tiny_dir, lora=True)
    vllm = build_rollout_engine(VLLM, trainer.policy, trainer.tokenizer, seed=0)
    try:
        _push_check(trainer, vllm)
        assert any("lora_B" in n and p.abs().sum() > 0 for n, p in trainer.model.named_parameters())
    finally:
        vllm.close()
