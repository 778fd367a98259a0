"""Rule-based rewards: batched verifiers over completions. Imports without DeepSpeed, W&B or a GPU."""
import importlib
import pkgutil

from r1lab.rewards.registry import (
    REWARDS,
    RewardOutput,
    RewardSet,
    build_reward,
    build_rewards,
    combine_rewards,
    get_reward,
    make_params,
    register_reward,
    takes_params,
)

# Every public module here is imported with the package, so each reward module registers itself
# (no list to keep); `_`-prefixed modules are helpers, imported by the modules that use them.
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_") and _module != "registry":
        importlib.import_module(f"{__name__}.{_module}")
del _module

__all__ = [
    "REWARDS",
    "RewardOutput",
    "RewardSet",
    "build_reward",
    "build_rewards",
    "combine_rewards",
    "get_reward",
    "make_params",
    "register_reward",
    "takes_params",
]
