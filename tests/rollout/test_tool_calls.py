"""Multi-turn tool rollouts (`r1lab.rollout.tool_calls`) on a real tiny model and real engines.

The model is first taught one response that calls the calculator twice, so its rollouts make
tool calls; the response opens with a ``<unk>`` token, which decodes to nothing: a rollout that
rebuilt its ids from text would lose it.
"""
from __future__ import annotations

import shutil

import pytest
import torch

from r1lab.config.schema import TinyModelConfig, ToolsConfig
from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.tasks import build_task
from r1lab.models.templates import encode_prompt
from r1lab.models.forward import token_logprobs
from r1lab.models.load import load_model, load_tokenizer
from r1lab.models.tiny import save_tiny_model
from r1lab.rollout.engine import Policy, RolloutEngine, SamplingParams
from r1lab.rollout.hf_engine import HFEngine
from r1lab.rollout.tool_calls import ToolCallingEngine, tool_call_body, tool_metrics
from r1lab.stages.grpo_steps import build_train_batch, loss_token_counts

from tests.stages.helpers import make_ctx, write_jsonl

CALLS = [("2*3", "6", " no\n"), ("2+3", "5", " yes\n</think>\n<answer>2+3</answer>")]
ROWS = [{"id": str(i), "numbers": [2, 3], "target": 5 + i} for i in range(2)]  # the prompts taught, GRPO's too
TASK = build_task(CountdownTaskConfig(question_style="short", num_train=40, num_test=5, num_test_hard=0))
TEMPLATE = "r1_zero_short"


def prompt_ids(tok) -> list[list[int]]:
    return [encode_prompt(tok, TEMPLATE, TASK.question(r)) for r in ROWS]
# head_dim 32: vLLM's CPU attention has no kernel for 16
MODEL = TinyModelConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128, max_position_embeddings=256)
CALCULATOR = ToolsConfig(names=["calculator"], max_calls=4)


def response_parts(tokenizer) -> list[tuple[list[int], int]]:
    """The taught response as (token ids, written by a tool?) pieces, the <unk> first."""
    parts = [([tokenizer.unk_token_id], 0)]
    for expr, value, after in CALLS:
        parts.append((tokenizer(f"<tool>{expr}</tool>", add_special_tokens=False).input_ids, 0))
        parts.append((tokenizer(f"<result>{value}</result>", add_special_tokens=False).input_ids, 1))
        parts.append((tokenizer(after, add_special_tokens=False).input_ids, 0))
    return parts


def teach(path, conversations: list[tuple[list[int], list[int]]]) -> None:
    """Train the tiny model saved at ``path`` until every response token of each (prompt ids,
    response ids) is near-certain (log-prob above -0.01: greedy picks it on any CPU, whatever its
    rounding), then save it. Rows are right-padded (the attention mask covers the real tokens)."""
    model = load_model(str(path))
    pad = load_tokenizer(str(path)).pad_token_id
    width = max(len(p) + len(r) for p, r in conversations)
    ids = torch.full((len(conversations), width), pad)
    attn, mask = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, (p, r) in enumerate(conversations):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        attn[i, : len(p) + len(r)] = 1
        mask[i, len(p) : len(p) + len(r)] = 1
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(1000):
        logp, _ = token_logprobs(model, ids, attn, mask)
        worst = -float(logp.detach()[mask[:, 1:] == 1].min())  # every token of the response near-certain
        if worst < 0.01:
            break
        loss = -(logp * mask[:, 1:]).sum() / mask[:, 1:].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert worst < 0.01, worst
    model.save_pretrained(path)


@pytest.fixture(scope="module")
def taught(tmp_path_factory) -> str:
    """A tiny model that answers every prompt with the two-call response (tool outputs unmasked
    in this teaching: the model only needs to continue after them)."""
    torch.manual_seed(0)
    path = save_tiny_model(MODEL, tmp_path_factory.mktemp("tools") / "tiny")
    tok = load_tokenizer(str(path))
    response = [t for ids, _ in response_parts(tok) for t in ids] + [tok.eos_token_id]
    teach(path, [(p, response) for p in prompt_ids(tok)])  # the two prompts have the same length: no padding
    return str(path)


