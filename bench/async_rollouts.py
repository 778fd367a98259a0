"""Rollouts off the critical path: GRPO colocated vs rollout workers at max_staleness 0 and 1.

Three arms of the same GRPO stage from the same starting model, run one after another (nothing
else should run on the machine):

* ``colocated``: today's loop, the trainer samples itself (``engine.num_threads`` = all cores);
* ``k0``: ``rollout.placement=separate rollout.max_staleness=0``: one worker process, synchronous;
* ``k1``: the same with ``max_staleness=1``: the worker samples round s+1 while the trainer
  updates on round s (one-step-off).

On a 2-core machine the separate arms give the trainer one core and the worker the other
(``engine.num_threads=1 rollout.worker_threads=1``). Per arm, the medians over the measured
steps (the first ``--warmup`` dropped) of: step time (``time_step``), generation (the worker's
or the trainer's ``time_generate``), the update (``time_logprobs_advantages + time_train``), the
trainer's wait for rollouts and the worker's idle share (``async/*``); the aim is
``k1 step <= 1.1 x max(generate, train)``.

    python bench/async_rollouts.py --setup tiny   --root /tmp/async_bench   # the tiny demo's GRPO stage
    python bench/async_rollouts.py --setup smollm --root /tmp/async_bench   # SmolLM2-135M-Instruct, LoRA, arith

``--setup tiny`` first builds the demo's cold start once (``r1lab recipe=r1_countdown_tiny
stages.grpo=null``, ``--cold-steps`` steps) unless ``--model`` names a checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

R1LAB = str(Path(sys.executable).with_name("r1lab"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
       "TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu"}
ARMS = {
    "colocated": ["engine.num_threads=2"],
    "k0": ["engine.num_threads=1", "rollout.placement=separate", "rollout.max_staleness=0", "rollout.worker_threads=1"],
    "k1": ["engine.num_threads=1", "rollout.placement=separate", "rollout.max_staleness=1", "rollout.worker_threads=1"],
}
SETUPS = {
    "tiny": ["recipe=r1_countdown_tiny", "stages.cold_start=null"],
    "smollm": ["recipe=r1_arith_smollm", "stages.grpo.prompts_per_step=4", "stages.grpo.samples_per_prompt=4",
               "stages.grpo.max_new_tokens=96"],
}


def run(args: list[str], log: Path) -> None:
    with open(log, "w") as f:
        out = subprocess.run([R1LAB, *args], env=ENV, stdout=f, stderr=subprocess.STDOUT)
    if out.returncode:
        raise SystemExit(f"r1lab {' '.join(args)} failed; see {log}")


def cold_start(root: Path, steps: int) -> str:
    run_dir = root / "cold_start"
    checkpoint = run_dir / "stages/01-cold_start/checkpoint"
    if not checkpoint.exists():
        root.mkdir(parents=True, exist_ok=True)
        run(["recipe=r1_countdown_tiny", "stages.grpo=null", "eval.initial=false", "eval.num_problems=20", "eval.samples=1",
             f"stages.cold_start.steps={steps}", "engine.num_threads=2", "tracking.progress_bar=false",
             f"run_dir={run_dir}"], root / "cold_start.log")
    return str(checkpoint)


def arm_figures(run_dir: Path, warmup: int) -> dict[str, float]:
    path = next(run_dir.glob("stages/*grpo*/metrics.jsonl"))
    rows = [json.loads(line) for line in path.read_text().splitlines()][warmup:]
    med = lambda key: statistics.median(r.get(key, 0.0) for r in rows)  # noqa: E731
    train = statistics.median(r["time_logprobs_advantages"] + r["time_train"] for r in rows)
    figures = {"steps": len(rows), "step_s": med("time_step"), "generate_s": med("time_generate"), "train_s": train,
               "wait_s": med("async/trainer_wait_s"), "worker_idle": med("async/worker_idle_fraction"),
               "sync_s": med("async/weight_sync_s"), "lag": med("async/version_lag")}
    spread = [r["time_step"] for r in rows]
    figures["step_s_min_max"] = (min(spread), max(spread))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", choices=SETUPS, default="tiny")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--model", help="GRPO's starting checkpoint (tiny: default, a cold start built here)")
    parser.add_argument("--cold-steps", type=int, default=400)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    common = [*SETUPS[args.setup], f"stages.grpo.steps={args.steps}", "eval.initial=false", "eval.num_problems=20",
              "eval.samples=1", "tracking.progress_bar=false", f"seed={args.seed}"]
    if args.setup == "tiny":
        common.append(f"stages.grpo.model={args.model or cold_start(args.root, args.cold_steps)}")
    elif args.model:
        common.append(f"model.name_or_path={args.model}")
    table = {}
    for arm in args.arms.split(","):
        run_dir = args.root / f"{args.setup}_{arm}_s{args.seed}"
        if not any(run_dir.glob("stages/*grpo*/done.json")):
            run([*common, *ARMS[arm], f"run_dir={run_dir}"], args.root / f"{args.setup}_{arm}_s{args.seed}.log")
        table[arm] = arm_figures(run_dir, args.warmup)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    print(f"# {args.setup}, {args.steps} GRPO steps (first {args.warmup} dropped), {os.cpu_count()} x {cpu}")
    print("| arm | step s | generate s | train s | max(gen, train) | trainer wait s | worker idle | weight sync s | lag |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arm, f in table.items():
        print(f"| {arm} | {f['step_s']:.3f} ({f['step_s_min_max'][0]:.2f}-{f['step_s_min_max'][1]:.2f}) | {f['generate_s']:.3f} | "
              f"{f['train_s']:.3f} | {max(f['generate_s'], f['train_s']):.3f} | {f['wait_s']:.3f} | {f['worker_idle']:.2f} | "
              f"{f['sync_s']:.3f} | {f['lag']:.0f} |")
    if "k1" in table:
        k1 = table["k1"]
        print(f"k1 step / max(generate, train) = {k1['step_s'] / max(k1['generate_s'], k1['train_s']):.2f}")
        for base in ("colocated", "k0"):
            if base in table:
                print(f"{base} step / k1 step = {table[base]['step_s'] / k1['step_s']:.2f}")


if __name__ == "__main__":
    main()
