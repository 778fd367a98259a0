"""Rule-based rewards: batched verifiers over completions. Imports without DeepSpeed, W&B or a GPU."""
from r1lab.rewards.registry import REWARDS, RewardOutput, combine_rewards, get_reward, register_reward

# Importing the reward modules registers them.
from r1lab.rewards import countdown, format, language, math, reward_model  # noqa: E402,F401  isort: skip

__all__ = ["REWARDS", "RewardOutput", "combine_rewards", "get_reward", "register_reward"]
