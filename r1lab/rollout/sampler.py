"""Batched sampling with a KV cache, left padding, temperature/top-p and stop strings.

A hand-written decode loop rather than ``model.generate``: rows that have stopped are dropped
from the batch and the cache (``Cache.batch_select_indices``) once they are a quarter of it, so a
batch costs about what its live rows cost; the cache grows in place (``kv_cache.GrowingLayer``);
and the loop owns its random generator, so a resumed run samples the same tokens.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Protocol

import torch

from r1lab.rollout.kv_cache import CACHE_KWARG, growing_cache
from r1lab.rollout.shared_prefix import ATTENTION, SharedPrefix, decoding_with, supports_shared_prefix


@dataclass
class SamplingParams:
    max_new_tokens: int = 256  # longest completion, in tokens
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=lambda: ["</answer>"])  # generation ends after any of these


class ToolHook(Protocol):
    """What `generate_batch` calls when a row writes ``stop`` (r1lab.rollout.tool_calls)."""

    stop: str  # the stop string that hands a row to the hook ("</tool>")

    def __call__(self, row: int, ids: list[int]) -> tuple[list[int], bool]:
        """Row ``row`` of the batch has just written ``stop``; ``ids``: its tokens so far (tool
        tokens included). Returns the tokens to feed it next and whether it may call again."""
        ...


@dataclass
class Completion:
    token_ids: list[int]  # generated tokens, stop string included, no padding
    text: str
    stopped: bool  # ended on a stop string or EOS (False: cut at max_new_tokens)
    logprobs: list[float] | None = None  # [len(token_ids)] the sampler's log-prob of each token, temperature applied
    tool_mask: list[int] | None = None  # [len(token_ids)] 1 where a tool wrote the token (multi-turn: r1lab.rollout.tool_calls)
    tool_stats: dict[str, int] | None = None  # multi-turn: calls, errors, timeouts, tool_tokens, sampled_tokens


def _stop_sequences(tokenizer, stops: list[str]) -> list[torch.Tensor]:
    return [torch.tensor(tokenizer(s, add_special_tokens=False).input_ids) for s in stops]


def _sample_next(
    logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None, with_logprobs: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """logits [b, V] -> token ids [b] (and, ``with_logprobs``, their log-probs [b] under the
    distribution sampled from: temperature applied, renormalised over the top-p nucleus).

    Inverse-CDF sampling: one uniform draw per row against the cumulative distribution.
    ``torch.multinomial`` draws a random number per vocabulary entry and was more than half of
    the decode time with a 32k vocabulary on a CPU.
    """
    if temperature <= 0:
        picked = logits.argmax(-1)
        return (picked, torch.zeros(picked.shape, dtype=torch.float32, device=picked.device)) if with_logprobs else picked
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    order = None
    if top_p < 1.0:
        probs, order = probs.sort(dim=-1, descending=True)
        probs = probs * (probs.cumsum(-1) - probs < top_p)  # always keeps the most likely token
    cdf = probs.double().cumsum(-1)  # float64: a 150k-entry float32 sum loses the tail
    u = torch.rand(cdf.shape[0], 1, generator=gen, device=cdf.device, dtype=torch.float64) * cdf[:, -1:]
    picked = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1)
    # never land on a zero-probability entry (u equal to a cdf step)
    picked = torch.where(probs.gather(-1, picked) > 0, picked, probs.argmax(-1, keepdim=True))
    logp = (probs.gather(-1, picked).double() / cdf[:, -1:]).log().float().squeeze(-1) if with_logprobs else None
    if order is not None:
        picked = order.gather(-1, picked)
    return (picked.squeeze(-1), logp) if with_logprobs else picked.squeeze(-1)


@torch.no_grad()
def generate_batch(
    model: torch.nn.Module,
    tokenizer,
    prompt_ids: list[list[int]],
    params: SamplingParams,
    generator: torch.Generator | None = None,
    share_prompts: bool = True,
    tool_hook: ToolHook | None = None,
) -> list[Completion]:
    """Sample one completion per prompt. Prompts are left-padded into one batch.

    ``share_prompts``: rows with the same prompt share its prefill and cache (False: every row
    is prefilled and cached on its own, as a plain batched ``generate`` does; for comparisons).
    ``tool_hook``: multi-turn rollouts in one pass (`ToolHook`): a row that writes the hook's
    stop string is handed to it, and the tokens it returns are fed to the model as that row's
    next inputs, one a step, as if sampled (log-prob 0, ``Completion.tool_mask`` 1), while the
    other rows go on sampling; the row then samples again. Without a hook, nothing changes.
    """
    device = next(model.parameters()).device
    distinct, row_of = distinct_prompts(prompt_ids, share_prompts)
    prefill = _prefill(model, distinct, torch.tensor(row_of, device=device), tokenizer.pad_token_id, device)
    rows = _Rows.empty(len(prompt_ids), params.max_new_tokens, tokenizer.pad_token_id, device,
                       with_logprobs=params.temperature > 0, with_tools=tool_hook is not None)
    stops = [s.to(device) for s in _stop_sequences(tokenizer, [x for x in params.stop if tool_hook is None or x != tool_hook.stop])]
    hook_stop = _stop_sequences(tokenizer, [tool_hook.stop])[0].to(device) if tool_hook is not None else None
    with decoding_with(model, ATTENTION) if prefill.shared is not None else nullcontext():
        _decode(model, prefill, rows, params, generator, tokenizer.eos_token_id, stops, tool_hook, hook_stop)
    return rows.completions(tokenizer)


def distinct_prompts(prompt_ids: list[list[int]], share_prompts: bool = True) -> tuple[list[list[int]], list[int]]:
    """The prompts to prefill, in order of first appearance, and for each row the index of its own.

    GRPO, evaluation and rejection sampling repeat each prompt k times: the prompt is run
    through the model once, and its keys and values are shared by its rows (not k copies).
    ``share_prompts=False``: every row is its own prompt."""
    index: dict[tuple[int, ...] | int, int] = {}
    distinct: list[list[int]] = []
    row_of = []  # row b decodes from distinct[row_of[b]]
    for b, p in enumerate(prompt_ids):
        key = tuple(p) if share_prompts else b
        if key not in index:
            index[key] = len(distinct)
            distinct.append(p)
        row_of.append(index[key])
    return distinct, row_of


def left_padded(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded token rows ``[b, T]`` and their attention mask (1 on the prompt's tokens)."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        input_ids[i, width - len(p) :] = torch.tensor(p)
        attn[i, width - len(p) :] = 1
    return input_ids, attn


@dataclass
class _Prefill:
    """The batch after the prompts' forward pass, one row per completion to sample."""

    logits: torch.Tensor  # [n, V] next-token logits
    attn: torch.Tensor  # [n, T] attention mask, grown by one column a decode step
    next_pos: torch.Tensor  # [n, 1] position of the next token
    cache: object  # the KV cache (generated tokens only when ``shared`` holds the prompts)
    shared: SharedPrefix | None  # the distinct prompts' keys and values, one copy each


