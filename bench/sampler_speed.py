"""Benchmark: r1lab's sampler with and without prompt sharing, on a GRPO-shaped batch.

    python bench/sampler_speed.py                                 # the demo's shape on a CPU
    python bench/sampler_speed.py --device cuda --dtype bfloat16 --hidden 1024 --layers 12 \
        --heads 16 --kv-heads 4 --prompts 64 --samples 16 --max-new-tokens 256

A random Llama with r1lab's character tokenizer samples ``--samples`` completions for each of
``--prompts`` Countdown prompts (R1-Zero template) at temperature 1, up to ``--max-new-tokens``.
``share_prompts=False`` prefills and caches every row on its own (what a plain batched
``generate`` does); ``share_prompts=True`` prefills each prompt once and decodes with its keys
and values shared by its rows. Both run from the same seed, interleaved, ``--repeats`` times;
printed: median seconds per batch, generated tokens per second, the ratio, and whether greedy
decoding gives the same tokens both ways (it must, up to float rounding in low precision).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build(args):
    from transformers import LlamaConfig, LlamaForCausalLM

    from r1lab.models.tiny import char_tokenizer

    tok = char_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=3 * args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, max_position_embeddings=1024,
        tie_word_embeddings=True, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device=args.device, dtype=getattr(torch, args.dtype)).eval()
    return model, tok


def prompts(tok, num: int, samples: int, seed: int) -> list[list[int]]:
    from r1lab.models.templates import encode_prompt

    rng = random.Random(seed)
    out = []
    for _ in range(num):
        nums = [rng.randint(1, 99) for _ in range(rng.randint(3, 4))]
        question = f"Using the numbers {nums}, create an equation that equals {rng.randint(10, 200)}."
        out += [encode_prompt(tok, "r1_zero_short", question)] * samples
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from r1lab.rollout.sampler import SamplingParams, generate

    model, tok = build(args)
    n_params = sum(p.numel() for p in model.parameters())
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sampled = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, stop=[])
    times: dict[bool, list[float]] = {False: [], True: []}
    tokens: dict[bool, list[int]] = {False: [], True: []}
    for rep in range(args.repeats + 1):  # the first round warms up
        batch = prompts(tok, args.prompts, args.samples, seed=rep)
        for share in (False, True):
            gen = torch.Generator(device=args.device).manual_seed(rep)
            sync()
            began = time.perf_counter()
            out = generate(model, tok, batch, sampled, len(batch), gen, share_prompts=share)
            sync()
            if rep:
                times[share].append(time.perf_counter() - began)
                tokens[share].append(sum(len(c.token_ids) for c in out))
    greedy = SamplingParams(max_new_tokens=min(64, args.max_new_tokens), temperature=0.0, stop=[])
    batch = prompts(tok, min(args.prompts, 8), 2, seed=99)
    a = generate(model, tok, batch, greedy, len(batch), share_prompts=False)
    b = generate(model, tok, batch, greedy, len(batch), share_prompts=True)
    same = sum(x.token_ids == y.token_ids for x, y in zip(a, b)) / len(a)

    print(f"model: Llama {n_params / 1e6:.1f}M parameters ({args.layers} layers, hidden {args.hidden}, "
          f"{args.heads} heads / {args.kv_heads} kv), {args.dtype} on {args.device}; {args.prompts} prompts x "
          f"{args.samples} samples, {args.max_new_tokens} new tokens, {args.repeats} repeats")
    for share in (False, True):
        t = statistics.median(times[share])
        print(f"share_prompts={share!s:5}  median {t:7.3f} s / batch  {statistics.mean(tokens[share]) / t:9.0f} tokens/s")
    ratio = statistics.median(times[True]) / statistics.median(times[False])
    print(f"greedy rows identical with and without sharing: {same:.3f}")
    print(f"shared_over_unshared_time={ratio:.3f}")


if __name__ == "__main__":
    main()
