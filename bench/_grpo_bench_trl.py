"""Worker of bench/grpo_vs_trl.py: TRL's GRPOTrainer on the same model, prompts, reward and settings.

    python bench/_grpo_bench_trl.py <run_dir>/bench_config.json   (started by grpo_vs_trl.py)

Writes ``result_trl.json`` next to the config, with the same fields as the r1lab worker. A step
is timed from ``on_step_begin`` to ``on_step_end`` (generation happens inside it, in
``training_step``); generation and scoring are timed by wrapping ``_generate`` and
``_generate_and_score_completions``; training is the rest.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.grpo_vs_trl import (  # noqa: E402
    LOSS_VARIANTS,
    TEMPLATE,
    BenchConfig,
    proc_status_mib,
    step_rows,
    trl_bench_reward,
)


def main() -> None:
    cfg_path = Path(sys.argv[1])
    cfg = BenchConfig(**json.loads(cfg_path.read_text()))
    import torch
    import transformers  # noqa: F401
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from r1lab.models.templates import render_prompt

    rss_after_imports = proc_status_mib("VmRSS")
    torch.set_num_threads(cfg.threads)

    rows = step_rows(cfg)  # r1lab's prompts, in r1lab's order; TRL must not shuffle them
    dataset = Dataset.from_dict({
        "prompt": [render_prompt(TEMPLATE, r["question"]) for r in rows],
        "numbers": [r["numbers"] for r in rows],
        "target": [r["target"] for r in rows],
    })
    args = GRPOConfig(
        output_dir=str(Path(cfg.out_dir) / "trl"), use_cpu=True, report_to="none", save_strategy="no",
        logging_steps=1, disable_tqdm=True, seed=cfg.seed, max_steps=cfg.steps,
        per_device_train_batch_size=cfg.micro, gradient_accumulation_steps=cfg.completions_per_step // cfg.micro,
        num_generations=cfg.samples, max_completion_length=cfg.max_new_tokens, num_iterations=1,
        temperature=1.0, top_p=1.0, top_k=0, shuffle_dataset=False,
        learning_rate=cfg.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        optim="adamw_torch", beta=cfg.beta, use_bias_correction_kl=False, epsilon=0.2,
        # TRL defaults to bf16=True (bf16 autocast, also on a CPU); r1lab runs fp32 on a CPU
        bf16=False, model_init_kwargs={"dtype": torch.float32}, **LOSS_VARIANTS[cfg.loss]["trl"],
    )

    timings = {"generate": [], "score": []}

    class TimedGRPOTrainer(GRPOTrainer):
        def _generate(self, prompts):
            t0 = time.perf_counter()
            out = super()._generate(prompts)
            timings["generate"].append(time.perf_counter() - t0)
            return out

        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            timings["score"].append(time.perf_counter() - t0)  # generation included; subtracted below
            return out

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.began, self.steps, self.logs = 0.0, [], []

        def on_step_begin(self, args, state, control, **kwargs):
            self.began = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(time.perf_counter() - self.began)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                self.logs.append(logs)

    timer = StepTimer()
    trainer = TimedGRPOTrainer(
        model=cfg.model_dir, reward_funcs=trl_bench_reward, args=args, train_dataset=dataset, callbacks=[timer]
    )
    trainer.train()
    peak = proc_status_mib("VmHWM")

    generate = timings["generate"]
    score = [s - g for s, g in zip(timings["score"], generate)]
    result = {
        "step": timer.steps,
        "generate": generate,
        "score": score,
        "train": [t - g - s for t, g, s in zip(timer.steps, generate, score)],
        "completion_tokens": [log["completions/mean_length"] * cfg.completions_per_step for log in timer.logs],
        "loss": [log.get("loss", float("nan")) for log in timer.logs],
        "rss_after_imports_mib": rss_after_imports,
        "peak_rss_mib": peak,
    }
    (cfg_path.parent / "result_trl.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