def _prefill(model, distinct: list[list[int]], row_of: torch.Tensor, pad_id: int, device) -> _Prefill:
    """Run the ``distinct`` prompts through ``model`` once and lay the result out per row
    (``row_of``: ``[n]``, row b samples after ``distinct[row_of[b]]``)."""
    input_ids, attn = left_padded(distinct, pad_id)
    input_ids, attn = input_ids.to(device), attn.to(device)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    result = model(
        input_ids=input_ids, attention_mask=attn, position_ids=positions, use_cache=True, logits_to_keep=1,
        **{CACHE_KWARG: growing_cache()},
    )
    cache = getattr(result, CACHE_KWARG)
    logits = result.logits[:, -1, :]
    shared = None
    if len(distinct) < len(row_of) and supports_shared_prefix(model):
        # the prompts' keys and values stay one copy per prompt; the cache holds generated tokens
        shared = SharedPrefix.from_prefill(cache, attn, row_of)
        cache = growing_cache()
    elif len(distinct) < len(row_of):
        cache.batch_select_indices(row_of)
    logits, attn, positions = logits[row_of], attn[row_of], positions[row_of]
    return _Prefill(logits, attn, positions[:, -1:] + 1, cache, shared)


@dataclass
class _Rows:
    """What decoding has written so far, indexed by the batch's original rows (n of them)."""

    out: torch.Tensor  # [n, max_new_tokens] generated tokens, pad beyond each row's length
    logp: torch.Tensor | None  # [n, max_new_tokens] their log-probs (sampling only, not greedy)
    from_tool: torch.Tensor | None  # [n, max_new_tokens] bool: fed by the tool hook (with a hook only)
    lengths: torch.Tensor  # [n] tokens written
    stopped: torch.Tensor  # [n] bool: ended on a stop string or EOS
    calling: torch.Tensor  # [n] bool: may still call a tool
    forced: dict[int, list[int]] = field(default_factory=dict)  # row -> tokens still to feed it (a tool's output)

    @classmethod
    def empty(cls, n: int, max_new_tokens: int, pad_id: int, device, with_logprobs: bool, with_tools: bool) -> "_Rows":
        return cls(
            out=torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=device),
            logp=torch.zeros((n, max_new_tokens), dtype=torch.float32, device=device) if with_logprobs else None,
            from_tool=torch.zeros((n, max_new_tokens), dtype=torch.bool, device=device) if with_tools else None,
            lengths=torch.zeros(n, dtype=torch.long, device=device),
            stopped=torch.zeros(n, dtype=torch.bool, device=device),
            calling=torch.ones(n, dtype=torch.bool, device=device),
        )

    def completions(self, tokenizer) -> list[Completion]:
        n = len(self.lengths)
        out, lengths, stopped = self.out.cpu(), self.lengths.cpu(), self.stopped.cpu()
        from_tool = self.from_tool.cpu() if self.from_tool is not None else None
        out_logp = self.logp.cpu() if self.logp is not None else None
        ids = [out[i, : lengths[i]].tolist() for i in range(n)]
        logps = [out_logp[i, : lengths[i]].tolist() for i in range(n)] if out_logp is not None else [None] * n
        tool_masks = [from_tool[i, : lengths[i]].int().tolist() for i in range(n)] if from_tool is not None else [None] * n
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [Completion(token_ids=ids[i], text=texts[i], stopped=bool(stopped[i]), logprobs=logps[i], tool_mask=tool_masks[i])
                for i in range(n)]


