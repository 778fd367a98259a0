"""Rollout: sampling completions from the policy through one seam, `engine.RolloutEngine` (its
subclasses: ``hf_engine``, ``vllm_engine``, the rollout workers of ``remote``)."""
