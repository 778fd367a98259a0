"""Groups of completions: k samples per prompt from a rollout engine, scored by the rewards.

`sample_groups` is the one "sample k per prompt and score" function: GRPO's sampling rounds,
held-out evaluation (during and after training, ``r1lab-eval``), rejection sampling and DPO's
pair sampling all call it. `Rollout.keep_groups` and `Rollout.concat` let DAPO's dynamic
sampling drop groups whose rewards are all equal (no learning signal) and top the batch up with
another round.
"""
from __future__ import annotations

import time

from dataclasses import dataclass, field
from typing import Any

import torch

from r1lab.config.schema import ToolsConfig
from r1lab.models.templates import encode_prompt, full_response
from r1lab.rewards import combine_rewards
from r1lab.rollout.engine import Completion, RolloutEngine, SamplingParams
from r1lab.rollout.tool_calls import ToolCallingEngine, tool_stats_of, with_tools
from r1lab.tools import missing_context


@dataclass
class Rollout:
    group_size: int  # G: consecutive rows share a prompt
    prompts: list[list[int]] = field(default_factory=list)  # [N] prompt token ids
    completions: list[list[int]] = field(default_factory=list)  # [N] completion token ids
    texts: list[str] = field(default_factory=list)  # [N] generated texts (what follows the prompt)
    responses: list[str] = field(default_factory=list)  # [N] response texts, as the rewards saw them
    sampler_logprobs: list[list[float] | None] = field(default_factory=list)  # [N][len(completion)] the engine's log-probs
    truncated: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))  # [N] cut at max_new_tokens
    rewards: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # [N] total reward
    components: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [N], unweighted
    tool_masks: list[list[int] | None] = field(default_factory=list)  # [N][len(completion)] 1 = written by a tool (None: no tools)
    tool_stats: dict[str, torch.Tensor] = field(default_factory=dict)  # tool_calls.TOOL_STATS name -> [N]; {} without tools
    seconds_generate: float = 0.0  # wall time spent sampling
    seconds_reward: float = 0.0  # wall time spent scoring
    policy_versions: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # [N] version that sampled each row (separate placement); empty: the live policy

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def num_groups(self) -> int:
        return len(self) // self.group_size

    def varied_groups(self) -> torch.Tensor:
        """[P] bool: groups whose rewards are not all equal (the ones with a learning signal)."""
        r = self.rewards.view(-1, self.group_size)
        return (r != r[:, :1]).any(dim=1)

    def keep_groups(self, keep: torch.Tensor) -> "Rollout":
        """Only the groups where ``keep`` [P] is True."""
        rows = keep.repeat_interleave(self.group_size).nonzero().squeeze(-1).tolist()
        return Rollout(
            group_size=self.group_size,
            prompts=[self.prompts[i] for i in rows],
            completions=[self.completions[i] for i in rows],
            texts=[self.texts[i] for i in rows],
            responses=[self.responses[i] for i in rows],
            sampler_logprobs=[self.sampler_logprobs[i] for i in rows],
            truncated=self.truncated[rows],
            rewards=self.rewards[rows],
            components={k: v[rows] for k, v in self.components.items()},
            tool_masks=[self.tool_masks[i] for i in rows] if self.tool_masks else [],
            tool_stats={k: v[rows] for k, v in self.tool_stats.items()},
            seconds_generate=self.seconds_generate,
            seconds_reward=self.seconds_reward,
            policy_versions=self.policy_versions[rows] if len(self.policy_versions) else self.policy_versions,
        )

    @staticmethod
    def concat(parts: list["Rollout"]) -> "Rollout":
        first = parts[0]
        return Rollout(
            group_size=first.group_size,
            prompts=[p for r in parts for p in r.prompts],
            completions=[c for r in parts for c in r.completions],
            texts=[t for r in parts for t in r.texts],
            responses=[t for r in parts for t in r.responses],
            sampler_logprobs=[lp for r in parts for lp in r.sampler_logprobs],
            truncated=torch.cat([r.truncated for r in parts]),
            rewards=torch.cat([r.rewards for r in parts]),
            components={k: torch.cat([r.components[k] for r in parts]) for k in first.components},
            tool_masks=[m for r in parts for m in (r.tool_masks or [None] * len(r))],
            tool_stats={k: torch.cat([r.tool_stats[k] for r in parts]) for k in first.tool_stats},
            seconds_generate=sum(r.seconds_generate for r in parts),
            seconds_reward=sum(r.seconds_reward for r in parts),
            policy_versions=torch.cat([r.policy_versions for r in parts]) if all(len(r.policy_versions) == len(r) for r in parts)
            else torch.zeros(0, dtype=torch.long),
        )