def _decode(model, prefill: _Prefill, rows: _Rows, params: SamplingParams, generator, eos: int | None,
            stops: list[torch.Tensor], tool_hook: ToolHook | None, hook_stop: torch.Tensor | None) -> None:
    """Sample up to ``params.max_new_tokens`` tokens a row into ``rows``, one decode step a token."""
    logits, attn, next_pos, cache = prefill.logits, prefill.attn, prefill.next_pos, prefill.cache
    decode_kwargs = {"shared_prefix": prefill.shared} if prefill.shared is not None else {}
    n = len(rows.lengths)
    live = torch.arange(n, device=logits.device)  # original row index of each row still in the batch
    active = torch.ones(n, dtype=torch.bool, device=logits.device)  # batch rows still generating
    with_logprobs = rows.logp is not None
    for t in range(params.max_new_tokens):
        if with_logprobs:
            tokens, logp = _sample_next(logits, params.temperature, params.top_p, generator, with_logprobs=True)
        else:
            tokens, logp = _sample_next(logits, params.temperature, params.top_p, generator), None
        batch_rows = live[active]
        feeding = None
        if rows.forced:  # rows fed a tool's output take its next token instead of their sample
            tokens, logp, feeding = _feed_tool_tokens(rows, tokens, logp, active, batch_rows, t)
        done = _write_step(rows, batch_rows, tokens[active], logp[active] if with_logprobs else None, t, eos, stops)
        if feeding is not None:
            done &= ~feeding  # a tool's output never ends a row
        if hook_stop is not None and t + 1 >= hook_stop.numel():
            _call_tools(rows, batch_rows, done, feeding, tool_hook, hook_stop, t)
        rows.stopped[batch_rows[done]] = True
        active[active.clone()] = ~done
        if t + 1 == params.max_new_tokens or not active.any():
            break
        # Drop finished rows from the batch and the cache once they are a quarter of it
        # (compacting copies the cache, so not at every step).
        if (~active).sum() * 4 >= active.numel():
            keep = active.nonzero().squeeze(-1)
            live, tokens, next_pos, attn = live[keep], tokens[keep], next_pos[keep], attn[keep]
            cache.batch_select_indices(keep)
            if prefill.shared is not None:
                prefill.shared.select(keep)
            active = torch.ones(keep.numel(), dtype=torch.bool, device=active.device)
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=-1)
        result = model(
            input_ids=tokens[:, None], attention_mask=attn, position_ids=next_pos, use_cache=True,
            **{CACHE_KWARG: cache}, **decode_kwargs,
        )
        cache = getattr(result, CACHE_KWARG)
        logits = result.logits[:, -1, :]
        next_pos = next_pos + 1


