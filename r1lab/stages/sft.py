"""Supervised fine-tuning: R1's cold start (and, later, the rejection-sampled SFT stage).

Kept from R1: a small set of long, readable reasoning traces in the final response format
(``<think>`` reasoning then ``<answer>``), trained with the loss on the response only.
Data: ``data: traces`` uses the task's solver-written traces (search, dead ends, verification);
``data: previous`` reads the newest dataset an earlier stage wrote (rejection sampling; the
pipeline puts its path here); any other value is a jsonl/parquet file, a ``save_to_disk`` folder,
a dataset folder or a Hugging Face dataset id (``data_split``, ``data_subset``, ``data_columns``:
see ``r1lab.data.files.load_source``) with ``prompt``/``response`` columns (prompt = question, wrapped in the model's template) and/or
``messages`` (non-reasoning chat rows: rendered by ``r1lab.stages.filters.render_messages``, with
the chat template under ``model.template=chat``, else as ``User: ...\nAssistant: ...`` lines).

Loss: token mean over every response token of the optimizer step (all micro-batches, all ranks),
so gradient accumulation and the number of ranks do not change it. Tool output carries no loss:
every ``<result>...</result>`` span of a response (tags included; any data source) is masked,
because at rollout time the framework appends that whole span and the policy never samples it
(``encode_response``: the pieces are tokenised as the rollout does; ``trace_tools`` writes
calculator-call traces). Under ``model.template=direct`` the traces are the answer alone
(``r1lab.tasks.countdown_traces.answer_only_trace``), so a direct arm learns answers, not reasoning.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from r1lab.algorithms.reduce import LossNorm, reduce_loss
from r1lab.config.schema import StageConfig
from r1lab.engine import dist
from r1lab.models.forward import token_logprobs
from r1lab.models.templates import answer_only, encode_prompt
from r1lab.stages.context import StageContext, ceil_div, length_grouped, per_rank, step_indices
from r1lab.rewards.spans import result_spans
from r1lab.stages.filters import render_messages
from r1lab.stages.registry import register_stage


@dataclass
class SFTStageConfig(StageConfig):
    """The schema of an ``sft`` stage (registered with :func:`run_sft` at the bottom)."""

    kind: str = "sft"
    data: str = "traces"  # traces (solver-written cold-start traces) | previous (the newest earlier stage's dataset) | jsonl/json/parquet file, save_to_disk folder, dataset folder or hub id (prompt/response and/or messages)
    data_split: str = "train"  # split of `data` read from a dataset folder, hub id or saved DatasetDict
    data_subset: Optional[str] = None  # dataset config name of `data`; null = the only one
    data_columns: dict[str, str] = field(default_factory=dict)  # SFT column (prompt | response | messages) -> dataset column, renamed on load
    num_examples: int = 0  # 0 = all; else the first N examples
    steps: int = 0  # optimizer steps; 0 = derived from `epochs`
    epochs: float = 1.0
    batch_size: int = 64  # global sequences per optimizer step
    max_length: int = 512  # tokens per sequence (prompt + response); longer ones are truncated
    packing: bool = False  # concatenate examples into max_length rows instead of padding
    trace_behaviours: bool = True  # traces: show search, dead ends and verification
    trace_wrong_answer_rate: float = 0.0  # traces: fraction with a wrong final answer (priming ablation)
    trace_tools: bool = False  # traces: each attempt is a tool call (<tool>EXPR=T</tool><result>false: 32</result> no|yes); results are masked from the loss
    trace_tool: str = "calculator"  # the tool the traces call: calculator (EXPR=TARGET) | countdown (EXPR, checked against the problem)


# (prompt ids, response ids) or, when the response holds tool output, (prompt ids, response ids,
# response loss mask): 0 on the tokens of the <result>...</result> spans, 1 elsewhere
Example = tuple[list[int], list[int]] | tuple[list[int], list[int], list[int]]

def encode_response(tokenizer, response: str) -> tuple[list[int], list[int] | None]:
    """``response``'s token ids (no special tokens) and their loss mask, ``None`` when it holds no
    ``<result>...</result>`` span (then the ids are exactly ``tokenizer(response).input_ids``).

    With spans, the text is tokenised piece by piece, as the rollout builds it
    (``r1lab.rollout.tool_calls``): the text up to a span, the span alone (mask 0: the framework
    appends ``tokenizer("<result>OUTPUT</result>")``, the policy never samples it), the text up
    to the next span, and so on (mask 1). With a character tokenizer that is the same as
    tokenising the whole text; a BPE tokenizer would otherwise merge across the span's edges
    (SmolLM2 writes ``</tool><result>`` with a ``><`` token), giving a token the rollout never
    produces, half sampled and half tool output.
    """
    spans = result_spans(response)
    if not spans:
        return tokenizer(response, add_special_tokens=False).input_ids, None
    ids: list[int] = []
    mask: list[int] = []
    at = 0
    for piece_start, piece_end in [*spans, (len(response), len(response))]:
        for text, bit in ((response[at:piece_start], 1), (response[piece_start:piece_end], 0)):
            if text:
                piece = tokenizer(text, add_special_tokens=False).input_ids
                ids += piece
                mask += [bit] * len(piece)
        at = piece_end
    return ids, mask


def tool_output_mask(tokenizer, response: str) -> list[int]:
    """Per-token loss mask of :func:`encode_response`'s ids: 0 on the tool output
    (``<result>...</result>`` spans, tags included), 1 elsewhere."""
    ids, mask = encode_response(tokenizer, response)
    return [1] * len(ids) if mask is None else mask


def load_examples(ctx: StageContext, tokenizer) -> list[Example]:
    cfg, template = ctx.cfg, ctx.run.model.template
    if cfg.data == "traces":
        from r1lab.tasks.countdown_traces import make_sft_dataset

        problems = ctx.task.split("train")
        if cfg.num_examples:
            problems = problems.select(range(min(cfg.num_examples, len(problems))))
        if cfg.trace_tools and answer_only(template):
            raise ValueError(f"stages.{ctx.stage.name}.trace_tools=true with model.template={template}: a direct answer "
                             "calls no tool; set trace_tools=false or use a reasoning template (r1_zero_short)")
        ds = make_sft_dataset(  # the direct template's traces are the answer alone (derived, not configured)
            problems, seed=cfg.seed, behaviours=cfg.trace_behaviours, wrong_answer_rate=cfg.trace_wrong_answer_rate,
            tools=cfg.trace_tools, tool=cfg.trace_tool, answer_only=answer_only(template),
        )
        prompts = [ctx.task.question(row) for row in ds]
        responses = ds["response"]
        chats = [None] * len(prompts)
    else:
        from r1lab.data.files import columns_fix, load_source, require_columns

        if cfg.data in (None, "previous"):
            raise ValueError(f"stages.{ctx.stage.name}.data=previous: no earlier stage wrote a dataset")
        at = f"stages.{ctx.stage.name}."
        ds = load_source(  # a save_to_disk folder (data=previous), a file, a dataset folder or a hub id
            cfg.data, field=f"{at}data", split=cfg.data_split, subset=cfg.data_subset, columns=cfg.data_columns,
            option_fields={"split": f"{at}data_split", "subset": f"{at}data_subset", "columns": f"{at}data_columns"},
        )
        if cfg.num_examples:
            ds = ds.select(range(min(cfg.num_examples, len(ds))))
        has_chat = "messages" in ds.column_names
        chat_only = has_chat and not {"prompt", "response"} <= set(ds.column_names)  # chat datasets often carry a bare `prompt` too
        require_columns(ds, ["messages"] if chat_only else ["prompt", "response"], source=cfg.data, fix=columns_fix(cfg.data, f"{at}data_columns"))
        prompts = ds["prompt"] if "prompt" in ds.column_names else [None] * len(ds)
        responses = ds["response"] if "response" in ds.column_names else [None] * len(ds)
        chats = ds["messages"] if has_chat else [None] * len(ds)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    out = []
    for prompt, response, chat in zip(prompts, responses, chats):
        if chat:  # a non-reasoning conversation: no reasoning template
            text, response = render_messages(chat, template, tokenizer)
            p = tokenizer(text, add_special_tokens=template != "chat").input_ids
        else:
            p = encode_prompt(tokenizer, template, prompt)
        r, mask = encode_response(tokenizer, response)
        out.append((p, r + eos) if mask is None else (p, r + eos, mask + [1] * len(eos)))
    return out


def collate(batch: list[Example], pad_id: int, max_length: int, packing: bool) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask``/``loss_mask``/``position_ids`` [b, T], T trimmed.

    With ``packing`` the examples are concatenated into rows of ``max_length`` tokens, position ids
    restarting at each example (attention still spans the row: a documented approximation).
    An example's optional third element is its response loss mask (tool output: 0).
    """
    seqs = [(ex[0] + ex[1])[:max_length] for ex in batch]
    masks = [([0] * len(ex[0]) + (ex[2] if len(ex) > 2 else [1] * len(ex[1])))[:max_length] for ex in batch]
    positions = [list(range(len(s))) for s in seqs]
    if packing:
        rows, row_masks, row_pos = [[]], [[]], [[]]
        for s, m, pos in zip(seqs, masks, positions):
            if rows[-1] and len(rows[-1]) + len(s) > max_length:
                rows.append([]), row_masks.append([]), row_pos.append([])
            rows[-1] += s
            row_masks[-1] += m
            row_pos[-1] += pos
        seqs, masks, positions = rows, row_masks, row_pos
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    pos = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, m, p) in enumerate(zip(seqs, masks, positions)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        loss_mask[i, : len(s)] = torch.tensor(m)
        pos[i, : len(s)] = torch.tensor(p)
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss_mask, "position_ids": pos}


