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
    pad = tokenizer.pad_token_id
    eos = tokenizer.eos_token_id
    n = len(prompt_ids)
    # GRPO, evaluation and rejection sampling repeat each prompt k times: the prompt is run
    # through the model once, and its keys and values are shared by its rows (not k copies).
    index: dict[tuple[int, ...] | int, int] = {}
    distinct: list[list[int]] = []  # the prompts prefilled, in order of first appearance
    row_of_list = []  # row b decodes from distinct[row_of[b]]
    for b, p in enumerate(prompt_ids):
        key = tuple(p) if share_prompts else b
        if key not in index:
            index[key] = len(distinct)
            distinct.append(p)
        row_of_list.append(index[key])
    row_of = torch.tensor(row_of_list, device=device)
    width = max(len(p) for p in distinct)
    input_ids = torch.full((len(distinct), width), pad, dtype=torch.long)
    attn = torch.zeros((len(distinct), width), dtype=torch.long)
    for i, p in enumerate(distinct):
        input_ids[i, width - len(p) :] = torch.tensor(p)
        attn[i, width - len(p) :] = 1
    input_ids, attn = input_ids.to(device), attn.to(device)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    stops = [s.to(device) for s in _stop_sequences(tokenizer, [x for x in params.stop if tool_hook is None or x != tool_hook.stop])]
    hook_stop = _stop_sequences(tokenizer, [tool_hook.stop])[0].to(device) if tool_hook is not None else None
    forced: dict[int, list[int]] = {}  # row -> tokens still to feed it (a tool's output)
    calling = torch.ones(n, dtype=torch.bool, device=device)  # rows that may still call a tool
    from_tool = torch.zeros((n, params.max_new_tokens), dtype=torch.bool, device=device) if tool_hook is not None else None
    # generated tokens of every row: [n, max_new_tokens], filled as rows advance
    out = torch.full((n, params.max_new_tokens), pad, dtype=torch.long, device=device)
    with_logprobs = params.temperature > 0
    out_logp = torch.zeros((n, params.max_new_tokens), dtype=torch.float32, device=device) if with_logprobs else None
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    stopped = torch.zeros(n, dtype=torch.bool, device=device)
    live = torch.arange(n, device=device)  # original row index of each row still in the batch

    result = model(
        input_ids=input_ids, attention_mask=attn, position_ids=positions, use_cache=True, logits_to_keep=1,
        **{CACHE_KWARG: growing_cache()},
    )
    cache = getattr(result, CACHE_KWARG)
    logits = result.logits[:, -1, :]
    shared, decode_kwargs = None, {}
    if len(distinct) < n and supports_shared_prefix(model):
        # the prompts' keys and values stay one copy per prompt; the cache holds generated tokens
        shared = SharedPrefix.from_prefill(cache, attn, row_of)
        cache, decode_kwargs = growing_cache(), {"shared_prefix": shared}
    elif len(distinct) < n:
        cache.batch_select_indices(row_of)
    logits, attn, positions = logits[row_of], attn[row_of], positions[row_of]
    next_pos = positions[:, -1:] + 1
    active = torch.ones(n, dtype=torch.bool, device=device)  # batch rows still generating
    with decoding_with(model, ATTENTION) if shared is not None else nullcontext():
        for t in range(params.max_new_tokens):
            if with_logprobs:
                tokens, logp = _sample_next(logits, params.temperature, params.top_p, generator, with_logprobs=True)
            else:
                tokens = _sample_next(logits, params.temperature, params.top_p, generator)
            rows = live[active]
            feeding = None
            if forced:  # rows fed a tool's output take its next token instead of their sample
                feeding = torch.tensor([int(r) in forced for r in rows.tolist()], dtype=torch.bool, device=device)
                picked = tokens[active]
                for j in feeding.nonzero().squeeze(-1).tolist():
                    row = int(rows[j])
                    picked[j] = forced[row].pop(0)
                    if not forced[row]:
                        del forced[row]
                tokens = tokens.clone()
                tokens[active] = picked
                from_tool[rows[feeding], t] = True
                if with_logprobs:
                    logp = logp.clone()
                    logp[active.nonzero().squeeze(-1)[feeding]] = 0.0
            out[rows, t] = tokens[active]
            if with_logprobs:
                out_logp[rows, t] = logp[active]
            lengths[rows] = t + 1
            done = tokens[active] == eos if eos is not None else torch.zeros_like(rows, dtype=torch.bool)
            for s in stops:
                k = s.numel()
                if t + 1 >= k:
                    done |= (out[rows, t + 1 - k : t + 1] == s).all(-1)
            if feeding is not None:
                done &= ~feeding  # a tool's output never ends a row
            if hook_stop is not None and t + 1 >= hook_stop.numel():
                k = hook_stop.numel()
                calls = (out[rows, t + 1 - k : t + 1] == hook_stop).all(-1) & calling[rows] & ~done
                if feeding is not None:
                    calls &= ~feeding
                for row in rows[calls].tolist():
                    feed, again = tool_hook(row, out[row, : t + 1].tolist())
                    calling[row] = again
                    if feed:
                        forced[row] = list(feed)
            stopped[rows[done]] = True
            active[active.clone()] = ~done
            if t + 1 == params.max_new_tokens or not active.any():
                break
            # Drop finished rows from the batch and the cache once they are a quarter of it
            # (compacting copies the cache, so not at every step).
            if (~active).sum() * 4 >= active.numel():
                keep = active.nonzero().squeeze(-1)
                live, tokens, next_pos, attn = live[keep], tokens[keep], next_pos[keep], attn[keep]
                cache.batch_select_indices(keep)
                if shared is not None:
                    shared.select(keep)
                active = torch.ones(keep.numel(), dtype=torch.bool, device=device)
            attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=-1)
            result = model(
                input_ids=tokens[:, None], attention_mask=attn, position_ids=next_pos, use_cache=True,
                **{CACHE_KWARG: cache}, **decode_kwargs,
            )
            cache = getattr(result, CACHE_KWARG)
            logits = result.logits[:, -1, :]
            next_pos = next_pos + 1

    out, lengths, stopped = out.cpu(), lengths.cpu(), stopped.cpu()
    from_tool = from_tool.cpu() if from_tool is not None else None
    out_logp = out_logp.cpu() if with_logprobs else None
    ids = [out[i, : lengths[i]].tolist() for i in range(n)]
    logps = [out_logp[i, : lengths[i]].tolist() for i in range(n)] if with_logprobs else [None] * n
    tool_masks = [from_tool[i, : lengths[i]].int().tolist() for i in range(n)] if from_tool is not None else [None] * n
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [Completion(token_ids=ids[i], text=texts[i], stopped=bool(stopped[i]), logprobs=logps[i], tool_mask=tool_masks[i])
            for i in range(n)]


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