# The countdown checker's conversations, per row target: (text, written by the tool?) pieces. Both
# rows open with the call 2*3; the tool's verdict is the one against THAT row's problem (numbers 2 3,
# target 5: "false: 6"; target 6: "true"), and the model is taught what to write after each verdict
# (row 5 tries 2+3 next), so every token of these rollouts is taught and fixed on any CPU.
CHECKER = {
    5: [("<tool>2*3</tool>", 0), ("<result>false: 6</result>", 1), (" no\n<tool>2+3</tool>", 0), ("<result>true</result>", 1),
        (" yes\n</think>\n<answer>2+3</answer>", 0)],
    6: [("<tool>2*3</tool>", 0), ("<result>true</result>", 1), (" yes\n</think>\n<answer>2*3</answer>", 0)],
}


@pytest.fixture(scope="module")
def taught_checker(tmp_path_factory) -> str:
    """A tiny model taught, per row, the whole conversation with the countdown checker (CHECKER)."""
    path = save_tiny_model(MODEL, tmp_path_factory.mktemp("checker") / "tiny")
    tok = load_tokenizer(str(path))
    responses = [tok("".join(t for t, _ in CHECKER[row["target"]]), add_special_tokens=False).input_ids + [tok.eos_token_id]
                 for row in ROWS]
    teach(path, list(zip(prompt_ids(tok), responses)))
    return str(path)


class Recording(RolloutEngine):
    """The real engine, with each turn's prompts and completions kept for the assertions; it
    declares no one-pass path (``tools_in_decode``), so the rollout goes turn by turn through ``generate``."""

    tools_in_decode = False

    def __init__(self, inner) -> None:
        self.inner, self.name, self.turns = inner, inner.name, []

    def generate(self, prompt_ids, params, seed, max_batch=0):
        out = self.inner.generate(prompt_ids, params, seed, max_batch)
        self.turns.append(([list(p) for p in prompt_ids], out))
        return out


def hf_engine(path: str):
    tok, model = load_tokenizer(path), load_model(path)
    return HFEngine(Policy(module=model, path=path), tok), tok, model


def assert_logprobs_are_the_trainers(model, prompt: list[int], c, temperature: float) -> None:
    """The engine's log-probs of the sampled tokens are the trainer's on the whole sequence; the
    tokens a tool wrote carry 0."""
    ids = torch.tensor([prompt + c.token_ids])
    mask = torch.zeros_like(ids)
    mask[0, len(prompt):] = 1
    with torch.no_grad():
        logp, _ = token_logprobs(model, ids, torch.ones_like(ids), mask, temperature=temperature)
    sampled = torch.tensor(c.tool_mask) == 0
    assert torch.allclose(logp[0, len(prompt) - 1:][sampled], torch.tensor(c.logprobs)[sampled], atol=1e-4)
    assert all(lp == 0.0 for lp, m in zip(c.logprobs, c.tool_mask) if m)


def test_tool_call_body_is_the_text_after_the_last_opener():
    assert tool_call_body("try <tool>1+2</tool>", ["</answer>"]) == "1+2"
    assert tool_call_body("<tool>x</tool> <tool>5*3</tool>", []) == "x"  # the first </tool> stopped the turn
    assert tool_call_body("done</answer> <tool>1</tool>", ["</answer>"]) is None  # the answer came first
    assert tool_call_body("no call</answer>", ["</answer>"]) is None
    assert tool_call_body("1+2</tool>", []) == ""  # no opener: an empty call (the tool's error)


