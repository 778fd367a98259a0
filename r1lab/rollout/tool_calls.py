"""Multi-turn rollouts: a completion may call tools mid-reasoning (``rollout.tools`` of a stage).

`ToolCallingEngine` wraps any rollout engine (``hf``, ``vllm``) and keeps its seam: it takes
prompt token ids and returns one `Completion` per row. A row that writes ``</tool>`` has its call
(the text after its last ``<tool>`` since its last result) run by `r1lab.tools.dispatch`; the
output is appended as the tokens of ``<result>OUTPUT</result>`` and the row samples on. Two
paths, which give the same completions (tested, greedy):

* **by turns** (any engine, vLLM's): each turn asks the inner engine to continue every live row
  with ``</tool>`` as an extra stop string; rows that stopped there get their result and go on
  in the next turn, the others are done. vLLM's prefix cache makes the re-read prefix cheap.
* **in one pass** (engines that declare ``tools_in_decode``: ``hf``): the decode loop hands a row
  that wrote ``</tool>`` to a hook and feeds it the result's tokens as its next inputs while the
  other rows go on sampling, its KV cache kept (5x faster than by turns for the demo's model).

What the trainer relies on:

* **Token ids are never re-tokenised.** The next turn's prompt is the original prompt ids plus
  the completion's ids so far (sampled ids exactly as the engine returned them, then the tool
  output's ids). The completion's ``token_ids`` are those same ids; only the tool output is
  tokenised, once. So the trained sequence is the sampled one (a conversation re-rendered from
  text can tokenise differently: TRL and verl issues on "token drift").
* **Tool tokens carry no loss.** ``Completion.tool_mask`` marks them (1 = written by a tool);
  `r1lab.stages.grpo_steps` masks them out of the loss and the token counts, and their
  sampler log-prob is 0.
* **The budget is the stage's ``max_new_tokens``**, sampled and tool tokens together (verl's
  response length). Each turn may sample up to the longest remaining budget; a row that went
  past its own is cut there and counts as truncated.
* **At most ``tools.max_calls`` calls** run per completion; a call past that gets an error
  result and the row continues with tool calls off. A failing or hanging tool returns an error
  string (``ToolResult.status``) and is counted; it never stops the run.
* **Tools that need the problem** (``countdown``: its numbers and target) get the row's
  ``contexts[i]`` (`sample_groups` passes the task's reward columns of each row).
* **Seeds:** turn 0 draws with the caller's seed (a row that never calls a tool samples what it
  would without tools); turn t with ``derive_seed(seed, "rollout/tool_turn", t)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from r1lab.config.schema import ToolsConfig
from r1lab.engine.seeds import derive_seed
from r1lab.rewards.spans import RESULT_CLOSE, RESULT_OPEN, TOOL_CLOSE, TOOL_OPEN
from r1lab.rollout.engine import Completion, RolloutEngine, SamplingParams
from r1lab.tools import ToolLimits, dispatch

TOOL_STATS = ("calls", "errors", "timeouts", "tool_tokens", "sampled_tokens")


@dataclass
class _Row:
    """One completion being built over turns."""

    ids: list[int]
    tool_mask: list[int]
    logprobs: list[float] | None
    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    stopped: bool = False
    done: bool = False
    context: dict | None = None  # the row's task columns, for tools that need the problem


def tool_call_body(turn_text: str, stops: list[str]) -> str | None:
    """The call a turn ended on: the text between its last ``<tool>`` and the ``</tool>`` that
    stopped it ("" when there is no opener), or None when an ordinary stop string came first."""
    close = turn_text.find(TOOL_CLOSE)
    if close < 0:
        return None
    other = [i for i in (turn_text.find(s) for s in stops) if i >= 0]
    if other and min(other) < close:
        return None
    head = turn_text[:close]
    opener = head.rfind(TOOL_OPEN)
    return head[opener + len(TOOL_OPEN):] if opener >= 0 else ""


class ToolCallingEngine(RolloutEngine):
    """A rollout engine whose completions may call ``cfg.names`` tools (module docstring); what it
    declares and reports about weights is the inner engine's."""

    def __init__(self, inner: RolloutEngine, tokenizer, cfg: ToolsConfig) -> None:
        self.inner, self.tokenizer, self.cfg = inner, tokenizer, cfg
        self.name = inner.name
        self.pushes_weights, self.returns_logprobs = inner.pushes_weights, inner.returns_logprobs
        self.limits = ToolLimits(timeout_s=cfg.timeout_s, memory_mb=cfg.memory_mb, max_result_chars=cfg.max_result_chars)

    @property
    def seconds_last_push(self) -> float:
        return self.inner.seconds_last_push

    def push_figures(self) -> dict[str, float]:
        return self.inner.push_figures()

    def generate(
        self, prompt_ids: list[list[int]], params: SamplingParams, seed: int | None, max_batch: int = 0,
        contexts: list[dict] | None = None,
    ) -> list[Completion]:
        """The inner engine's `generate`, with tool calls; ``contexts`` ([N] dicts of task columns,
        or None) go to the tools that need the problem."""
        if contexts is not None and len(contexts) != len(prompt_ids):
            raise ValueError(f"{len(contexts)} contexts for {len(prompt_ids)} prompts")
        rows = [_Row([], [], None, context=None if contexts is None else contexts[i]) for i in range(len(prompt_ids))]
        if self.inner.tools_in_decode:
            return self._generate_in_one_pass(rows, prompt_ids, params, seed, max_batch)
        return self._generate_by_turns(rows, prompt_ids, params, seed, max_batch)

    def _call(self, row: _Row, body: str) -> list[int]:
        """Run ``row``'s call ``body`` (or refuse it past ``max_calls``); the result's token ids."""
        row.calls += 1
        if row.calls > self.cfg.max_calls:
            text, status = f"error: at most {self.cfg.max_calls} tool calls per completion", "error"
        else:
            _, result = dispatch(body, self.cfg.names, self.limits, row.context)
            text, status = result.text, result.status
        row.errors += status == "error"
        row.timeouts += status == "timeout"
        return self.tokenizer(f"{RESULT_OPEN}{text}{RESULT_CLOSE}", add_special_tokens=False).input_ids

    def _generate_in_one_pass(self, rows: list[_Row], prompt_ids, params: SamplingParams, seed, max_batch) -> list[Completion]:
        """Engines that take a `ToolHook` (``hf``): one decode pass, each call's result fed to its
        row in place while the other rows go on sampling."""
        close = len(self.tokenizer(TOOL_CLOSE, add_special_tokens=False).input_ids)

        class Hook:
            stop = TOOL_CLOSE

            def __call__(hook, i: int, ids: list[int]) -> tuple[list[int], bool]:
                text = self.tokenizer.decode(ids[:-close], skip_special_tokens=True)
                turn = text[text.rfind(RESULT_CLOSE) + len(RESULT_CLOSE):] if RESULT_CLOSE in text else text
                opener = turn.rfind(TOOL_OPEN)
                result = self._call(rows[i], turn[opener + len(TOOL_OPEN):] if opener >= 0 else "")
                return result, rows[i].calls <= self.cfg.max_calls

        outs = self.inner.generate_with_tools(prompt_ids, params, seed, max_batch, Hook())
        for row, out in zip(rows, outs):
            row.ids, row.tool_mask, row.logprobs, row.stopped = out.token_ids, out.tool_mask, out.logprobs, out.stopped
        return [self._completion(r) for r in rows]

    def _generate_by_turns(self, rows: list[_Row], prompt_ids, params: SamplingParams, seed, max_batch) -> list[Completion]:
        """Any engine: a call to the engine per turn, each row continuing from its exact ids."""
        if params.temperature > 0:
            for row in rows:
                row.logprobs = []
        calling = SamplingParams(params.max_new_tokens, params.temperature, params.top_p, [*params.stop, TOOL_CLOSE])
        turn = 0
        while True:
            live = [i for i, r in enumerate(rows) if not r.done]
            if not live:
                break
            turn_seed = seed if seed is None or turn == 0 else derive_seed(seed, "rollout/tool_turn", turn)
            budget = max(params.max_new_tokens - len(rows[i].ids) for i in live)
            # rows past max_calls sample on without the tool stop, in their own call to the engine
            for with_tools in (True, False):
                group = [i for i in live if (rows[i].calls <= self.cfg.max_calls) == with_tools]
                if not group:
                    continue
                turn_params = calling if with_tools else params
                turn_params = SamplingParams(budget, turn_params.temperature, turn_params.top_p, turn_params.stop)
                outs = self.inner.generate([prompt_ids[i] + rows[i].ids for i in group], turn_params, turn_seed, max_batch)
                for i, out in zip(group, outs):
                    self._advance(rows[i], out, params, with_tools)
            turn += 1
        return [self._completion(r) for r in rows]

    def _advance(self, row: _Row, out: Completion, params: SamplingParams, with_tools: bool) -> None:
        """Append one turn's sampled tokens to ``row``; run its tool call, if it made one."""
        room = params.max_new_tokens - len(row.ids)
        sampled = out.token_ids[:room]
        row.ids += sampled
        row.tool_mask += [0] * len(sampled)
        if row.logprobs is not None:
            row.logprobs += (out.logprobs or [0.0] * len(out.token_ids))[:room]
        body = tool_call_body(out.text, params.stop) if with_tools and out.stopped else None
        if len(out.token_ids) > room or body is None:
            row.done, row.stopped = True, out.stopped and len(out.token_ids) <= room
            return
        output = self._call(row, body)
        room = params.max_new_tokens - len(row.ids)
        row.ids += output[:room]
        row.tool_mask += [1] * len(output[:room])
        if row.logprobs is not None:
            row.logprobs += [0.0] * len(output[:room])
        if len(output) >= room:  # no budget left to answer: truncated
            row.done = True

    def _completion(self, row: _Row) -> Completion:
        tool_tokens = sum(row.tool_mask)
        stats = {"calls": row.calls, "errors": row.errors, "timeouts": row.timeouts,
                 "tool_tokens": tool_tokens, "sampled_tokens": len(row.ids) - tool_tokens}
        text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
        return Completion(row.ids, text, row.stopped, row.logprobs, tool_mask=row.tool_mask, tool_stats=stats)

    def sync_weights(self) -> None:
        self.inner.sync_weights()

    def sleep(self) -> None:
        self.inner.sleep()

    def wake(self) -> None:
        self.inner.wake()

    def close(self) -> None:
        self.inner.close()


