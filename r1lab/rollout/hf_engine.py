"""The ``hf`` rollout engine: r1lab's own decode loop (`r1lab.rollout.sampler`) on the policy itself.

It samples from the live weights, so there is nothing to push, and under ZeRO-3 it gathers the
full model for the duration of each ``generate``. Multi-turn tool rollouts run in one decode pass
(``generate_with_tools``): a row's tool output is fed to it in place, its KV cache kept. Each call draws from a fresh
``torch.Generator`` seeded with ``seed``: the same seed gives the same samples, on resume too.
"""
from __future__ import annotations

import torch

from r1lab.config.schema import RolloutConfig
from r1lab.rollout.engine import ROLLOUT_ENGINES, Completion, Policy, RolloutEngine, SamplingParams
from r1lab.rollout.sampler import ToolHook, generate


@ROLLOUT_ENGINES.register("hf")
class HFEngine(RolloutEngine):
    name = "hf"
    pushes_weights = False  # it samples from the live module
    returns_logprobs = True
    tools_in_decode = True  # generate_with_tools

    def __init__(self, policy: Policy, tokenizer) -> None:
        self.policy, self.tokenizer = policy, tokenizer

    @classmethod
    def build(cls, cfg: RolloutConfig, policy: Policy, tokenizer, seed: int) -> HFEngine:
        return cls(policy, tokenizer)  # nothing to configure: it decodes on the policy itself

    def generate(
        self, prompt_ids: list[list[int]], params: SamplingParams, seed: int | None, max_batch: int = 0
    ) -> list[Completion]:
        module = self.policy.module
        gen = None
        if seed is not None and params.temperature > 0:
            gen = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
        with self.policy.gathered():  # ZeRO-3: full weights for sampling
            return generate(module, self.tokenizer, prompt_ids, params, max_batch or max(1, len(prompt_ids)), gen)

    def generate_with_tools(
        self, prompt_ids: list[list[int]], params: SamplingParams, seed: int | None, max_batch: int, hook: ToolHook
    ) -> list[Completion]:
        """`generate` with tool calls handled inside the decode loop (`sampler.ToolHook`): a row
        that calls a tool is fed the result and goes on, in the same pass, its cache kept."""
        module = self.policy.module
        gen = None
        if seed is not None and params.temperature > 0:
            gen = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
        with self.policy.gathered():
            return generate(module, self.tokenizer, prompt_ids, params, max_batch or max(1, len(prompt_ids)), gen, tool_hook=hook)