def test_tool_outputs_are_masked_and_the_sampled_ids_kept_exactly_across_turns(taught):
    inner, tok, model = hf_engine(taught)
    recording = Recording(inner)
    engine = ToolCallingEngine(recording, tok, CALCULATOR)
    prompts = prompt_ids(tok)
    params = SamplingParams(max_new_tokens=120, temperature=0.5, stop=["</answer>"])
    out = engine.generate(prompts, params, seed=3)
    expected = response_parts(tok)
    for row, (prompt, c) in enumerate(zip(prompts, out)):
        assert c.tool_stats["calls"] == 2 and c.tool_stats["errors"] == 0 and c.stopped
        # each turn continues from the exact ids so far; a completion is what the engine sampled
        # in each turn, each followed by the tool's output as tokens
        assert len(recording.turns) == 3
        so_far = []
        for t, (turn_prompts, turn_out) in enumerate(recording.turns):
            assert turn_prompts[row] == prompt + so_far
            so_far = so_far + turn_out[row].token_ids
            if t < len(CALLS):
                so_far = so_far + tok(f"<result>{CALLS[t][1]}</result>", add_special_tokens=False).input_ids
        assert so_far == c.token_ids
        assert c.tool_mask == [is_tool for ids, is_tool in expected for _ in ids]  # stopped at </answer>
        assert c.token_ids[0] == tok.unk_token_id  # sampled, decodes to nothing: kept anyway
        assert tok(c.text, add_special_tokens=False).input_ids != c.token_ids
        assert c.token_ids == [t for ids, _ in expected for t in ids]
        assert_logprobs_are_the_trainers(model, prompt, c, temperature=0.5)


def test_the_one_pass_rollout_equals_the_turn_by_turn_one(taught):
    """The hf engine feeds tool output inside its decode loop; greedy, that must give exactly
    the completions of the turn-by-turn loop (the path every other engine takes)."""
    inner, tok, model = hf_engine(taught)
    for cfg, budget in ((CALCULATOR, 160), (ToolsConfig(names=["calculator"], max_calls=1), 160), (CALCULATOR, 40)):
        params = SamplingParams(budget, 0.0)
        one_pass = ToolCallingEngine(inner, tok, cfg).generate(prompt_ids(tok), params, None)
        by_turns = ToolCallingEngine(Recording(inner), tok, cfg).generate(prompt_ids(tok), params, None)
        for a, b in zip(one_pass, by_turns):
            assert (a.token_ids, a.tool_mask, a.tool_stats, a.stopped, a.text) == (b.token_ids, b.tool_mask, b.tool_stats, b.stopped, b.text)
    # sampled: the fed tokens carry log-prob 0 and the sampled ones the trainer's
    out = ToolCallingEngine(inner, tok, CALCULATOR).generate(prompt_ids(tok), SamplingParams(120, 0.5), seed=3)
    for prompt, c in zip(prompt_ids(tok), out):
        assert c.tool_stats["calls"] == 2 and c.token_ids == [t for ids, _ in response_parts(tok) for t in ids]
        assert c.tool_mask == [m for ids, m in response_parts(tok) for _ in ids]
        assert_logprobs_are_the_trainers(model, prompt, c, temperature=0.5)


def test_the_train_batch_has_no_loss_on_tool_tokens(taught, tmp_path):
    inner, tok, _ = hf_engine(taught)
    from r1lab.rollout.groups import sample_groups

    rows = [ROWS[0], ROWS[0]]
    rollout = sample_groups(inner, tok, TASK, TEMPLATE, rows, 2, SamplingParams(120, 0.5), {"countdown": 1.0}, 7,
                            tools=CALCULATOR)
    assert all(m is not None and sum(m) > 0 for m in rollout.tool_masks)
    tokens = loss_token_counts(rollout, "none")
    assert tokens.tolist() == [len(c) - sum(m) for c, m in zip(rollout.completions, rollout.tool_masks)]
    assert float(rollout.rewards.mean()) == 1.0  # 2+3 = 5 with the numbers given
    figures = tool_metrics(rollout)
    assert figures["calls_per_completion"] == 2.0 and figures["calling_share"] == 1.0
    assert figures["tool_token_share"] == pytest.approx(sum(map(sum, rollout.tool_masks)) / sum(map(len, rollout.completions)))

    class Cfg:
        micro_batch_per_device, updates_per_batch, logprob_chunk, temperature = 4, 1, 1024, 1.0

    batch = build_train_batch(rollout, list(range(len(rollout))), tokens, Cfg, tok.pad_token_id)
    for mb, b in zip(batch.rows, batch.batches):
        for j, i in enumerate(mb):
            p, c, m = rollout.prompts[i], rollout.completions[i], rollout.tool_masks[i]
            assert b["loss_mask"][j, len(p): len(p) + len(c)].tolist() == [1 - x for x in m]
            assert int(b["loss_mask"][j].sum()) == tokens[i]


