"""The ``vllm`` rollout worker (``r1lab-rollout-worker --backend vllm``): a ``vllm.LLM`` in the
worker's process, updated through vLLM's own RL weight-transfer interface.

* Weights: the ``LLM`` is built with ``weight_transfer_config={"backend": "r1lab_gloo"}``, and
  every push is driven through the worker RPCs vLLM's RL API defines
  (``llm.collective_rpc``): ``init_weight_transfer_engine`` once, then per push
  ``start_weight_update``, ``update_weights`` (one per bucket) and ``finish_weight_update``; the
  pushed version goes to ``llm_engine.set_weight_version``. ``r1lab_gloo``
  (`GlooWeightTransferEngine`, registered here in ``vllm.distributed.weight_transfer``) is vLLM's
  NCCL backend with r1lab's two-process gloo group (`r1lab.rollout.transfer`) in place of NCCL:
  it joins the group as rank 1, receives one bucket per ``update_weights`` (``names``,
  ``dtype_names``, ``shapes``: the NCCL backend's update info), and loads it with vLLM's
  layerwise reload (``initialize_layerwise_reload`` at start, the model's ``load_weights`` per
  bucket, ``finalize_layerwise_reload`` at finish: what ``reload_weights`` does in one go). That
  is the loading that survives the CPU build's prepacked linear layers: the plain
  ``load_weights`` finds no ``weight_loader`` on them.
* Tied embeddings: vLLM's CPU build multiplies by a prepacked copy of the vocabulary matrix in
  the LM head as well; with ``tie_word_embeddings`` the checkpoint's ``lm_head.weight`` is
  skipped by ``load_weights``, so the reload refreshes the embedding's own copy but not the
  head's, and the head would go on scoring with the old embeddings. `finish_weight_update`
  repacks every layer that shares its weight with a layer the push reached.
* Sampling is the colocated engine's (`r1lab.rollout.vllm_engine.sample`): torch's global
  generator reseeded per ``generate`` (vLLM's CPU build crashes on per-request seeds). After
  each push the prefix cache is reset.
* ``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the engine core runs in this process, so it sees the
  registration above.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields

import torch

from r1lab.config.schema import RolloutConfig
from r1lab.rollout.engine import Completion, RolloutEngine, SamplingParams
from r1lab.rollout.transfer import BucketInfo, GlooGroup

BACKEND = "r1lab_gloo"  # the name in vLLM's weight-transfer registry


# --- vLLM's side: a gloo weight-transfer engine --------------------------------------------------


def register_gloo_engine() -> None:
    """Register `GlooWeightTransferEngine` as ``r1lab_gloo`` in vLLM's weight-transfer registry,
    unless a backend of that name is there already."""
    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory

    if BACKEND not in WeightTransferEngineFactory._registry:
        WeightTransferEngineFactory.register_engine(BACKEND, _engine_class())


_ENGINE_CLASS = None


def _engine_class():
    """`GlooWeightTransferEngine`, defined on first use (its base class is vLLM's)."""
    global _ENGINE_CLASS
    if _ENGINE_CLASS is not None:
        return _ENGINE_CLASS
    from vllm.distributed.weight_transfer.base import WeightTransferEngine, WeightTransferInitInfo, WeightTransferUpdateInfo

    @dataclass
    class GlooInitInfo(WeightTransferInitInfo):
        """Where the trainer's gloo group waits (`r1lab.rollout.transfer.GlooGroup`, rank 0)."""

        host: str
        port: int
        timeout_s: float = 0.0

    @dataclass
    class GlooUpdateInfo(WeightTransferUpdateInfo):
        """One bucket: vLLM's NCCL update info, r1lab's `BucketInfo`."""

        names: list[str]
        dtype_names: list[str]
        shapes: list[list[int]]

        def __post_init__(self) -> None:
            if not len(self.names) == len(self.dtype_names) == len(self.shapes):
                raise ValueError(f"update info: {len(self.names)} names, {len(self.dtype_names)} dtypes, {len(self.shapes)} shapes")

    class GlooWeightTransferEngine(WeightTransferEngine[GlooInitInfo, GlooUpdateInfo]):
        """vLLM's dense NCCL engine on r1lab's gloo group (module docstring)."""

        init_info_cls = GlooInitInfo
        update_info_cls = GlooUpdateInfo
        supports_draft_weight_update = False

        def __init__(self, config, vllm_config, device, model) -> None:
            super().__init__(config, vllm_config, device, model)
            self.group: GlooGroup | None = None
            self.loaded: set[str] = set()

        def init_transfer_engine(self, init_info: GlooInitInfo) -> None:
            self.group = GlooGroup(init_info.host, int(init_info.port), rank=1, timeout_s=float(init_info.timeout_s))

        def start_weight_update(self) -> None:
            from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

            self.loaded = set()
            initialize_layerwise_reload(self.model)

        def update_weights(self, update_info: dict) -> None:
            self.receive_weights(self.parse_update_info(update_info))
            if torch.accelerator.is_available():  # the base class synchronizes unconditionally; a CPU has nothing to
                torch.accelerator.synchronize()

        def receive_weights(self, update_info: GlooUpdateInfo) -> None:
            if self.group is None:
                raise RuntimeError("r1lab_gloo weight transfer not initialized: call init_weight_transfer_engine first")
            from vllm.model_executor.model_loader.mtp_validation import disable_mtp_completeness_check

            info = BucketInfo(list(update_info.names), list(update_info.dtype_names), [list(s) for s in update_info.shapes])
            weights = self.group.receive(info)
            with disable_mtp_completeness_check():
                loaded = self.model.load_weights(weights)
            self.loaded |= set(loaded or ())

        def finish_weight_update(self) -> None:
            from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

            finalize_layerwise_reload(self.model, self.model_config)
            _repack_tied(self.model)

        def shutdown(self) -> None:
            self.group = None  # the trainer owns the store; its end closes the group

    GlooWeightTransferEngine.__module__ = __name__
    _ENGINE_CLASS = GlooWeightTransferEngine
    return _ENGINE_CLASS


def _repack_tied(model: torch.nn.Module) -> None:
    """Repack every embedding-method layer whose weight is another layer's (a tied LM head): the
    reload repacked the layer the weight was loaded into, the other one kept kernels of the old
    weights (on a CPU its oneDNN handle holds a packed copy; elsewhere this is a no-op)."""
    from vllm.model_executor.layers.vocab_parallel_embedding import UnquantizedEmbeddingMethod

    sharing: dict[int, list[torch.nn.Module]] = {}
    for module in model.modules():
        weight = module._parameters.get("weight")
        if weight is not None and isinstance(getattr(module, "quant_method", None), UnquantizedEmbeddingMethod):
            sharing.setdefault(id(weight), []).append(module)
    for modules in sharing.values():
        if len(modules) > 1:
            for module in modules:
                module.quant_method.process_weights_after_loading(module)


# --- r1lab's side: the worker backend ---------------------------------------------------------


class _Sampler(RolloutEngine):
    """The worker's `RolloutEngine`: the colocated engine's sampling on the worker's ``LLM`` (its
    weights are pushed by the worker's own messages, not by `sync_weights`)."""

    name = "vllm"

    def __init__(self, llm, tokenizer) -> None:
        self.llm, self.tokenizer = llm, tokenizer

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams, seed: int | None, max_batch: int = 0) -> list[Completion]:
        from r1lab.rollout.vllm_engine import sample

        return sample(self.llm, self.tokenizer, prompt_ids, params, seed)


