"""Rollout: sampling completions from the policy (HF backend; a vLLM backend would share `generate`'s interface)."""
