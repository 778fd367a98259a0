"""Reward registry, the factory of rewards with parameters, and the weighted combination.

A reward is a plain batched function: completions plus dataset columns in, a float32 tensor of
shape ``[N]`` out. Every reward has the same signature::

    fn(completions: list[str], **columns: list) -> torch.Tensor  # [N] float32

Each reward takes the dataset columns it needs by name (``numbers`` and ``target`` for Countdown,
``answer`` for math) and ignores the rest through ``**columns``. Config chooses rewards by name
with weights, e.g. ``rewards: {countdown: 1.0, format: 0.1}``.

A reward with parameters (the reward model's path, ...) registers a *factory* instead, with the
dataclass of its parameters: ``factory(params) -> fn``. Config sets the parameters under the
reward's name (GRPO: ``reward_params: {reward_model: {path: ..., batch_size: 16}}``) and
``build_rewards`` makes the functions; ``REWARDS`` (a :class:`r1lab.registry.Registry`) holds
every reward, the parameterised ones built with their default parameters and registered with
their ``params`` dataclass and ``factory`` (``REWARDS.meta(name)``). A factory must be cheap: load
what is heavy on first call.

Every public module of ``r1lab.rewards`` is imported with the package, so a new reward module
registers itself by being there.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from r1lab.registry import Registry

RewardFn = Callable[..., torch.Tensor]
RewardFactory = Callable[[Any], RewardFn]

# name -> reward (a parameterised one built with its default parameters); the meta of a reward
# with parameters: `params` (its dataclass) and `factory` (params -> reward)
REWARDS: Registry[RewardFn] = Registry("reward")


def register_reward(name: str, params: type | None = None) -> Callable[[Callable], Callable]:
    """Decorator: make a reward available to configs under ``name``.

    Without ``params`` it decorates the reward itself. With ``params`` (a dataclass whose fields
    all have defaults) it decorates the factory ``fn(params) -> reward``."""
    if params is not None and not is_dataclass(params):
        raise TypeError(f"reward {name!r}: params must be a dataclass, got {params!r}")

    def wrap(fn: Callable) -> Callable:
        if params is None:
            REWARDS.register(name, fn)
        else:
            REWARDS.register(name, fn(params()), params=params, factory=fn)
        return fn

    return wrap


def get_reward(name: str) -> RewardFn:
    """The reward registered as ``name`` (``KeyError`` listing the valid ones)."""
    return REWARDS.get(name)


def takes_params(name: str) -> bool:
    """Whether reward ``name`` (registered) was registered with a params dataclass."""
    return "params" in REWARDS.meta(name)


def make_params(name: str, raw: Mapping[str, Any] | Any | None = None) -> Any:
    """The parameters of reward ``name`` from a mapping of field name to value (None: the defaults);
    ``ValueError`` for an unknown reward, one without parameters, an unknown field or a bad value."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; valid rewards: {', '.join(REWARDS.names())}")
    if not takes_params(name):
        with_params = [n for n in REWARDS.names() if takes_params(n)]
        raise ValueError(f"the `{name}` reward takes no parameters; rewards that do: {', '.join(with_params)}")
    cls = REWARDS.meta(name)["params"]
    if isinstance(raw, cls):
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"the `{name}` reward's parameters must be a mapping of name to value, got {raw!r}")
    valid = [f.name for f in fields(cls)]
    unknown = [k for k in raw if k not in valid]
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} of the `{name}` reward; valid: {', '.join(valid)}")
    return cls(**raw)


def build_reward(name: str, params: Mapping[str, Any] | Any | None = None) -> RewardFn:
    """Reward ``name``: a registered function, or its factory's reward with ``params``."""
    if name not in REWARDS or not takes_params(name):
        if params:
            make_params(name, params)  # fails: this reward takes no parameters
        return get_reward(name)
    return REWARDS.meta(name)["factory"](make_params(name, params))


class RewardSet(dict):
    """Weights by reward name (a ``dict[str, float]``), carrying each reward built from its
    parameters: pass it wherever reward weights go (``combine_rewards``, ``sample_groups``)."""

    def __init__(self, weights: Mapping[str, float], fns: Mapping[str, RewardFn]) -> None:
        super().__init__(weights)
        self.fns = dict(fns)


def build_rewards(weights: Mapping[str, float], params: Mapping[str, Any] | None = None) -> RewardSet:
    """The rewards named in ``weights``, each built with ``params[name]`` (its parameters) if given."""
    params = params or {}
    return RewardSet(weights, {name: build_reward(name, params.get(name)) for name in weights})


@dataclass
class RewardOutput:
    total: torch.Tensor  # [N] float32, weighted sum of the components
    components: dict[str, torch.Tensor]  # name -> [N] float32, unweighted


def combine_rewards(
    weights: Mapping[str, float],
    completions: Sequence[str],
    columns: Mapping[str, Sequence],
) -> RewardOutput:
    """Score ``completions`` with every reward named in ``weights`` and sum them, weighted.

    ``weights``: a ``RewardSet`` (``build_rewards``) scores with the rewards it carries; a plain
    mapping with the registered ones (default parameters). ``columns`` holds the dataset columns
    aligned with ``completions`` (one entry per completion).
    """
    completions = list(completions)
    n = len(completions)
    built = weights.fns if isinstance(weights, RewardSet) else {}
    total = torch.zeros(n, dtype=torch.float32)
    components: dict[str, torch.Tensor] = {}
    for name, weight in weights.items():
        fn = built[name] if name in built else get_reward(name)
        values = fn(completions, **columns)
        if values.shape != (n,):
            raise ValueError(f"reward {name!r} returned shape {tuple(values.shape)}, expected ({n},)")
        values = values.to(torch.float32)
        components[name] = values
        total += float(weight) * values
    return RewardOutput(total=total, components=components)
