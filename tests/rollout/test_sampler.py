import pytest
import torch
from transformers import AttentionInterface

from r1lab.config.schema import TinyModelConfig
from r1lab.models.tiny import build_tiny_model, char_tokenizer
from r1lab.rollout.kv_cache import CACHE_KWARG
from r1lab.rollout.sampler import SamplingParams, _sample_next, generate
from r1lab.rollout.shared_prefix import ATTENTION, _attend, shared_prefix_attention


def _model():
    tok = char_tokenizer()
    model = build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64), len(tok), tok)
    return model.eval(), tok


def test_greedy_matches_hf_generate_with_left_padding():
    model, tok = _model()
    prompts = [tok("User: Use 3 5 7 to make 22.").input_ids, tok("Hi").input_ids]
    ours = generate(model, tok, prompts, SamplingParams(max_new_tokens=12, temperature=0.0, stop=[]), batch_size=2)
    for p, c in zip(prompts, ours):
        ref = model.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        ref_ids = ref[0, len(p):].tolist()
        if tok.eos_token_id in ref_ids:  # both stop at (and keep) the first EOS
            ref_ids = ref_ids[: ref_ids.index(tok.eos_token_id) + 1]
        assert c.token_ids == ref_ids


class _Script:
    """A fake cache: records which rows are still live."""

    def __init__(self, rows):
        self.rows = rows

    def batch_select_indices(self, idx):
        self.rows = [self.rows[i] for i in idx.tolist()]


class ScriptedModel(torch.nn.Module):
    """Emits a fixed token sequence per row (row r writes scripts[r]), ignoring its input."""

    def __init__(self, scripts, vocab):
        super().__init__()
        self.scripts, self.vocab = scripts, vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask, position_ids, use_cache=True, logits_to_keep=None, **kwargs):
        cache = kwargs.get(CACHE_KWARG) or _Script(list(range(input_ids.shape[0])))
        t = attention_mask.shape[1] - self.prompt_width
        logits = torch.full((len(cache.rows), 1, self.vocab), -1e9)
        for i, r in enumerate(cache.rows):
            logits[i, 0, self.scripts[r][min(t, len(self.scripts[r]) - 1)]] = 0.0
        return type("Out", (), {"logits": logits, CACHE_KWARG: cache})()


def test_stop_string_ends_each_row_and_is_kept():
    tok = char_tokenizer()
    texts = ["ab</answer>zzzz", "abcdefghijklmnop", "</answer>"]
    scripts = [tok(t, add_special_tokens=False).input_ids for t in texts]
    model = ScriptedModel(scripts, len(tok))
    model.prompt_width = 2
    # distinct prompts: repeated ones share one prefill row (the fake keys its scripts by that row)
    prompts = [tok(p).input_ids for p in ("xa", "xb", "xc")]
    out = generate(model, tok, prompts, SamplingParams(max_new_tokens=12, temperature=0.0), batch_size=3)
    assert [c.text for c in out] == ["ab</answer>", "abcdefghijkl", "</answer>"]
    assert [c.stopped for c in out] == [True, False, True]


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    draws = {int(_sample_next(logits, 1.0, 0.7, gen)) for _ in range(300)}
    assert draws == {0, 1}  # 0.5 + 0.3 >= 0.7: tokens 2 and 3 are cut


def test_sampling_is_reproducible_with_a_seeded_generator():
    model, tok = _model()
    prompts = [tok("Use 1 2 3").input_ids] * 4
    a = generate(model, tok, prompts, SamplingParams(20, 1.0), 4, torch.Generator().manual_seed(7))
    b = generate(model, tok, prompts, SamplingParams(20, 1.0), 4, torch.Generator().manual_seed(7))
    assert [c.token_ids for c in a] == [c.token_ids for c in b]


@pytest.mark.parametrize("architecture,kv_heads", [("llama", 2), ("llama", 1), ("qwen2", 2)])
def test_repeated_prompts_are_prefilled_once_and_sample_as_if_alone(architecture, kv_heads, monkeypatch):
    tok = char_tokenizer()
    cfg = TinyModelConfig(architecture=architecture, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=kv_heads, intermediate_size=64)
    model = build_tiny_model(cfg, len(tok), tok).eval()
    calls = []  # decode steps through the shared-prefix attention (registered by name, so re-registered here)
    AttentionInterface.register(ATTENTION, lambda *a, **k: (calls.append(1), shared_prefix_attention(*a, **k))[1])
    try:
        _check_shared_prefill(model, tok)
    finally:
        AttentionInterface.register(ATTENTION, shared_prefix_attention)
    assert len(calls) > 0
    assert model.config._attn_implementation != ATTENTION  # switched back after decoding


def _check_shared_prefill(model, tok):
    a, b, c = (tok(t).input_ids for t in ("User: Use 3 5 7 to make 22.", "Hi", "Use 1 2"))
    prompts = [a, a, b, a, c, c]
    prefill_rows = []
    hook = model.register_forward_pre_hook(lambda m, args, kw: prefill_rows.append(kw["input_ids"].shape), with_kwargs=True)
    greedy = SamplingParams(max_new_tokens=10, temperature=0.0, stop=[])
    together = generate(model, tok, prompts, greedy, batch_size=6)
    hook.remove()
    assert prefill_rows[0][0] == 3  # one prefill row per distinct prompt
    assert all(shape[1] == 1 for shape in prefill_rows[1:])  # then one token per decode step
    for p, got in zip(prompts, together):
        alone = generate(model, tok, [p], greedy, batch_size=1)[0]
        assert got.token_ids == alone.token_ids
    prefill_rows.clear()
    hook = model.register_forward_pre_hook(lambda m, args, kw: prefill_rows.append(kw["input_ids"].shape), with_kwargs=True)
    unshared = generate(model, tok, prompts, greedy, batch_size=6, share_prompts=False)
    hook.remove()
    assert prefill_rows[0][0] == 6  # sharing off: every row prefilled on its own
    assert [c.token_ids for c in unshared] == [c.token_ids for c in together]
    # sampling: copies of a prompt draw independently (not one draw copied)
    sampled = generate(model, tok, [a] * 8, SamplingParams(20, 1.0), 8, torch.Generator().manual_seed(3))
    assert len({tuple(x.token_ids) for x in sampled}) > 1


@pytest.mark.parametrize("fused", [True, False])
def test_partial_attention_returns_output_and_log_sum_exp(fused):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(shape, generator=gen) for shape in ((3, 2, 4, 8), (3, 2, 5, 8), (3, 2, 5, 8)))
    mask = torch.zeros(3, 1, 1, 5)
    mask[0, ..., :2] = float("-inf")  # left padding of the first row
    out, lse = _attend(q, k, v, 0.35, mask, fused=fused)
    scores = q @ k.transpose(-1, -2) * 0.35 + mask
    torch.testing.assert_close(out, torch.softmax(scores, -1) @ v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, scores.logsumexp(-1), atol=1e-5, rtol=1e-5)