def run_sft(ctx: StageContext) -> None:
    cfg = ctx.cfg
    model, tokenizer = ctx.load_policy()
    examples = load_examples(ctx, tokenizer)
    if not examples:
        raise ValueError(f"stages.{ctx.stage.name}: the SFT dataset is empty")
    rank_batch = per_rank(cfg.batch_size, f"stages.{ctx.stage.name}.batch_size")
    total_steps = cfg.steps or ceil_div(int(cfg.epochs * len(examples)), cfg.batch_size)
    engine = ctx.engine(model, total_steps)
    engine.load(ctx.resume_dir)
    tracker = ctx.tracker(total_steps, start_step=engine.step)
    engine.train()
    pad = tokenizer.pad_token_id

    while engine.step < total_steps:
        step_start = time.time()
        idx = step_indices(engine.step, cfg.batch_size, len(examples), cfg.seed)
        mine = [examples[i] for i in idx[dist.rank() * rank_batch : (dist.rank() + 1) * rank_batch]]
        groups = length_grouped([len(ex[0]) + len(ex[1]) for ex in mine], cfg.micro_batch_per_device)
        batches = [collate([mine[i] for i in g], pad, cfg.max_length, cfg.packing) for g in groups]
        local_tokens = sum(int(b["loss_mask"][:, 1:].sum()) for b in batches)
        global_tokens = int(dist.all_reduce_sum(torch.tensor(local_tokens)).item())
        norm = LossNorm(
            num_sequences=cfg.batch_size,
            num_tokens=max(1, global_tokens),
            max_completion_length=cfg.max_length,
            world_size=dist.world_size(),
        )
        nll_sum = 0.0
        for i, b in enumerate(batches):
            b = {k: v.to(engine.device) for k, v in b.items()}
            logp, _ = token_logprobs(
                engine.module, b["input_ids"], b["attention_mask"], b["loss_mask"], position_ids=b["position_ids"]
            )
            mask = b["loss_mask"][:, 1:]
            loss = reduce_loss(-logp, mask, norm, "token_mean")
            nll_sum += float(-(logp.detach() * mask).sum())
            engine.backward(loss, last_micro_batch=i == len(batches) - 1)
        nll = dist.sum_by_name({"nll": nll_sum})["nll"] / max(1, global_tokens)
        elapsed = time.time() - step_start
        tracker.log(
            engine.step,
            {
                "loss": nll,
                "lr": engine.lr(),
                "grad_norm": engine.grad_norm(),
                "nonfinite_steps": engine.nonfinite_steps,
                "tokens_per_s": global_tokens / max(elapsed, 1e-9),
                "step_seconds": elapsed,
            },
        )
        ctx.after_step(engine, tracker, tokenizer, engine.step, total_steps)
    ctx.finish(engine, tracker, tokenizer)


register_stage(SFTStageConfig, run_sft, equal_micro_batches=True)