def test_a_call_past_max_calls_gets_an_error_and_sampling_goes_on_without_tools(taught):
    inner, tok, _ = hf_engine(taught)
    engine = ToolCallingEngine(inner, tok, ToolsConfig(names=["calculator"], max_calls=1))
    out = engine.generate(prompt_ids(tok)[:1], SamplingParams(160, 0.0), seed=None)[0]
    assert out.tool_stats["calls"] == 2 and out.tool_stats["errors"] == 1
    assert "<result>6</result>" in out.text and "<result>error: at most 1 tool calls" in out.text


def test_the_budget_counts_tool_tokens_and_cuts_the_completion(taught):
    inner, tok, _ = hf_engine(taught)
    engine = ToolCallingEngine(inner, tok, CALCULATOR)
    budget = len(response_parts(tok)[0][0]) + len(response_parts(tok)[1][0]) + 4  # the first call and 4 result tokens
    out = engine.generate(prompt_ids(tok)[:1], SamplingParams(budget, 0.0), seed=None)[0]
    assert len(out.token_ids) == budget and not out.stopped
    assert out.tool_mask[-4:] == [1, 1, 1, 1]


@pytest.fixture(scope="module")
def grpo_runs(taught, tmp_path_factory):
    """A 2-step multi-turn GRPO stage per engine, straight, and resumed from its step-1 checkpoint.

    Sampled at temperature 1.5, so the draws (the restored seeds) matter; an entropy term on every
    sequence gives every step a gradient whatever the rewards (how many of 12 hot samples solve the
    problem depends on the taught weights, which differ with the CPU's rounding: 1 of 12 at the
    first step here, which left one group without a learning signal)."""
    root = tmp_path_factory.mktemp("grpo_tools")
    train = write_jsonl(root / "train.jsonl", [{**ROWS[0], "id": str(i)} for i in range(8)])
    stage = {"kind": "grpo", "steps": 2, "prompts_per_step": 2, "samples_per_prompt": 6, "micro_batch_per_device": 6,
             "max_new_tokens": 120, "temperature": 1.5, "lr": 1e-5, "rewards": {"countdown": 1.0}, "save_every": 1, "keep_checkpoints": 3,
             "entropy_coef": -0.01, "entropy_from_step": 0, "entropy_sample_fraction": 1.0,
             "tools": {"names": ["calculator"], "max_calls": 3}}
    return root, train, stage


def run_grpo_stage(stage_dir, model, train, stage, backend: str) -> list[dict]:
    import json

    from r1lab.stages.grpo import run_grpo

    ctx = make_ctx(stage_dir, model, {"grpo": stage}, train_file=train)
    ctx.run.rollout.backend = backend
    if backend == "vllm":
        ctx.run.rollout.max_model_len, ctx.run.rollout.kv_cache_gb = 256, 0.25
    run_grpo(ctx)
    rows = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss" in r]