def with_tools(engine: RolloutEngine, tokenizer, cfg: ToolsConfig | None) -> RolloutEngine:
    """``engine`` itself when ``cfg`` enables no tool, else wrapped in a `ToolCallingEngine`."""
    if cfg is None or not cfg.names or isinstance(engine, ToolCallingEngine):
        return engine
    return ToolCallingEngine(engine, tokenizer, cfg)


def tool_stats_of(completions: list[Completion]) -> dict[str, torch.Tensor]:
    """Per statistic (``TOOL_STATS``), ``[N]`` float counts; {} when no completion used tools."""
    if not completions or completions[0].tool_stats is None:
        return {}
    return {k: torch.tensor([float(c.tool_stats[k]) for c in completions]) for k in TOOL_STATS}


def tool_figures(sums: dict[str, float], num_completions: float) -> dict[str, float]:
    """Tool use over a batch from summed statistics (``TOOL_STATS`` plus ``calling``: completions
    that call at least once): calls, errors and timeouts per completion, the share of completions
    that call a tool, the share of completion tokens written by tools, sampled tokens per completion."""
    n = max(num_completions, 1.0)
    tokens = max(sums["tool_tokens"] + sums["sampled_tokens"], 1.0)
    return {
        "calls_per_completion": sums["calls"] / n,
        "errors_per_completion": sums["errors"] / n,
        "timeouts_per_completion": sums["timeouts"] / n,
        "calling_share": sums["calling"] / n,
        "tool_token_share": sums["tool_tokens"] / tokens,
        "sampled_tokens": sums["sampled_tokens"] / n,
    }


def tool_sums(tool_stats: dict[str, torch.Tensor]) -> dict[str, float]:
    """Sums of `tool_stats_of`'s ``[N]`` counts, and ``calling`` (rows with a call)."""
    sums = {k: float(v.sum()) for k, v in tool_stats.items()}
    sums["calling"] = float((tool_stats["calls"] > 0).sum())
    return sums


def tool_metrics(rollout) -> dict[str, float]:
    """`tool_figures` of a `Rollout`'s completions; {} when its rollout had no tools."""
    if not rollout.tool_stats:
        return {}
    return tool_figures(tool_sums(rollout.tool_stats), float(len(rollout.tool_stats["calls"])))
