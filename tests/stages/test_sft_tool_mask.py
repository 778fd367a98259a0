"""SFT on tool traces: the tool's output (``<result>...</result>``) carries no loss, everything
else of the response does; data without tool output has a loss on every response token."""
import json
import random
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.tasks import build_task
from r1lab.tasks.countdown_traces import make_sft_dataset, make_trace
from r1lab.models.templates import encode_prompt
from r1lab.models.tiny import char_tokenizer
from r1lab.rewards.spans import result_spans
from r1lab.stages.registry import typed_stage
from r1lab.stages.sft import collate, encode_response, load_examples, run_sft, tool_output_mask

from .helpers import make_ctx

RESULT = re.compile(r"<result>.*?</result>")


def char_flags(text: str) -> list[int]:
    """1 per character of ``text``, 0 on the characters of a ``<result>...</result>``."""
    flags = [1] * len(text)
    for m in RESULT.finditer(text):
        flags[m.start() : m.end()] = [0] * (m.end() - m.start())
    return flags


def test_collate_by_hand():
    """Right padding, the loss mask, truncation at ``max_length`` and packing, on a batch small
    enough to write out; a third element is the response's own loss mask (tool output 0)."""
    t = torch.tensor
    batch = [([1, 2], [3, 4, 5]), ([6], [7, 8])]
    got = collate(batch, pad_id=0, max_length=4, packing=False)
    assert torch.equal(got["input_ids"], t([[1, 2, 3, 4], [6, 7, 8, 0]]))
    assert torch.equal(got["attention_mask"], t([[1, 1, 1, 1], [1, 1, 1, 0]]))
    assert torch.equal(got["loss_mask"], t([[0, 0, 1, 1], [0, 1, 1, 0]]))
    assert torch.equal(got["position_ids"], t([[0, 1, 2, 3], [0, 1, 2, 0]]))
    batch = [([1], [2, 3]), ([4], [5], [0]), ([6, 7], [8, 9, 10], [1, 0, 1])]
    got = collate(batch, pad_id=0, max_length=6, packing=True)  # 3 + 2 tokens share a row, 5 do not fit beside them
    assert torch.equal(got["input_ids"], t([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]))
    assert torch.equal(got["attention_mask"], t([[1] * 5, [1] * 5]))
    assert torch.equal(got["loss_mask"], t([[0, 1, 1, 0, 0], [0, 0, 1, 0, 1]]))
    assert torch.equal(got["position_ids"], t([[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]]))


def traces_ctx(tools: bool, **cfg):
    task = build_task(CountdownTaskConfig(question_style="short", num_train=30, num_test=5, num_test_hard=0))
    stage = typed_stage("sft", {"kind": "sft", "data": "traces", "trace_tools": tools, **cfg})
    return SimpleNamespace(cfg=stage, stage=SimpleNamespace(name="sft"), task=task,
                           run=SimpleNamespace(model=SimpleNamespace(template="r1_zero_short")))


def test_result_spans():
    text = "<tool>2*3</tool><result>6</result> no\n<tool>2+3</tool><result>5</result> yes <result>open"
    assert [text[s:e] for s, e in result_spans(text)] == ["<result>6</result>", "<result>5</result>"]
    assert result_spans("3+5=8 yes") == [] and result_spans("<result>never closed") == []


def test_char_tokenizer_mask_is_exactly_the_result_characters():
    tok = char_tokenizer()
    for seed in range(30):
        trace = make_trace([3, 5, 7, 2][: 3 + seed % 2], [22, 24][seed % 2], random.Random(seed), tools=True)
        ids, mask = encode_response(tok, trace)
        assert ids == tok(trace, add_special_tokens=False).input_ids  # one token per character, as before
        assert len(ids) == len(trace) and mask == char_flags(trace) == tool_output_mask(tok, trace)
        assert 0 in mask and "".join(c for c, m in zip(trace, mask) if not m).count("<result>") == trace.count("<tool>")
    plain = make_trace([3, 5, 7], 22, random.Random(0))
    assert encode_response(tok, plain) == (tok(plain, add_special_tokens=False).input_ids, None)
    assert tool_output_mask(tok, plain) == [1] * len(plain)


def test_trace_examples_and_batches():
    tok = char_tokenizer()
    eos = [tok.eos_token_id]
    # plain traces: exactly the examples and batches of before (2-tuples, old formula)
    ctx = traces_ctx(False)
    examples = load_examples(ctx, tok)
    ds = make_sft_dataset(ctx.task.split("train"), seed=ctx.cfg.seed)
    expected = [(encode_prompt(tok, "r1_zero_short", ctx.task.question(row)), tok(row["response"], add_special_tokens=False).input_ids + eos)
                for row in ds]
    assert examples == expected and all(len(e) == 2 for e in examples)
    batch = collate(examples[:6], tok.pad_token_id, 1024, packing=False)
    assert batch["loss_mask"].sum().item() == sum(len(r) for _, r in examples[:6])  # every response token, no prompt token

    # tool traces: the loss mask is 0 on the prompt and on the result characters, 1 elsewhere (eos too)
    ctx = traces_ctx(True)
    examples = load_examples(ctx, tok)
    ds = make_sft_dataset(ctx.task.split("train"), seed=ctx.cfg.seed, tools=True)
    assert all(len(e) == 3 for e in examples)
    for (p, r, m), row in zip(examples, ds):
        assert r == tok(row["response"], add_special_tokens=False).input_ids + eos
        assert m == char_flags(row["response"]) + [1]
    for packing in (False, True):
        batch = collate(examples[:6], tok.pad_token_id, 1024, packing)
        flat = [b for p, r, m in examples[:6] for b in [0] * len(p) + m]
        rows = batch["loss_mask"][batch["attention_mask"].bool()].tolist()
        assert rows == flat  # row-major order of the real tokens is the examples' order, packed or not
        assert torch.equal(batch["input_ids"][batch["attention_mask"].bool()], torch.tensor([t for p, r, _ in examples[:6] for t in p + r]))
    # truncation keeps ids and mask aligned
    p, r, m = examples[0]
    cut = collate([examples[0]], tok.pad_token_id, len(p) + 40, False)
    assert cut["loss_mask"][0].tolist() == ([0] * len(p) + m)[: len(p) + 40]
    # the masked characters are exactly the tool output
    text = tok.decode([t for t, b in zip(r, m) if b == 0])
    assert re.fullmatch(r"(<result>(true|false: -?\d+(/\d+)?)</result>)+", text), text