class VLLMWorkerBackend:
    """A ``vllm.LLM`` behind a rollout worker (module docstring); the interface of
    `r1lab.rollout.worker.HFWorkerBackend`. ``options``: the trainer's `RolloutConfig` as a dict."""

    name = "vllm"

    def __init__(self, model_path: str, dtype: torch.dtype, seed: int, options: dict) -> None:
        from r1lab.rollout.vllm_engine import VLLMEngine, llm_kwargs, start_error

        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process engine core: it sees the registration
        # vLLM logs to stdout by default; a worker's stdout carries its ready line, and a trainer that
        # started it reads no further, so a full pipe would block the worker: log to stderr
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        VLLMEngine.require()
        from transformers import AutoConfig
        from vllm import LLM

        from r1lab.models.load import load_tokenizer, resolve_model_path

        known = {f.name for f in fields(RolloutConfig)}
        cfg = RolloutConfig(**{k: v for k, v in options.items() if k in known and not isinstance(v, (list, dict))})
        path = resolve_model_path(model_path)
        register_gloo_engine()
        kwargs = llm_kwargs(cfg, path, model_path, dtype, seed)
        kwargs["weight_transfer_config"] = {"backend": BACKEND}
        began = time.time()
        try:
            self.llm = LLM(**kwargs)
        except Exception as err:  # vLLM raises many kinds; all mean the same to the user
            raise start_error("rollout worker", model_path, err) from err
        self.seconds_start = time.time() - began
        self.tokenizer = load_tokenizer(model_path)
        self.config = AutoConfig.from_pretrained(path)
        self.engine = _Sampler(self.llm, self.tokenizer)
        self.updating = False  # between start_weight_update and finish_weight_update
        self.push_error: Exception | None = None

    def init_weight_transfer(self, host: str, port: int, timeout_s: float) -> None:
        self._abandon_update()
        self.llm.collective_rpc("init_weight_transfer_engine", args=({"host": host, "port": port, "timeout_s": timeout_s},))

    def start_weight_update(self) -> None:
        self._abandon_update()
        self.push_error = None
        self.llm.collective_rpc("start_weight_update")
        self.updating = True

    def update_weights(self, info: BucketInfo) -> None:
        try:
            self.llm.collective_rpc("update_weights", args=(info.as_dict(),))
        except Exception as err:  # vLLM ended the update; the trainer hears of it at finish (buckets get no reply)
            self.updating, self.push_error = False, err
            raise

    def finish_weight_update(self, version: int) -> None:
        if self.push_error is not None:
            err, self.push_error = self.push_error, None
            raise RuntimeError(f"the weight push failed in vLLM's update_weights: {type(err).__name__}: {err}") from err
        self.llm.collective_rpc("finish_weight_update")
        self.updating = False
        self.llm.reset_prefix_cache()  # cached prompt keys/values were computed by the old weights
        self.llm.llm_engine.set_weight_version(str(version))

    def _abandon_update(self) -> None:
        """Close a push its trainer left unfinished (it disconnected mid-push): the layers it did
        not reach get their kernels back, and the next trainer's first push brings every weight."""
        if self.updating:
            self.updating = False
            self.llm.collective_rpc("finish_weight_update")

    def weight_version(self) -> int | None:
        """The version of the weights the engine serves (`finish_weight_update`); None before the first push."""
        version = self.llm.llm_engine.get_weight_version()
        return int(version) if version.lstrip("-").isdigit() else None

    def close(self) -> None:
        self._abandon_update()
        self.llm.collective_rpc("shutdown_weight_transfer_engine")