def _feed_tool_tokens(rows: _Rows, tokens: torch.Tensor, logp: torch.Tensor | None, active: torch.Tensor,
                      batch_rows: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Step ``t``: rows with a tool's output still to feed (``rows.forced``) take its next token in
    place of their sample, with log-prob 0. ``tokens``, ``logp``: ``[b]`` over the batch's rows,
    ``batch_rows``: the original index of each active one. Returns them and which active rows fed."""
    feeding = torch.tensor([int(r) in rows.forced for r in batch_rows.tolist()], dtype=torch.bool, device=tokens.device)
    picked = tokens[active]
    for j in feeding.nonzero().squeeze(-1).tolist():
        row = int(batch_rows[j])
        picked[j] = rows.forced[row].pop(0)
        if not rows.forced[row]:
            del rows.forced[row]
    tokens = tokens.clone()
    tokens[active] = picked
    rows.from_tool[batch_rows[feeding], t] = True
    if logp is not None:
        logp = logp.clone()
        logp[active.nonzero().squeeze(-1)[feeding]] = 0.0
    return tokens, logp, feeding


def _write_step(rows: _Rows, batch_rows: torch.Tensor, tokens: torch.Tensor, logp: torch.Tensor | None, t: int,
                eos: int | None, stops: list[torch.Tensor]) -> torch.Tensor:
    """Write step ``t``'s ``tokens`` (and ``logp``), ``[a]`` for the active rows ``batch_rows``;
    returns ``[a]`` bool: the rows that ended on EOS or a stop sequence."""
    rows.out[batch_rows, t] = tokens
    if logp is not None:
        rows.logp[batch_rows, t] = logp
    rows.lengths[batch_rows] = t + 1
    done = tokens == eos if eos is not None else torch.zeros_like(batch_rows, dtype=torch.bool)
    for s in stops:
        k = s.numel()
        if t + 1 >= k:
            done |= (rows.out[batch_rows, t + 1 - k : t + 1] == s).all(-1)
    return done


def _call_tools(rows: _Rows, batch_rows: torch.Tensor, done: torch.Tensor, feeding: torch.Tensor | None,
                tool_hook: ToolHook, hook_stop: torch.Tensor, t: int) -> None:
    """Hand the rows that have just written the hook's stop sequence to ``tool_hook``; queue the
    tokens it returns in ``rows.forced``."""
    k = hook_stop.numel()
    calls = (rows.out[batch_rows, t + 1 - k : t + 1] == hook_stop).all(-1) & rows.calling[batch_rows] & ~done
    if feeding is not None:
        calls &= ~feeding
    for row in batch_rows[calls].tolist():
        feed, again = tool_hook(row, rows.out[row, : t + 1].tolist())
        rows.calling[row] = again
        if feed:
            rows.forced[row] = list(feed)


def generate(
    model: torch.nn.Module,
    tokenizer,
    prompt_ids: list[list[int]],
    params: SamplingParams,
    batch_size: int,
    generator: torch.Generator | None = None,
    share_prompts: bool = True,
    tool_hook: ToolHook | None = None,
) -> list[Completion]:
    """Sample one completion per prompt, ``batch_size`` prompts at a time, in order
    (``tool_hook``: `generate_batch`'s, called with the row's index in ``prompt_ids``)."""
    was_training = model.training
    model.eval()
    out: list[Completion] = []
    for start in range(0, len(prompt_ids), batch_size):
        hook = _Offset(tool_hook, start) if tool_hook is not None else None
        out.extend(generate_batch(model, tokenizer, prompt_ids[start : start + batch_size], params, generator, share_prompts, hook))
    model.train(was_training)
    return out


class _Offset:
    """A `ToolHook` seen by one batch: its row indices start at ``start`` of the whole call."""

    def __init__(self, hook: ToolHook, start: int) -> None:
        self.hook, self.start, self.stop = hook, start, hook.stop

    def __call__(self, row: int, ids: list[int]) -> tuple[list[int], bool]:
        return self.hook(self.start + row, ids)
