"""Worker of bench/grpo_vs_trl.py: r1lab's GRPO stage through its CLI, in this process.

    python bench/_grpo_bench_r1lab.py <run_dir>/bench_config.json   (started by grpo_vs_trl.py)

Writes ``result_r1lab.json`` next to the config: per-step seconds (total, generate, score,
train, from the stage's ``metrics.jsonl``), completion tokens per step, resident memory after the
imports and the process's peak (``VmHWM``) at the end.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.grpo_vs_trl import (  # noqa: E402
    BENCH_REWARD,
    LOSS_VARIANTS,
    TEMPLATE,
    TRL_ADVANTAGE_EPS,
    BenchConfig,
    proc_status_mib,
    register_bench_reward,
)  # noqa: E402


def cli_args(cfg: BenchConfig, run_dir: Path) -> list[str]:
    """The ``r1lab`` command line: the tiny recipe's GRPO stage alone, on the bench model."""
    ours = LOSS_VARIANTS[cfg.loss]["r1lab"]
    g = "++stages.grpo."  # stages are plain dicts until validation: `++` adds or overrides
    return [
        "recipe=r1_countdown_tiny", "stages.cold_start=null", "model=local", f"model.name_or_path={cfg.model_dir}",
        f"model.template={TEMPLATE}", "model.dtype=float32", f"run_dir={run_dir}", f"seed={cfg.seed}",
        f"engine.num_threads={cfg.threads}", "tracking.wandb.mode=disabled", "tracking.progress_bar=false",
        "task.question_style=short", *[f"task.{k}={v}" for k, v in cfg.task.items()],
        # the post-stage evaluation is not benchmarked: one problem, one token
        "eval.initial=false", "eval.num_problems=1", "eval.samples=1", "eval.max_new_tokens=1", "eval.batch_size=1",
        f"{g}steps={cfg.steps}", f"{g}seed={cfg.seed}", f"{g}prompts_per_step={cfg.prompts_per_step}",
        f"{g}samples_per_prompt={cfg.samples}", f"{g}max_new_tokens={cfg.max_new_tokens}",
        f"{g}micro_batch_per_device={cfg.micro}", f"{g}updates_per_batch=1", f"{g}lr={cfg.lr}", f"{g}schedule=constant",
        f"{g}warmup_ratio=0.0", f"{g}weight_decay=0.0", f"{g}max_grad_norm=1.0", f"{g}temperature=1.0", f"{g}top_p=1.0",
        "~stages.grpo.rewards.countdown", f"{g}rewards.{BENCH_REWARD}=1.0",
        f"{g}format_gate=false", f"{g}overlong=none", f"{g}entropy_coef=0.0", f"{g}save_every=0",
        f"{g}loss.reduction={ours['reduction']}", f"{g}advantage.scale={ours['scale']}",
        f"{g}advantage.eps={TRL_ADVANTAGE_EPS}", f"{g}kl.beta={cfg.beta}", f"{g}kl.estimator=k3", f"{g}kl.in_reward=false",
    ]


def main() -> None:
    cfg_path = Path(sys.argv[1])
    cfg = BenchConfig(**json.loads(cfg_path.read_text()))
    import torch  # noqa: F401  (imports that both sides pay, before the baseline is read)
    import deepspeed  # noqa: F401
    import transformers  # noqa: F401

    import r1lab.pipeline  # noqa: F401
    from r1lab.cli import main as r1lab_main

    register_bench_reward()
    rss_after_imports = proc_status_mib("VmRSS")
    run_dir = Path(cfg.out_dir) / "run"
    sys.argv = ["r1lab", *cli_args(cfg, run_dir)]
    try:
        r1lab_main()
    except SystemExit as exc:  # hydra exits on errors only
        if exc.code:
            raise
    peak = proc_status_mib("VmHWM")

    metrics_files = sorted(run_dir.glob("stages/*grpo*/metrics.jsonl"))
    if not metrics_files:
        raise FileNotFoundError(f"no GRPO metrics.jsonl under {run_dir}/stages")
    lines = [json.loads(line) for line in metrics_files[0].read_text().splitlines() if line.strip()]
    steps = [m for m in lines if "time_generate" in m]
    # scoring = rewards + (reference) log-probs and advantages, as TRL's side counts it
    score = [m["time_reward"] + m["time_logprobs_advantages"] for m in steps]
    result = {
        "step": [m["time_generate"] + s + m["time_train"] for m, s in zip(steps, score)],
        "generate": [m["time_generate"] for m in steps],
        "score": score,
        "train": [m["time_train"] for m in steps],
        "completion_tokens": [m["response_length"] * cfg.completions_per_step for m in steps],
        "loss": [m["loss"] for m in steps],
        "trained_fraction": [m["trained_fraction"] for m in steps],
        "rss_after_imports_mib": rss_after_imports,
        "peak_rss_mib": peak,
    }
    (cfg_path.parent / "result_r1lab.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
