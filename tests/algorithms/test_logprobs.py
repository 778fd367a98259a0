import pytest
import torch

from r1lab.algorithms.logprobs import selective_log_softmax, token_logprobs_and_entropy

B, L, H, V = 2, 5, 4, 50


def _inputs(seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, L, H, generator=g, requires_grad=True)
    weight = torch.randn(V, H, generator=g, requires_grad=True)
    b = torch.randn(V, generator=g, requires_grad=True) if bias else None
    targets = torch.randint(0, V, (B, L), generator=g)
    return hidden, weight, b, targets


def _naive(hidden, weight, bias, targets, temperature=1.0):
    logits = torch.nn.functional.linear(hidden, weight, bias).float() / temperature  # [B, L, V]
    logp_all = logits.log_softmax(-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_matches_naive_values_and_gradients(bias, temperature):
    hidden, weight, b, targets = _inputs(bias=bias)
    params = [hidden, weight] + ([b] if bias else [])
    # chunk_size 3 over 10 positions: chunks of 3, 3, 3, 1
    logp, entropy = token_logprobs_and_entropy(
        hidden, weight, targets, chunk_size=3, temperature=temperature, lm_head_bias=b
    )
    ref_logp, ref_entropy = _naive(hidden, weight, b, targets, temperature)
    torch.testing.assert_close(logp, ref_logp)
    torch.testing.assert_close(entropy, ref_entropy.detach())
    assert logp.dtype == torch.float32 and not entropy.requires_grad

    upstream = torch.randn(B, L)  # a non-uniform upstream gradient
    grads = torch.autograd.grad((logp * upstream).sum(), params)
    ref_grads = torch.autograd.grad((ref_logp * upstream).sum(), params)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)


def test_mask_skips_positions():
    hidden, weight, _, targets = _inputs()
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]])
    logp, entropy = token_logprobs_and_entropy(hidden, weight, targets, chunk_size=4, mask=mask)
    ref_logp, ref_entropy = _naive(hidden, weight, None, targets)
    torch.testing.assert_close(logp, ref_logp * mask)
    torch.testing.assert_close(entropy, ref_entropy.detach() * mask)
    grads = torch.autograd.grad(logp.sum(), (hidden, weight))
    ref_grads = torch.autograd.grad((ref_logp * mask).sum(), (hidden, weight))
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)
    assert torch.all(grads[0][mask == 0] == 0)


def test_a_fully_masked_batch_stays_on_the_graph_with_zero_gradients():
    """Every row masked (a micro-batch of completions all cut under overlong=mask): zeros, but a
    loss built on them still has a grad_fn (DeepSpeed's backward refuses one without) and its
    gradients are exactly zero."""
    hidden, weight, _, targets = _inputs()
    logp, entropy = token_logprobs_and_entropy(hidden, weight, targets, mask=torch.zeros(B, L, dtype=torch.long),
                                               with_entropy=True)
    assert torch.equal(logp, torch.zeros(B, L)) and torch.equal(entropy, torch.zeros(B, L))
    loss = (logp * 3.0).sum() / 1
    assert loss.grad_fn is not None
    grads = torch.autograd.grad(loss, (hidden, weight))
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)
    with torch.no_grad():  # no graph asked: none built
        assert token_logprobs_and_entropy(hidden, weight, targets, mask=torch.zeros(B, L))[0].grad_fn is None


def test_temperature_divides_logits():
    hidden, weight, _, targets = _inputs()
    with torch.no_grad():
        hot, _ = token_logprobs_and_entropy(hidden, weight, targets, temperature=2.0, with_entropy=False)
        # scaling the weight by 1/2 divides the logits by 2
        scaled, none = token_logprobs_and_entropy(hidden, weight / 2, targets, with_entropy=False)
        plain, _ = token_logprobs_and_entropy(hidden, weight, targets)
    assert none is None
    torch.testing.assert_close(hot, scaled)
    assert not torch.allclose(hot, plain)


def test_no_vocab_sized_tensor_is_saved_for_backward():
    hidden, weight, _, targets = _inputs()
    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logp, _ = token_logprobs_and_entropy(hidden, weight, targets, chunk_size=3)
    assert saved, "expected the scatter/cat ops to save something"
    assert not [s for s in saved if len(s) >= 2 and s[-1] == V], saved
    logp.sum().backward()  # the recomputation in backward works
    assert weight.grad is not None


def test_selective_log_softmax():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(B, L, V, generator=g, requires_grad=True)
    ids = torch.randint(0, V, (B, L), generator=g)
    for temperature in (1.0, 0.5):
        out = selective_log_softmax(logits, ids, temperature=temperature)
        ref = (logits / temperature).log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(out, ref)
        (got,) = torch.autograd.grad(out.sum(), logits)
        (want,) = torch.autograd.grad(ref.sum(), logits)
        torch.testing.assert_close(got, want)
    # bf16 logits: float32 result, close to the float32 computation
    out16 = selective_log_softmax(logits.detach().bfloat16(), ids)
    assert out16.dtype == torch.float32
    ref16 = logits.detach().bfloat16().float().log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out16, ref16)


def test_bf16_hidden_gives_float32_logprobs():
    hidden, weight, _, targets = _inputs()
    logp, _ = token_logprobs_and_entropy(hidden.detach().bfloat16(), weight.detach().bfloat16(), targets)
    ref, _ = _naive(hidden.detach().bfloat16(), weight.detach().bfloat16(), None, targets)
    assert logp.dtype == torch.float32
    torch.testing.assert_close(logp, ref)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_entropy_gradient_when_asked(temperature):
    """An entropy term in the loss (GRPO's ``entropy_coef``) needs the entropy's gradient: with
    ``entropy_grad`` it matches autograd through the full logits, chunked and checkpointed."""
    hidden, weight, b, targets = _inputs()
    params = [hidden, weight, b]
    mask = torch.ones(B, L, dtype=torch.long)
    mask[0, :2] = 0
    logp, entropy = token_logprobs_and_entropy(
        hidden, weight, targets, chunk_size=3, temperature=temperature, lm_head_bias=b, mask=mask, entropy_grad=True
    )
    ref_logp, ref_entropy = _naive(hidden, weight, b, targets, temperature)
    ref_entropy = ref_entropy * mask
    torch.testing.assert_close(entropy, ref_entropy)
    coef = 0.3  # loss = -logp - coef * entropy, as in the GRPO stage
    grads = torch.autograd.grad((-(logp * mask) - coef * entropy).sum(), params)
    ref = torch.autograd.grad((-(ref_logp * mask) - coef * ref_entropy).sum(), params)
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got, want)
    # the entropy term alone has a gradient of its own (it is not detached)
    _, entropy = token_logprobs_and_entropy(hidden, weight, targets, chunk_size=3, lm_head_bias=b, entropy_grad=True)
    assert torch.autograd.grad(entropy.sum(), weight)[0].abs().sum() > 0
