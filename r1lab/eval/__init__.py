"""Evaluation: held-out accuracy, pass@k, format rate, response length."""