def test_data_file_with_tool_output(tmp_path):
    tok = char_tokenizer()
    response = "<tool>3*5</tool><result>15</result> no\n<tool>3*5+7</tool><result>22</result> yes\n</think>\n<answer>3*5+7</answer>"
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps({"prompt": "Using 3 5 7 make 22.", "response": response}) + "\n"
                    + json.dumps({"prompt": "Using 3 5 make 8.", "response": "3+5=8 yes\n</think>\n<answer>3+5</answer>"}) + "\n")
    ctx = SimpleNamespace(cfg=typed_stage("sft", {"kind": "sft", "data": str(path)}), stage=SimpleNamespace(name="sft"),
                          run=SimpleNamespace(model=SimpleNamespace(template="r1_zero_short")))
    (p0, r0, m0), (p1, r1) = load_examples(ctx, tok)
    assert m0 == char_flags(response) + [1] and len(r1) == len("3+5=8 yes\n</think>\n<answer>3+5</answer>") + 1
    batch = collate([(p0, r0, m0), (p1, r1)], tok.pad_token_id, 512, False)
    assert batch["loss_mask"][0, : len(p0) + len(r0)].tolist() == [0] * len(p0) + m0
    assert batch["loss_mask"][1, : len(p1) + len(r1)].tolist() == [0] * len(p1) + [1] * len(r1)


def test_sft_stage_trains_on_tool_traces(tmp_path, micro_model):
    sft = {"kind": "sft", "data": "traces", "trace_tools": True, "steps": 2, "batch_size": 4,
           "micro_batch_per_device": 2, "max_length": 256, "packing": True}
    run_sft(make_ctx(tmp_path / "sft", micro_model, {"sft": sft}))
    assert (tmp_path / "sft" / "checkpoint").exists()


SMOLLM2 = Path.home() / ".cache" / "r1lab" / "models" / "smollm2-135m-instruct"


def test_bpe_tokenizer_pieces_as_the_rollout_builds_them():
    folders = sorted(p for p in SMOLLM2.glob("*") if (p / "tokenizer.json").exists()) if SMOLLM2.exists() else []
    if not folders:
        pytest.skip("the converted SmolLM2 tokenizer is not cached")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folders[-1]))
    for seed in range(20):
        trace = make_trace([3, 5, 7, 9][: 3 + seed % 2], [22, 30][seed % 2], random.Random(seed), tools=True)
        ids, mask = encode_response(tok, trace)
        assert tok.decode(ids) == trace and len(mask) == len(ids)
        # the masked tokens are, span by span, the ids the rollout appends: tokenizer("<result>OUT</result>")
        masked_runs, run = [], []
        for t, b in zip(ids, mask):
            if b == 0:
                run.append(t)
            elif run:
                masked_runs.append(run)
                run = []
        assert masked_runs == [tok(m.group(), add_special_tokens=False).input_ids for m in RESULT.finditer(trace)]
        # and the sampled pieces decode to the text between the spans
        sampled = tok.decode([t for t, b in zip(ids, mask) if b])
        assert sampled == RESULT.sub("", trace)


def test_dpo_pairs_carry_no_loss_on_tool_output():
    from datasets import Dataset

    from r1lab.models.tiny import char_tokenizer
    from r1lab.stages.dpo import collate_pairs, tokenize_pairs

    tok = char_tokenizer()
    chosen = "<tool>2+3</tool><result>5</result> yes\n</think>\n<answer>2+3</answer>"
    rejected = "2*3=6 yes\n</think>\n<answer>2*3</answer>"
    pairs = Dataset.from_list([{"prompt": "Use 2 3 to make 5", "chosen": chosen, "rejected": rejected}])
    examples = tokenize_pairs(pairs, tok, "r1_zero_short")
    batch = collate_pairs(examples, tok.pad_token_id, 256)
    start = len(examples[0][0])
    lo, hi = chosen.index("<result>"), chosen.index("</result>") + len("</result>")
    expected = [0 if lo <= i < hi else 1 for i in range(len(chosen))] + [1]  # the eos is trained
    assert batch["loss_mask"][0, start : start + len(expected)].tolist() == expected
    assert int(batch["loss_mask"][1].sum()) == len(rejected) + 1  # no tool output: every token
