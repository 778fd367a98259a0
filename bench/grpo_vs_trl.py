"""Benchmark: r1lab's GRPO stage vs TRL's ``GRPOTrainer``, same model, prompts, reward and settings.

    python bench/grpo_vs_trl.py --quick                  # smoke run, about 1 minute
    python bench/grpo_vs_trl.py --steps 6 --threads 2    # the full comparison, 5-10 minutes on a quiet 2-core machine

What runs. One tiny random Llama (r1lab's tiny architecture, but a ``--vocab``-wide embedding and
LM head, 32k by default, so that log-prob memory matters) and a WordLevel tokenizer with as many
entries (one per printable character, plus filler tokens that only ever come out of sampling) are
saved to a temporary folder. Each side then trains on it in its own subprocess, one after the
other (order alternating over ``--repeats``):

* r1lab: the real CLI, in-process (``r1lab recipe=r1_countdown_tiny stages.cold_start=null
  model=local model.name_or_path=<dir> ...``), with a throw-away post-stage eval of one token;
* TRL: ``GRPOTrainer`` with the rendered prompts as the ``prompt`` column, in r1lab's order.

Reward: a random model never solves a problem, so the Countdown reward would be 0 everywhere and
r1lab would skip every update (zero advantage, exactly zero gradient) while TRL runs its full
backward. Both sides therefore score with ``bench_coin`` (registered in r1lab's reward registry
by the worker, wrapped as a TRL reward function): 1 or 0 from a CRC32 of the completion text,
about half of each group rewarded, so every step trains every sequence on both sides.

Same work on both sides: the prompts of each step (``step_indices`` of the r1lab stage),
``--prompts-per-step`` x ``--samples`` completions sampled at temperature 1 (no top-k/top-p),
``--max-new-tokens``, one optimizer step per rollout batch (mu = 1), the loss variant
(``--loss``, mapping in ``LOSS_VARIANTS``), ``--beta`` (k3 KL to a frozen reference, TRL's
``use_bias_correction_kl`` off because r1lab has no such term), AdamW at a constant ``--lr``,
gradient clipping at 1.0, one micro-batch per step unless ``--micro-batch`` says otherwise,
the same number of torch threads, fp32 throughout (TRL's configs default to ``bf16=True``,
which autocasts the forward passes to bf16 even on a CPU; it is turned off here). A random
model almost never samples EOS or ``</answer>``, so every completion on both sides is
``--max-new-tokens`` long: the token counts are identical.

What is measured. Wall seconds per optimizer step including generation (r1lab: ``time_generate +
time_reward + time_logprobs_advantages + time_train`` from ``metrics.jsonl``; TRL:
``on_step_begin`` to ``on_step_end``), median over the steps after the first; the split into generation, scoring
(rewards, reference log-probs, advantages) and training; peak resident memory of each process
(``VmHWM``) and its resident memory once the libraries are imported.

Loss on identical rollouts. For each loss variant both implement, one batch (prompt ids,
completion ids of different lengths, advantages, old log-probs from a perturbed copy of the
weights so that the ratio clips, a reference from another copy when beta > 0) goes to TRL's
``GRPOTrainer.compute_loss`` and to r1lab's ``token_logprobs`` + ``grpo_objective`` (the
stage's loss), each in its own layout (TRL: left-padded prompt, right-padded
completion; r1lab: ``collate_rollout``). Losses and parameter gradients must agree to 1e-4
(``tests/bench/test_grpo_loss_agreement.py``).

The last line printed is ``step_time_ratio=<r1lab/TRL> peak_mem_ratio=<r1lab/TRL>
loss_max_abs_diff=<max over variants>``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = "r1_zero_short"
# TRL divides by ``std + 1e-4`` (fixed); r1lab's ``advantage.eps`` is set to the same value.
TRL_ADVANTAGE_EPS = 1e-4

# TRL 1.16 ``loss_type`` (+ ``scale_rewards``) <-> r1lab (``loss.reduction``, ``advantage.scale``).
#   grpo:    mean over each sequence's tokens, then over sequences   <-> seq_mean_token_mean
#   dr_grpo: token sum / (sequences x max_completion_length), no std <-> seq_mean_token_sum_norm
#   dapo:    token sum / tokens of the whole generation batch        <-> token_mean
#   bnpo:    token sum / tokens of the micro-batch (= dapo with one micro-batch per step)
LOSS_VARIANTS: dict[str, dict[str, dict[str, str]]] = {
    "grpo": {"trl": {"loss_type": "grpo", "scale_rewards": "group"},
             "r1lab": {"reduction": "seq_mean_token_mean", "scale": "group"}},
    "dr_grpo": {"trl": {"loss_type": "dr_grpo", "scale_rewards": "none"},
                "r1lab": {"reduction": "seq_mean_token_sum_norm", "scale": "none"}},
    "dapo": {"trl": {"loss_type": "dapo", "scale_rewards": "group"},
             "r1lab": {"reduction": "token_mean", "scale": "group"}},
    "bnpo": {"trl": {"loss_type": "bnpo", "scale_rewards": "group"},
             "r1lab": {"reduction": "token_mean", "scale": "group"}},
}


@dataclass
class BenchConfig:
    """Settings shared by both sides; one JSON file hands them to the worker processes."""

    model_dir: str
    out_dir: str
    steps: int = 6
    prompts_per_step: int = 8
    samples: int = 8  # completions per prompt (TRL num_generations)
    max_new_tokens: int = 128
    micro_batch: int = 0  # completions per forward/backward; 0 = the whole step in one
    loss: str = "grpo"  # key of LOSS_VARIANTS
    beta: float = 0.0
    lr: float = 1e-4
    threads: int = 2
    seed: int = 0
    task: dict = field(default_factory=dict)  # r1lab CountdownTaskConfig fields

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.samples

    @property
    def micro(self) -> int:
        return self.micro_batch or self.completions_per_step


# ------------------------------------------------------------------------------------------------
# Shared inputs: model, tokenizer, prompts, reward
# ------------------------------------------------------------------------------------------------


def wide_char_tokenizer(vocab_size: int):
    """r1lab's character tokenizer padded with filler tokens to ``vocab_size`` entries.

    Text still encodes one character per token (ids < 100); the fillers are only produced by
    sampling and decode to ``<|fN|>``, so every id the model can emit decodes to something.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from r1lab.models.tiny import CHARACTERS, SPECIAL_TOKENS

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS.values())}
    for ch in CHARACTERS:
        vocab.setdefault(ch, len(vocab))
    if vocab_size < len(vocab):
        raise ValueError(f"--vocab must be >= {len(vocab)} (the characters), got {vocab_size}")
    for i in range(vocab_size - len(vocab)):
        vocab[f"<|f{i}|>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    fast.padding_side = "left"
    return fast


def save_bench_model(path: str | Path, vocab_size: int, max_positions: int = 512) -> Path:
    """r1lab's tiny Llama with a ``vocab_size``-wide embedding/LM head, saved with its tokenizer."""
    from r1lab.config.schema import TinyModelConfig
    from r1lab.models.tiny import build_tiny_model

    path = Path(path)
    tokenizer = wide_char_tokenizer(vocab_size)
    cfg = TinyModelConfig(max_position_embeddings=max_positions)
    model = build_tiny_model(cfg, vocab_size=len(tokenizer), tokenizer=tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def step_rows(cfg: BenchConfig) -> list[dict]:
    """The training rows r1lab's GRPO stage draws, step after step, in its order."""
    from r1lab.tasks.countdown import CountdownTaskConfig
    from r1lab.tasks import build_task
    from r1lab.stages.context import step_indices

    task = build_task(CountdownTaskConfig(question_style="short", **cfg.task))
    train = task.split("train")
    rows = []
    for step in range(cfg.steps):
        for i in step_indices(step, cfg.prompts_per_step, len(train), cfg.seed).tolist():
            row = train[i]
            rows.append({"question": task.question(row), "numbers": row["numbers"], "target": row["target"]})
    return rows


# A random model (almost) never answers a Countdown problem: every reward would be 0, every group
# would have zero spread, and r1lab skips such a batch exactly (zero advantage = zero gradient)
# while TRL still runs its forward and backward. The bench therefore scores with a deterministic
# coin per completion text: about half the completions get 1, nearly every group has a spread,
# and both sides train on every sequence of every step.
BENCH_REWARD = "bench_coin"


def bench_coin(completions: list[str], **_) -> "torch.Tensor":  # noqa: F821
    """1.0 or 0.0 from the CRC32 of each completion's text: the same text gets the same reward."""
    import zlib

    import torch

    return torch.tensor([float(zlib.crc32(c.encode()) & 1) for c in completions], dtype=torch.float32)


def register_bench_reward() -> None:
    """Make ``bench_coin`` available to r1lab's configs (once per process)."""
    from r1lab.rewards.registry import REWARDS, register_reward

    if BENCH_REWARD not in REWARDS:
        register_reward(BENCH_REWARD)(bench_coin)


def trl_bench_reward(completions: list[str], **_) -> list[float]:
    """The bench reward as a TRL reward function, on the text r1lab scores.

    TRL passes the completion text only; r1lab scores the response with the ``<think>`` the
    ``r1_zero_short`` prompt opened (``full_response``), so the same text is scored here.
    """
    from r1lab.models.templates import full_response

    return bench_coin([full_response(TEMPLATE, c) for c in completions]).tolist()


# ------------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------------


def proc_status_mib(key: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


# ------------------------------------------------------------------------------------------------
# Loss on identical rollouts
# ------------------------------------------------------------------------------------------------


def _random_rollout(tokenizer, vocab_size: int, num_prompts: int, samples: int, max_new_tokens: int, seed: int):
    """Prompt ids (countdown questions), completion ids of varied lengths, rewards [P*G]."""
    import torch

    from r1lab.tasks.countdown import make_splits, question_text
    from r1lab.models.templates import encode_prompt

    gen = torch.Generator().manual_seed(seed)
    train = make_splits(num_train=num_prompts, num_test=1, num_test_hard=1, seed=seed)["train"]
    prompts = [encode_prompt(tokenizer, TEMPLATE, question_text(r["numbers"], r["target"], "short")) for r in train]
    prompt_ids, completion_ids = [], []
    for p in prompts:
        for _ in range(samples):
            length = int(torch.randint(1, max_new_tokens + 1, (1,), generator=gen))
            prompt_ids.append(p)
            # ids >= 4: no special tokens inside a completion (pad/eos never occur mid-completion)
            completion_ids.append(torch.randint(4, vocab_size, (length,), generator=gen).tolist())
    completion_ids[0] = completion_ids[0][:1]  # the shortest and the longest possible completions
    completion_ids[-1] = torch.randint(4, vocab_size, (max_new_tokens,), generator=gen).tolist()
    rewards = torch.randint(0, 2, (len(prompt_ids),), generator=gen).float()
    rewards[:samples] = 1.0  # one group with no spread: its advantages must be exactly 0 on both sides
    return prompt_ids, completion_ids, rewards


def _perturbed_logprobs(model, batch: dict, scale: float, seed: int):
    """r1lab-layout log-probs [B, T-1] of a copy of ``model`` with Gaussian noise on its weights."""
    import copy

    import torch

    from r1lab.models.forward import token_logprobs

    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
        return token_logprobs(other, **batch)[0]


def _to_trl_layout(values, prompt_ids: list[list[int]], completion_ids: list[list[int]]):
    """[B, T-1] aligned with r1lab's ``input_ids[:, 1:]`` -> [B, C] aligned with TRL's completion."""
    import torch

    width = max(len(c) for c in completion_ids)
    out = torch.zeros(len(prompt_ids), width)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        out[i, : len(c)] = values[i, len(p) - 1 : len(p) - 1 + len(c)]  # token p+j is predicted at p+j-1
    return out


def _trl_inputs(prompt_ids, completion_ids, pad_id: int) -> dict:
    """The tensors ``GRPOTrainer._compute_loss`` reads, laid out as TRL 1.16 builds them."""
    import torch

    n, pw, cw = len(prompt_ids), max(map(len, prompt_ids)), max(map(len, completion_ids))
    out = {
        "prompt_ids": torch.full((n, pw), pad_id, dtype=torch.long),
        "prompt_mask": torch.zeros((n, pw), dtype=torch.long),
        "completion_ids": torch.full((n, cw), pad_id, dtype=torch.long),
        "completion_mask": torch.zeros((n, cw), dtype=torch.long),
    }
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        out["prompt_ids"][i, pw - len(p) :] = torch.tensor(p)  # left padding
        out["prompt_mask"][i, pw - len(p) :] = 1
        out["completion_ids"][i, : len(c)] = torch.tensor(c)  # right padding
        out["completion_mask"][i, : len(c)] = 1
    return out


def _grads(model) -> dict:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def loss_agreement(
    model_dir: str | Path,
    variants: tuple[str, ...] = tuple(LOSS_VARIANTS),
    beta: float = 0.04,
    num_prompts: int = 2,
    samples: int = 4,
    max_new_tokens: int = 24,
    seed: int = 0,
) -> list[dict]:
    """TRL's and r1lab's loss (and gradient) on one identical batch, for each loss variant.

    Two cases per variant: on-policy with beta = 0 (ratio exactly 1, as in a mu = 1 run) and
    off-policy with ``beta`` (old log-probs and the reference from two perturbed copies of the
    weights, so that the clip is active on some tokens). Returns one dict per case with
    ``loss_trl``, ``loss_r1lab``, ``loss_abs_diff``, ``grad_max_abs_diff`` and the fraction of
    tokens whose ratio is clipped.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from r1lab.algorithms.advantages import AdvantageConfig, compute_advantages
    from r1lab.algorithms.grpo_objective import grpo_objective
    from r1lab.algorithms.kl import KLConfig
    from r1lab.algorithms.policy_loss import PolicyLossConfig
    from r1lab.algorithms.reduce import LossNorm
    from r1lab.models.forward import token_logprobs
    from r1lab.stages.grpo_steps import collate_rollout

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad = tokenizer.pad_token_id
    prompt_ids, completion_ids, rewards = _random_rollout(tokenizer, len(tokenizer), num_prompts, samples, max_new_tokens, seed)
    batch = collate_rollout(prompt_ids, completion_ids, pad)  # r1lab layout, right padded
    mask = batch["loss_mask"][:, 1:]
    trl_inputs = _trl_inputs(prompt_ids, completion_ids, pad)
    dataset = Dataset.from_dict({"prompt": ["x"] * len(prompt_ids)})  # never sampled from here

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            trl_kw, ours = LOSS_VARIANTS[variant]["trl"], LOSS_VARIANTS[variant]["r1lab"]
            adv = compute_advantages(rewards.view(-1, samples), AdvantageConfig(scale=ours["scale"], eps=TRL_ADVANTAGE_EPS)).view(-1)
            for case_beta, off_policy in ((0.0, False), (beta, True)):
                args = GRPOConfig(
                    output_dir=tmp, use_cpu=True, report_to="none", per_device_train_batch_size=len(prompt_ids),
                    num_generations=samples, max_completion_length=max_new_tokens, beta=case_beta,
                    use_bias_correction_kl=False, bf16=False, model_init_kwargs={"dtype": torch.float32}, **trl_kw,
                )
                trainer = GRPOTrainer(model=str(model_dir), reward_funcs=trl_bench_reward, args=args, train_dataset=dataset)
                model = trainer.model.train()
                # set by Trainer's training loop, read by _compute_loss: one micro-batch per step here
                trainer.current_gradient_accumulation_steps = 1
                inputs = dict(trl_inputs, advantages=adv.clone(), old_per_token_logps=None)
                inputs["num_items_in_batch"] = inputs["completion_mask"].sum()  # dapo's normaliser
                old = ref = None
                if off_policy:
                    old = _perturbed_logprobs(model, batch, scale=0.05, seed=seed + 1)
                    inputs["old_per_token_logps"] = _to_trl_layout(old, prompt_ids, completion_ids)
                if case_beta:
                    ref = _perturbed_logprobs(model, batch, scale=0.05, seed=seed + 2)
                    inputs["ref_per_token_logps"] = _to_trl_layout(ref, prompt_ids, completion_ids)

                model.zero_grad()
                loss_trl = trainer.compute_loss(model, inputs)
                loss_trl.backward()
                grads_trl = _grads(model)

                model.zero_grad()
                logp, _ = token_logprobs(model, **batch)
                norm = LossNorm(num_sequences=len(prompt_ids), num_tokens=int(mask.sum()), max_completion_length=max_new_tokens)
                loss_ours, figures = grpo_objective(  # the GRPO stage's objective, as policy_update calls it
                    logp, logp.detach() if old is None else old, adv, mask, norm, PolicyLossConfig(), ours["reduction"],
                    ref_logp=ref if case_beta else None, kl=KLConfig(beta=case_beta),
                )
                loss_ours.backward()
                grads_ours = _grads(model)
                model.zero_grad()

                loss_trl, loss_ours = float(loss_trl.detach()), float(loss_ours.detach())
                grad_diff = max(float((grads_trl[k] - grads_ours[k]).abs().max()) for k in grads_trl)
                clipped = (figures["clip_low"] + figures["clip_high"]) / figures["tokens"]
                results.append({
                    "variant": variant, "beta": case_beta, "off_policy": off_policy,
                    "loss_trl": loss_trl, "loss_r1lab": loss_ours, "loss_abs_diff": abs(loss_trl - loss_ours),
                    "grad_max_abs_diff": grad_diff,
                    "grad_max_abs": max(float(g.abs().max()) for g in grads_trl.values()),
                    "clipped_fraction": clipped,
                    "same_grad_keys": set(grads_trl) == set(grads_ours),
                })
                del trainer, model
    return results


# ------------------------------------------------------------------------------------------------
# The benchmark
# ------------------------------------------------------------------------------------------------


def run_worker(side: str, cfg_path: Path, threads: int) -> dict:
    """Run one side in its own process; return the JSON it writes."""
    script = REPO / "bench" / f"_grpo_bench_{side}.py"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled", DS_ACCELERATOR="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    began = time.time()
    proc = subprocess.run([sys.executable, str(script), str(cfg_path)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise RuntimeError(f"{side} worker failed with exit code {proc.returncode}")
    result = json.loads((Path(cfg_path).parent / f"result_{side}.json").read_text())
    result["process_seconds"] = time.time() - began
    return result


def median_after_warmup(values: list[float]) -> float:
    return statistics.median(values[1:] if len(values) > 1 else values)


def summarise(runs: list[dict]) -> dict:
    """Medians over steps after the first (pooled over repeats) and the largest peak RSS."""
    keys = ("step", "generate", "score", "train")
    out = {k: statistics.median(v for r in runs for v in (r[k][1:] if len(r[k]) > 1 else r[k])) for k in keys}
    out["peak_rss_mib"] = statistics.median(r["peak_rss_mib"] for r in runs)
    out["rss_after_imports_mib"] = statistics.median(r["rss_after_imports_mib"] for r in runs)
    out["completion_tokens"] = statistics.mean(v for r in runs for v in r["completion_tokens"])
    out["process_seconds"] = statistics.median(r["process_seconds"] for r in runs)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per run (the first is a warm-up)")
    ap.add_argument("--prompts-per-step", type=int, default=8)
    ap.add_argument("--samples", type=int, default=8, help="completions per prompt (TRL num_generations)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--micro-batch", type=int, default=0, help="completions per forward/backward; 0 = whole step")
    ap.add_argument("--loss", choices=sorted(LOSS_VARIANTS), default="grpo")
    ap.add_argument("--beta", type=float, default=0.0, help="KL coefficient (k3, reference = starting model)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each side")
    ap.add_argument("--repeats", type=int, default=1, help="runs per side, interleaved")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-agreement", action="store_true", help="skip the loss-on-identical-rollouts check")
    ap.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    ap.add_argument("--json", type=Path, help="also write the raw per-step results and the agreement cases here")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.prompts_per_step, args.samples, args.max_new_tokens = 3, 2, 4, 16
        args.threads = min(args.threads, 1)

    with tempfile.TemporaryDirectory(prefix="grpo_vs_trl_") as tmp:
        tmp = Path(tmp)
        n = args.prompts_per_step * args.samples
        if args.micro_batch and n % args.micro_batch:
            ap.error(f"--micro-batch {args.micro_batch} must divide prompts x samples = {n}")
        print(f"[bench] building the tiny model (vocab {args.vocab}) in {tmp}", flush=True)
        save_bench_model(tmp / "model", args.vocab, max_positions=max(512, args.max_new_tokens + 128))
        # a train split just large enough (building splits costs seconds; both sides use the same one)
        task = {"num_train": max(64, args.steps * args.prompts_per_step)}
        runs: dict[str, list[dict]] = {"r1lab": [], "trl": []}
        for rep in range(args.repeats):
            order = ("r1lab", "trl") if rep % 2 == 0 else ("trl", "r1lab")
            for side in order:
                run_dir = tmp / f"{side}-{rep}"
                run_dir.mkdir()
                cfg = BenchConfig(
                    model_dir=str(tmp / "model"), out_dir=str(run_dir), steps=args.steps,
                    prompts_per_step=args.prompts_per_step, samples=args.samples, max_new_tokens=args.max_new_tokens,
                    micro_batch=args.micro_batch, loss=args.loss, beta=args.beta, lr=args.lr, threads=args.threads,
                    seed=args.seed, task=task,
                )
                cfg_path = run_dir / "bench_config.json"
                cfg_path.write_text(json.dumps(asdict(cfg)))
                print(f"[bench] repeat {rep + 1}/{args.repeats}: {side} ...", flush=True)
                result = run_worker(side, cfg_path, args.threads)
                runs[side].append(result)
                print(f"[bench]   {side}: step times {[round(t, 2) for t in result['step']]} s, "
                      f"peak RSS {result['peak_rss_mib']:.0f} MiB, process {result['process_seconds']:.0f} s", flush=True)

        ours, trl = summarise(runs["r1lab"]), summarise(runs["trl"])
        diff = float("nan")
        if not args.skip_agreement:
            print("[bench] loss on identical rollouts ...", flush=True)
            agreement = loss_agreement(tmp / "model", seed=args.seed)
            diff = max(r["loss_abs_diff"] for r in agreement)
            grad_diff = max(r["grad_max_abs_diff"] for r in agreement)

    print()
    print(f"settings: {args.prompts_per_step} prompts x {args.samples} samples, {args.max_new_tokens} new tokens, "
          f"vocab {args.vocab}, loss {args.loss}, beta {args.beta}, {args.threads} thread(s), {args.steps} steps "
          f"x {args.repeats} repeat(s); medians over steps after the first")
    print(f"{'':28s}{'r1lab':>10s}{'TRL':>10s}{'r1lab/TRL':>11s}")
    rows = [("seconds / step", "step", "{:10.3f}"), ("  generate", "generate", "{:10.3f}"),
            ("  score (+ ref, adv.)", "score", "{:10.3f}"), ("  train (fwd+bwd+opt)", "train", "{:10.3f}"),
            ("peak RSS (MiB)", "peak_rss_mib", "{:10.0f}"), ("RSS after imports (MiB)", "rss_after_imports_mib", "{:10.0f}"),
            ("completion tokens / step", "completion_tokens", "{:10.0f}"), ("process wall (s)", "process_seconds", "{:10.0f}")]
    for label, key, fmt in rows:
        ratio = ours[key] / trl[key] if trl[key] else float("nan")
        print(f"{label:28s}{fmt.format(ours[key])}{fmt.format(trl[key])}{ratio:11.2f}")
    if not args.skip_agreement:
        print("\nloss on identical rollouts (TRL loss_type <-> r1lab reduction):")
        for r in agreement:
            print(f"  {r['variant']:8s} beta={r['beta']:<5} {'off' if r['off_policy'] else 'on '}-policy  "
                  f"TRL {r['loss_trl']:+.6f}  r1lab {r['loss_r1lab']:+.6f}  |dloss| {r['loss_abs_diff']:.2e}  "
                  f"max|dgrad| {r['grad_max_abs_diff']:.2e} (max|grad| {r['grad_max_abs']:.2e}, "
                  f"{100 * r['clipped_fraction']:.0f}% tokens clipped)")
        print(f"  max |loss diff| {diff:.2e}, max |grad diff| {grad_diff:.2e}")
    if args.json:
        raw = {"settings": vars(args), "runs": runs, "summary": {"r1lab": ours, "trl": trl}}
        raw["agreement"] = None if args.skip_agreement else agreement
        args.json.write_text(json.dumps(raw, indent=1, default=str))
    trained = min(v for r in runs["r1lab"] for v in r["trained_fraction"])
    print(f"\nr1lab trained fraction of completion tokens per step: min {trained:.3f} (TRL trains all of them)")
    if trained < 1.0:
        print("[bench] warning: r1lab skipped zero-advantage groups, so the two sides did not train the same sequences")
    step_ratio = ours["step"] / trl["step"]
    mem_ratio = ours["peak_rss_mib"] / trl["peak_rss_mib"]
    print(f"step_time_ratio={step_ratio:.3f} peak_mem_ratio={mem_ratio:.3f} loss_max_abs_diff={diff:.3e}")


if __name__ == "__main__":
    main()
