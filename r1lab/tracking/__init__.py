"""Metrics: metrics.jsonl always, W&B (offline by default) and the console, behind one interface."""
