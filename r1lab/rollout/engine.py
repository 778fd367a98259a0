"""The sampling seam: every stage that samples (GRPO, evaluation, rejection sampling, DPO pairs)
asks a `RolloutEngine` for completions, and never a model directly.

Two engines are registered in ``ROLLOUT_ENGINES`` under the names ``rollout.backend`` takes:

* ``hf`` (`r1lab.rollout.hf_engine`): r1lab's own decode loop on the training model itself
  (KV cache, shared prompt prefix, finished rows dropped). Nothing to push: it always samples
  from the live weights. The fastest choice on a CPU and for tiny models.
* ``vllm`` (`r1lab.rollout.vllm_engine`): an in-process vLLM engine colocated with each rank
  (TRL's "colocate" mode), prompts passed as token ids; after each optimizer step the trainer's
  weights are pushed into it in place.

An engine is built by `build_rollout_engine` from the run's ``rollout`` config and a `Policy`:
the model the stage trains or evaluates, plus how to reach its full weights (ZeRO-3 gathers).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Protocol

import torch

from r1lab.registry import Registry
from r1lab.config.schema import RolloutConfig
from r1lab.rollout.sampler import Completion, SamplingParams

__all__ = ["Completion", "Policy", "RolloutEngine", "ROLLOUT_ENGINES", "SamplingParams", "as_engine", "build_rollout_engine"]


@dataclass
class Policy:
    """What an engine samples from.

    ``module``: the model (a ``PeftModel`` under LoRA). ``path``: a Hugging Face folder or hub id
    with the same architecture and tokenizer (the vLLM engine starts from it, then receives
    ``module``'s weights). ``gathered``: context in which ``module``'s full weights are present
    (ZeRO-3's gather; a no-op otherwise); ``gather_params``: the same for a few parameters at a
    time (weight pushes gather bucket by bucket). ``version()``: the trainer's optimizer step count, so an
    engine that holds a copy of the weights knows whether it is current.
    """

    module: torch.nn.Module
    path: str
    gathered: Callable[[], ContextManager] = contextlib.nullcontext
    gather_params: Callable[[list[torch.nn.Parameter]], ContextManager] | None = None  # ZeRO-3: gather only these
    version: Callable[[], int] = lambda: 0
    dtype: torch.dtype | None = field(default=None)  # the engine's dtype when rollout.dtype=auto (default: the module's)


class RolloutEngine(Protocol):
    """Generates completions for prompt token ids. Implementations: `HFEngine`, `VLLMEngine`."""

    name: str

    def generate(
        self, prompt_ids: list[list[int]], params: SamplingParams, seed: int | None, max_batch: int = 0
    ) -> list[Completion]:
        """One completion per row of ``prompt_ids``, in order (repeat a prompt to sample it k times).

        ``seed`` makes the draw reproducible (None: greedy only). ``max_batch``: rows decoded
        together by engines that batch by hand (0 = all at once); vLLM schedules its own. Each
        completion carries the sampler's log-prob of every generated token (``logprobs``,
        temperature applied) when ``params.temperature > 0``.
        """
        ...

    def sync_weights(self) -> None:
        """Make the engine sample from the policy's current weights (no-op when it already does)."""
        ...

    def sleep(self) -> None:
        """Free the engine's memory while the trainer updates (CUDA vLLM); a no-op elsewhere."""
        ...

    def wake(self) -> None:
        """Take the memory back before sampling; a no-op where ``sleep`` is one."""
        ...

    def close(self) -> None:
        """Release the engine for good."""
        ...


class RolloutEngineError(RuntimeError):
    """An inference engine could not start or failed; the message names the rank and the fix."""


EngineBuilder = Callable[[RolloutConfig, Policy, object, int], RolloutEngine]
ROLLOUT_ENGINES: Registry[EngineBuilder] = Registry("rollout engine")


def build_rollout_engine(cfg: RolloutConfig, policy: Policy, tokenizer, seed: int, placement: str = "colocated") -> RolloutEngine:
    """The engine ``cfg.backend`` names, sampling from ``policy``; ``seed``: the run's seed.
    ``placement="separate"``: that engine on rollout workers in their own processes
    (`r1lab.rollout.remote.RemoteEngine`), which the policy's weights are pushed to."""
    import r1lab.rollout.hf_engine  # noqa: F401  (registers "hf")
    import r1lab.rollout.vllm_engine  # noqa: F401  (registers "vllm"; imports vLLM only when built)

    if placement == "separate":
        from r1lab.engine import dist
        from r1lab.rollout.remote import RemoteEngine

        ROLLOUT_ENGINES.get(cfg.backend)  # an unknown backend fails here, naming the valid ones
        return RemoteEngine(cfg, policy, tokenizer, seed, dist.rank(), dist.world_size())
    return ROLLOUT_ENGINES.get(cfg.backend)(cfg, policy, tokenizer, seed)


def as_engine(sampler, tokenizer) -> RolloutEngine:
    """``sampler`` itself if it is an engine; a model is wrapped in the ``hf`` engine."""
    if isinstance(sampler, torch.nn.Module):
        from r1lab.rollout.hf_engine import HFEngine

        return HFEngine(Policy(module=sampler, path=getattr(sampler, "name_or_path", "")), tokenizer)
    return sampler
