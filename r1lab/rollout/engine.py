"""The sampling seam: every stage that samples (GRPO, evaluation, rejection sampling, DPO pairs)
asks a `RolloutEngine` for completions, and never a model directly.

Every engine subclasses `RolloutEngine` (verl's ``BaseRollout``): ``generate`` is its one
required method; ``sync_weights``, ``sleep``, ``wake`` and ``close`` are no-ops unless it needs
them; and it *declares* what callers may rely on as class attributes (``pushes_weights``,
``returns_logprobs``, ``tools_in_decode``, ``runs_tools``) instead of being probed for methods.

``ROLLOUT_ENGINES`` maps each ``rollout.backend`` name to its engine class, registered with
``@ROLLOUT_ENGINES.register("name")`` on the class in its own module. Every module
``r1lab/rollout/<name>_engine.py`` is imported before the first lookup (`discover_engines`), and
a package outside r1lab adds one through the ``r1lab.plugins`` entry points (`r1lab.registry`).
An engine class builds itself from the run's config (`RolloutEngine.build`) and lists the
modules it needs (``requires``) with the line that tells a user how to install them
(``install_hint``): start-up validation reads both, so importing an engine's module never
imports its heavy dependencies. r1lab's engines:

* ``hf`` (`r1lab.rollout.hf_engine`): r1lab's own decode loop on the training model itself
  (KV cache, shared prompt prefix, finished rows dropped). Nothing to push: it always samples
  from the live weights. The fastest choice on a CPU and for tiny models.
* ``vllm`` (`r1lab.rollout.vllm_engine`): an in-process vLLM engine colocated with each rank
  (TRL's "colocate" mode), prompts passed as token ids; after each optimizer step the trainer's
  weights are pushed into it in place.

``rollout.placement=separate`` runs the named engine on rollout workers in their own processes
instead (`r1lab.rollout.remote.RemoteEngine`, itself a `RolloutEngine` that pushes weights).
An engine is built by `build_rollout_engine` from the run's ``rollout`` config and a `Policy`:
the model the stage trains or evaluates, plus how to reach its full weights (ZeRO-3 gathers).
"""
from __future__ import annotations

import abc
import contextlib
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, ContextManager

import torch

from r1lab.registry import Registry
from r1lab.config.schema import RolloutConfig
from r1lab.rollout.sampler import Completion, SamplingParams, ToolHook

__all__ = [
    "Completion", "Policy", "RolloutEngine", "ROLLOUT_ENGINES", "SamplingParams", "as_engine", "build_rollout_engine",
    "discover_engines",
]


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


class RolloutEngineError(RuntimeError):
    """An inference engine could not start or failed; the message names the rank and the fix."""