@dataclass
class GroupRequest:
    """What a round of groups asks the engine for, before any sampling."""

    group_size: int
    prompts: list[list[int]]  # [N] prompt token ids, each prompt repeated group_size times
    columns: dict[str, list]  # task column -> [N] values (what the rewards and row-aware tools read)
    contexts: list[dict] | None  # [N] each row's columns for the tools that need the problem; None without tools


def group_request(tokenizer, task, template: str, rows: list[dict[str, Any]], group_size: int,
                  tools: ToolsConfig | None = None) -> GroupRequest:
    """The prompts and columns of ``group_size`` samples of each row; tools that need a column
    the task has not are refused here, before any sampling."""
    prompt_ids = [encode_prompt(tokenizer, template, task.question(r)) for r in rows]
    prompts = [p for p in prompt_ids for _ in range(group_size)]
    columns = {c: [r[c] for r in rows for _ in range(group_size)] for c in task.reward_columns}
    contexts = None
    if tools is not None and tools.names and prompts:
        missing = missing_context(tools.names, task.reward_columns)
        if missing:
            raise ValueError(
                f"tools.names: {', '.join(missing)} needs the task's {', '.join(c for cs in missing.values() for c in cs)}, "
                f"which task {task.name!r} has not (it gives {', '.join(task.reward_columns)}); drop it from tools.names"
            )
        contexts = [{c: columns[c][i] for c in columns} for i in range(len(prompts))]
    return GroupRequest(group_size, prompts, columns, contexts)


def generate_groups(engine: RolloutEngine, tokenizer, request: GroupRequest, sampling: SamplingParams, seed: int | None,
                    max_batch: int = 0, tools: ToolsConfig | None = None) -> list[Completion]:
    """``request``'s completions from ``engine`` (multi-turn when ``tools`` names any: tool calls
    run inside the engine's loop, or on the rollout worker for an engine that runs them itself)."""
    if not request.prompts:
        return []
    if engine.runs_tools:
        return engine.generate(request.prompts, sampling, seed, max_batch, tools=tools, contexts=request.contexts)
    engine = with_tools(engine, tokenizer, tools)
    if isinstance(engine, ToolCallingEngine):
        return engine.generate(request.prompts, sampling, seed, max_batch, contexts=request.contexts)
    return engine.generate(request.prompts, sampling, seed, max_batch)


def score_groups(request: GroupRequest, completions: list[Completion], template: str, reward_weights: dict[str, float],
                 format_gate: bool = False, seconds_generate: float = 0.0) -> Rollout:
    """``completions`` of ``request`` scored by the rewards: the `Rollout` GRPO trains on."""
    scoring = time.time()
    texts = [c.text for c in completions]
    responses = [full_response(template, t) for t in texts]
    scored = combine_rewards(reward_weights, responses, request.columns)
    rewards = scored.total * scored.components["format"] if format_gate else scored.total
    return Rollout(
        group_size=request.group_size,
        prompts=request.prompts,
        completions=[c.token_ids for c in completions],
        texts=texts,
        responses=responses,
        sampler_logprobs=[c.logprobs for c in completions],
        truncated=torch.tensor([not c.stopped for c in completions], dtype=torch.bool),
        rewards=rewards,
        components=scored.components,
        tool_masks=[c.tool_mask for c in completions],
        tool_stats=tool_stats_of(completions),
        seconds_generate=seconds_generate,
        seconds_reward=time.time() - scoring,
    )


def sample_groups(
    engine: RolloutEngine,
    tokenizer,
    task,
    template: str,
    rows: list[dict[str, Any]],
    group_size: int,
    sampling: SamplingParams,
    reward_weights: dict[str, float],
    seed: int | None,
    format_gate: bool = False,
    max_batch: int = 0,
    tools: ToolsConfig | None = None,
) -> Rollout:
    """Sample ``group_size`` completions for each row's question from ``engine`` and score them.

    ``reward_weights``: every reward to compute (weight 0: a component for the metrics only);
    ``format_gate``: every reward counts only in a response with R1's strict tag format (the
    ``format`` component must be among ``reward_weights``). ``seed``: the engine's draw.
    ``tools``: the tools completions may call (multi-turn, `r1lab.rollout.tool_calls`); None or
    no names: single-turn.
    """
    request = group_request(tokenizer, task, template, rows, group_size, tools)
    start = time.time()
    completions = generate_groups(engine, tokenizer, request, sampling, seed, max_batch, tools)
    return score_groups(request, completions, template, reward_weights, format_gate, time.time() - start)