@pytest.mark.parametrize("backend", ["hf", pytest.param("vllm", marks=pytest.mark.vllm)])
def test_a_multi_turn_grpo_step_runs_and_resumes_exactly(grpo_runs, taught, backend):
    if backend == "vllm":
        pytest.importorskip("vllm")
    root, train, stage = grpo_runs
    straight = root / f"straight-{backend}"
    first = run_grpo_stage(straight, taught, train, stage, backend)
    assert len(first) == 2 and all(r["tools/calls_per_completion"] > 0 for r in first)
    # the policy moved (every sequence trained) and the draws are random: resuming is not trivial
    assert all(r["grad_norm"] > 0 and r["trained_fraction"] == 1.0 and r["entropy"] > 0.05 for r in first)
    assert all(0 < r["tools/tool_token_share"] < 1 for r in first)
    resumed = root / f"resumed-{backend}"
    shutil.copytree(straight, resumed)
    for later in ("checkpoint", "metrics.jsonl", "done.json", "prompts.json"):
        target = resumed / later
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    steps = sorted(p for p in (resumed / "resume").iterdir() if p.name.startswith("step"))
    for later in steps[1:]:
        shutil.rmtree(later)  # keep only the step-1 checkpoint
    second = run_grpo_stage(resumed, taught, train, stage, backend)
    assert [r["step"] for r in second] == [2]
    for key in ("loss", "reward", "response_length", "tools/calls_per_completion", "tools/tool_token_share", "grad_norm"):
        assert second[0][key] == pytest.approx(first[1][key], rel=1e-6, abs=1e-7), key
    a = load_model(str(straight / "checkpoint")).state_dict()
    b = load_model(str(resumed / "checkpoint")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.vllm
def test_both_engines_give_the_same_multi_turn_completions(taught):
    pytest.importorskip("vllm")
    from r1lab.config.schema import RolloutConfig
    from r1lab.rollout.engine import build_rollout_engine

    hf, tok, model = hf_engine(taught)
    cfg = RolloutConfig(backend="vllm", max_model_len=256, max_num_seqs=32, kv_cache_gb=0.25)
    vllm = build_rollout_engine(cfg, Policy(module=model, path=taught), tok, seed=0)
    try:
        params = SamplingParams(120, 0.0)
        a = ToolCallingEngine(hf, tok, CALCULATOR).generate(prompt_ids(tok), params, None)
        b = ToolCallingEngine(vllm, tok, CALCULATOR).generate(prompt_ids(tok), params, None)
    finally:
        vllm.close()
    for x, y in zip(a, b):
        assert x.tool_stats["calls"] == 2 and x.stopped
        assert (x.token_ids, x.tool_mask, x.tool_stats) == (y.token_ids, y.tool_mask, y.tool_stats)


@pytest.mark.parametrize("one_pass", [True, False])
def test_a_tool_that_needs_the_problem_gets_each_rows_own(taught_checker, one_pass):
    """Both rows open with the call 2*3; the countdown checker judges it against each row's own
    target (5: "false: 6", 6: "true"), on both rollout paths, through the seam (`sample_groups`
    passes each row's task columns). The model was taught what to write after each verdict
    (CHECKER), so the whole rollout is fixed: a row handed another row's problem gets the other
    verdict (and then writes what it was never taught)."""
    from r1lab.rollout.groups import sample_groups

    inner, tok, _ = hf_engine(taught_checker)
    engine = inner if one_pass else Recording(inner)
    r = sample_groups(engine, tok, TASK, TEMPLATE, ROWS, 2, SamplingParams(160, 0.0), {"countdown": 1.0}, seed=None,
                      tools=ToolsConfig(names=["countdown"], max_calls=4))
    first = [text.split("<result>", 1)[1].split("</result>")[0] for text in r.texts]
    assert first == ["false: 6", "false: 6", "true", "true"]
    expected = [CHECKER[row["target"]] for row in ROWS for _ in range(2)]
    assert r.texts == ["".join(t for t, _ in parts) for parts in expected]
    assert r.tool_masks == [[m for t, m in parts for _ in tok(t, add_special_tokens=False).input_ids] for parts in expected]
    assert r.tool_stats["calls"].tolist() == [2.0, 2.0, 1.0, 1.0] and r.tool_stats["errors"].tolist() == [0.0] * 4
    assert r.truncated.tolist() == [False] * 4 and r.rewards.tolist() == [1.0] * 4  # each row's own answer, right
    if not one_pass:  # turn by turn: row 5 called twice (three turns), row 6 once (two)
        assert [len(prompts) for prompts, _ in engine.turns] == [4, 4, 2]


def test_a_tool_the_task_cannot_feed_is_refused_before_sampling(taught):
    from r1lab.tasks import Task
    from r1lab.rollout.groups import sample_groups

    inner, tok, _ = hf_engine(taught)
    math_like = Task(name="math", splits={}, correctness_reward="math", reward_columns=("answer",), question=lambda row: "1+1?")
    with pytest.raises(ValueError, match=r"tools.names: countdown needs the task's numbers, target.*drop it from tools.names"):
        sample_groups(inner, tok, math_like, TEMPLATE, [{"answer": "2"}], 1, SamplingParams(8, 0.0), {}, seed=None,
                      tools=ToolsConfig(names=["countdown"]))