class RolloutEngine(abc.ABC):
    """Generates completions for prompt token ids (module docstring). Subclasses: `HFEngine`,
    `VLLMEngine`, `RemoteEngine`; the rollout workers' samplers; `ToolCallingEngine` around any."""

    name: str = ""  # as the logs name it: the backend, e.g. "vllm"

    # --- what the engine needs (read by start-up validation before anything is built) -----------
    requires: ClassVar[tuple[str, ...]] = ()
    """Modules that must be importable to build it (``("vllm",)``); its module imports none of them."""
    install_hint: ClassVar[str] = ""
    """What a user without ``requires`` reads: how to install them, or which backend to use instead."""

    # --- what callers may rely on -------------------------------------------------------------
    pushes_weights: ClassVar[bool] = False
    """It samples from its own copy of the weights, which `sync_weights` brings up to the policy's
    version; then ``seconds_last_push`` (and `push_figures`) report the last push. False: it
    samples from the live module, and ``sync_weights`` is a no-op."""
    returns_logprobs: ClassVar[bool] = True
    """Each sampled completion (``temperature > 0``) carries the sampler's log-prob of every
    generated token (``Completion.logprobs``), temperature applied."""
    tools_in_decode: ClassVar[bool] = False
    """It implements `generate_with_tools`: a tool call's result is fed to its row inside the decode
    loop, in one pass (`r1lab.rollout.tool_calls`); otherwise tool calls go turn by turn."""
    runs_tools: ClassVar[bool] = False
    """Its ``generate`` takes ``tools=`` and ``contexts=`` and runs the calls itself (on the rollout
    workers), so callers must not wrap it in a `ToolCallingEngine`."""

    seconds_last_push: float = 0.0  # the trainer's seconds in the last weight push (pushes_weights engines)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.tools_in_decode and cls.generate_with_tools is RolloutEngine.generate_with_tools:
            raise TypeError(f"{cls.__name__} declares tools_in_decode but does not implement generate_with_tools")

    @classmethod
    def build(cls, cfg: RolloutConfig, policy: Policy, tokenizer, seed: int) -> "RolloutEngine":
        """The engine ``rollout.backend`` names, from the run's ``rollout`` config, sampling from
        ``policy``; ``seed``: the run's seed. The default passes them all to the constructor."""
        return cls(cfg, policy, tokenizer, seed)

    @classmethod
    def require(cls) -> None:
        """Fail in one line, with ``install_hint``, when a module of ``requires`` cannot be imported."""
        for module in cls.requires:
            try:
                importlib.import_module(module)
            except ImportError as err:
                raise RolloutEngineError(f"{cls.install_hint} ({err})") from None

    @abc.abstractmethod
    def generate(
        self, prompt_ids: list[list[int]], params: SamplingParams, seed: int | None, max_batch: int = 0
    ) -> list[Completion]:
        """One completion per row of ``prompt_ids``, in order (repeat a prompt to sample it k times).

        ``seed`` makes the draw reproducible (None: greedy only). ``max_batch``: rows decoded
        together by engines that batch by hand (0 = all at once); vLLM schedules its own. Each
        completion carries the sampler's log-prob of every generated token (``logprobs``,
        temperature applied) when ``params.temperature > 0`` and the engine `returns_logprobs`.
        """

    def generate_with_tools(
        self, prompt_ids: list[list[int]], params: SamplingParams, seed: int | None, max_batch: int, hook: ToolHook
    ) -> list[Completion]:
        """`generate` with tool calls handled inside the decode loop (``hook``: `sampler.ToolHook`);
        only engines that declare ``tools_in_decode``."""
        raise NotImplementedError(f"the {self.name or type(self).__name__} engine runs no tool calls in its decode loop")

    def sync_weights(self) -> None:
        """Make the engine sample from the policy's current weights (a no-op unless `pushes_weights`)."""

    def push_figures(self) -> dict[str, float]:
        """The last weight push as the receiving side saw it (seconds, bytes); {} where it is not measured."""
        return {}

    def sleep(self) -> None:
        """Free the engine's memory while the trainer updates (CUDA vLLM); a no-op elsewhere."""

    def wake(self) -> None:
        """Take the memory back before sampling; a no-op where ``sleep`` is one."""

    def close(self) -> None:
        """Release the engine for good (a no-op for an engine that holds nothing of its own)."""


class _EngineRegistry(Registry["type[RolloutEngine]"]):
    """The rollout engines by ``rollout.backend`` name; r1lab's own engine modules are imported
    (`discover_engines`) before any lookup, as the plugins are."""

    def get(self, name: str) -> type[RolloutEngine]:
        discover_engines()
        return super().get(name)

    def names(self) -> list[str]:
        discover_engines()
        return super().names()

    def items(self) -> list[tuple[str, type[RolloutEngine]]]:
        discover_engines()
        return super().items()

    def __contains__(self, name: object) -> bool:
        discover_engines()
        return super().__contains__(name)

    def __len__(self) -> int:
        discover_engines()
        return super().__len__()


ROLLOUT_ENGINES: Registry[type[RolloutEngine]] = _EngineRegistry("rollout engine")

ENGINE_MODULE_SUFFIX = "_engine"  # r1lab/rollout/<name>_engine.py holds one engine
_discovered = False


def discover_engines() -> None:
    """Import every module ``r1lab/rollout/*_engine.py`` once: each registers its engine class."""
    global _discovered
    if _discovered:
        return
    _discovered = True  # first: an engine module that looks the registry up while it loads must not recurse
    import r1lab.rollout as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.endswith(ENGINE_MODULE_SUFFIX):
            importlib.import_module(f"{package.__name__}.{module.name}")


def build_rollout_engine(cfg: RolloutConfig, policy: Policy, tokenizer, seed: int, placement: str = "colocated") -> RolloutEngine:
    """The engine ``cfg.backend`` names, sampling from ``policy``; ``seed``: the run's seed.
    ``placement="separate"``: that engine on rollout workers in their own processes
    (`r1lab.rollout.remote.RemoteEngine`), which the policy's weights are pushed to."""
    engine_class = ROLLOUT_ENGINES.get(cfg.backend)  # an unknown backend fails here, naming the valid ones
    if placement == "separate":
        from r1lab.engine import dist
        from r1lab.rollout.remote import RemoteEngine

        return RemoteEngine(cfg, policy, tokenizer, seed, dist.rank(), dist.world_size())
    engine_class.require()
    return engine_class.build(cfg, policy, tokenizer, seed)


def as_engine(sampler, tokenizer) -> RolloutEngine:
    """``sampler`` itself if it is an engine; a model is wrapped in the ``hf`` engine."""
    if isinstance(sampler, torch.nn.Module):
        from r1lab.rollout.hf_engine import HFEngine

        return HFEngine(Policy(module=sampler, path=getattr(sampler, "name_or_path", "")), tokenizer)
    return sampler
