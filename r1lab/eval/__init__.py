"""Evaluation: pass@k, avg@k, maj@k with bootstrap intervals, difficulty breakdowns, reasoning
behaviours, test-time scaling, run reports and sweep comparisons.

Console scripts: ``r1lab-eval`` (``r1lab.eval.cli``), ``r1lab-report`` (``r1lab.eval.report``),
``r1lab-compare`` (``r1lab.eval.compare``). Importing this package loads nothing heavy.
"""
