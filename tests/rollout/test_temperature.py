"""Sampling at a temperature other than 0 and 1 draws from softmax(logits / T), and reports the
log-prob of each token under that distribution: the sampler's own step and the ``hf`` engine
end to end on a tiny model (what GRPO, evaluation and rejection sampling call).

Every draw is seeded, so the figures are fixed; the tolerances are still stated in binomial
standard errors (sqrt(p(1-p)/N) <= 0.5/sqrt(N)), so they would hold for any seed.
"""
from __future__ import annotations

import math

import pytest
import torch

from r1lab.config.schema import TinyModelConfig
from r1lab.models.forward import token_logprobs
from r1lab.models.tiny import build_tiny_model, char_tokenizer
from r1lab.rollout.engine import Policy, SamplingParams
from r1lab.rollout.hf_engine import HFEngine
from r1lab.rollout.sampler import _sample_next

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def frequencies(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.bincount(tokens.flatten(), minlength=vocab).double() / tokens.numel()


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sample_next_draws_from_the_tempered_softmax(temperature):
    n = 20_000
    tolerance = 5 * 0.5 / math.sqrt(n)  # 5 standard errors at worst: 0.018
    expected = torch.softmax(LOGITS.double() / temperature, -1)
    untempered = torch.softmax(LOGITS.double(), -1)
    assert (expected - untempered).abs().max() > 10 * tolerance  # T=1 is far outside the tolerance
    gen = torch.Generator().manual_seed(0)
    tokens, logp = _sample_next(LOGITS.expand(n, -1), temperature, 1.0, gen, with_logprobs=True)
    assert (frequencies(tokens, LOGITS.numel()) - expected).abs().max() < tolerance
    # the reported log-prob is the tempered one, token by token (float32 arithmetic)
    torch.testing.assert_close(logp, torch.log_softmax(LOGITS / temperature, -1)[tokens], atol=1e-5, rtol=0)


def peaked_tiny_model():
    """A tiny llama whose next-token logits spread over several units (a fresh one's are ~0.1 apart,
    where every temperature gives nearly the same uniform distribution)."""
    tok = char_tokenizer()
    model = build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64), len(tok), tok)
    with torch.no_grad():
        model.model.norm.weight.mul_(4.0)  # logits are linear in the final norm's scale: top token 0.1 at T=1, 0.5 at T=0.5
    return model.eval(), tok


@torch.no_grad()
def test_hf_engine_first_token_follows_the_tempered_softmax():
    model, tok = peaked_tiny_model()
    engine = HFEngine(Policy(module=model, path=""), tok)
    prompt = tok("User: Use 3 5 7 to make 22.\nAssistant:").input_ids
    logits = model(torch.tensor([prompt])).logits[0, -1].double()
    n, temperature = 4000, 0.5
    tolerance = 5 * 0.5 / math.sqrt(n)  # 0.04
    expected = torch.softmax(logits / temperature, -1)
    assert (expected - torch.softmax(logits, -1)).abs().max() > 3 * tolerance  # T=1 would be caught
    out = engine.generate([prompt] * n, SamplingParams(max_new_tokens=1, temperature=temperature, stop=[]), seed=0)
    first = torch.tensor([c.token_ids[0] for c in out])
    assert (frequencies(first, logits.numel()) - expected).abs().max() < tolerance
    reported = torch.tensor([c.logprobs[0] for c in out], dtype=torch.float64)
    torch.testing.assert_close(reported, torch.log_softmax(logits / temperature, -1)[first], atol=1e-4, rtol=0)


@torch.no_grad()
def test_hf_engine_logprobs_of_whole_completions_are_tempered():
    """Every decode step samples at T: the log-probs reported for 16-token completions are the
    trainer's forward at the same temperature (1e-4: fp32, cache vs. full forward), not T=1's."""
    model, tok = peaked_tiny_model()
    engine = HFEngine(Policy(module=model, path=""), tok)
    prompts = [tok(p).input_ids for p in ("User: Use 1 2 3 to make 6\nAssistant:", "Use 9")]
    rows = [p for p in prompts for _ in range(3)]
    temperature = 0.5
    out = engine.generate(rows, SamplingParams(max_new_tokens=16, temperature=temperature, stop=[]), seed=3)
    for p, c in zip(rows, out):
        ids = torch.tensor([p + c.token_ids])
        mask = torch.zeros_like(ids)
        mask[0, len(p):] = 1
        tempered, _ = token_logprobs(model, ids, torch.ones_like(ids), mask, temperature=temperature)
        plain, _ = token_logprobs(model, ids, torch.ones_like(ids), mask, temperature=1.0)
        reported = torch.tensor(c.logprobs)
        assert len(c.logprobs) == len(c.token_ids)
        torch.testing.assert_close(reported, tempered[0, len(p) - 1:], atol=1e-4, rtol=0)
        assert (reported - plain[0, len(p) - 1:]).abs().max() > 0.1  # T=1's differ by far more than 1e-4
