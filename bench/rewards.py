"""Reward-function benchmarks: vectorized verifiers vs per-sample baselines.

    python bench/rewards.py [--n 100000] [--reps 5]

Runs the Countdown benchmark (``bench/rewards_countdown.py``) and, when ``bench/rewards_math.py``
exists, the math one (its ``run(n) -> dict``), then prints a summary. CPU only.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling benchmark modules
sys.path.insert(0, str(HERE.parent))  # r1lab from a checkout without `pip install -e`


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="completions per benchmark")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (medians reported)")
    args = parser.parse_args(argv)

    import rewards_countdown

    results = {"countdown": rewards_countdown.run(n=args.n, reps=args.reps)}
    if (HERE / "rewards_math.py").exists() and importlib.util.find_spec("rewards_math") is not None:
        import rewards_math

        results["math"] = rewards_math.run(args.n)

    print("\nsummary")
    for name, res in results.items():
        print(f"  {name}: {json.dumps(res, default=float)}")
    return results


if __name__ == "__main__":
    main()
