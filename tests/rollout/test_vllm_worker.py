"""The ``vllm`` rollout worker (`r1lab.rollout.vllm_worker`): a real ``r1lab-rollout-worker
--backend vllm`` process (vLLM's CPU build), driven by the trainer's `RemoteEngine`.

Its weights arrive through vLLM's own RL weight-transfer API over r1lab's gloo group (the
``r1lab_gloo`` backend): after a push of perturbed weights, its greedy tokens must be those of
r1lab's own sampler on the same weights, and its sampled tokens' log-probs the trainer's
recomputed ones. One worker serves the whole module (vLLM takes seconds to start). The tiny model
ties its embeddings, and its head_dim is 32 (vLLM's CPU attention has no kernel for 16).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from r1lab.config.schema import RolloutConfig, TinyModelConfig
from r1lab.models.forward import token_logprobs
from r1lab.models.load import load_model, load_tokenizer
from r1lab.models.tiny import save_tiny_model
from r1lab.rollout.engine import Policy, SamplingParams
from r1lab.rollout.hf_engine import HFEngine
from r1lab.rollout.weights import named_weights

pytest.importorskip("vllm")
pytestmark = [pytest.mark.vllm, pytest.mark.slow]

LOGP_TOL = 1e-4  # fp32 both sides; vLLM's CPU kernels sum in another order (~1e-5 here)
MODEL = TinyModelConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128, max_position_embeddings=256)
OPTIONS = dict(max_model_len=256, max_num_seqs=32, kv_cache_gb=0.25)
GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0, stop=[])
TEXTS = ["User: Use 1 2 3 to make 6\nAssistant: <think>", "Use 3 5 7 to make 22.", "Use 9"]


class Trainer:
    """The trainer's side: its model, a `RemoteEngine` on the worker, and the policy version."""

    def __init__(self, path: str, address: str) -> None:
        from r1lab.rollout.remote import RemoteEngine

        self.model, self.tokenizer = load_model(path, dtype=torch.float32).eval(), load_tokenizer(path)
        self.version = 0
        policy = Policy(module=self.model, path=path, version=lambda: self.version)
        cfg = RolloutConfig(backend="vllm", placement="separate", servers=[address], **OPTIONS)
        self.engine = RemoteEngine(cfg, policy, self.tokenizer, seed=0)
        self.local = HFEngine(Policy(module=self.model, path=path), self.tokenizer)  # r1lab's own sampler
        self.prompts = [self.tokenizer(t, add_special_tokens=False).input_ids for t in TEXTS]

    @torch.no_grad()
    def perturb(self, scale: float, seed: int) -> None:
        for p in self.model.parameters():  # the tied embedding too (one parameter, two names)
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + p.numel())) * scale)

    @torch.no_grad()
    def logprobs(self, prompt: list[int], completion: list[int], temperature: float) -> torch.Tensor:
        ids = torch.tensor([prompt + completion])
        mask = torch.zeros_like(ids)
        mask[0, len(prompt):] = 1
        logp, _ = token_logprobs(self.model, ids, torch.ones_like(ids), mask, temperature=temperature)
        return logp[0, len(prompt) - 1:]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from r1lab.rollout.worker import READY

    path = str(save_tiny_model(MODEL, tmp_path_factory.mktemp("vllm_worker") / "tiny"))
    log = open(tmp_path_factory.mktemp("vllm_worker_log") / "worker.log", "w+")
    # stdout is read for the ready line only, then never again (as the trainer's embedded workers)
    worker = subprocess.Popen(
        [sys.executable, "-m", "r1lab.rollout.worker", "--backend", "vllm", "--model", path, "--port", "0", "--once",
         "--threads", "1", "--heartbeat-s", "0.5", "--options", json.dumps(OPTIONS)],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    line = worker.stdout.readline()
    if not line.startswith(READY):
        worker.kill()
        log.seek(0)
        pytest.fail(f"the vLLM worker did not start: {line!r}\n{log.read()[-4000:]}")
    trainer = Trainer(path, line[len(READY):].strip())
    yield trainer
    trainer.engine.close()
    try:
        worker.wait(timeout=30)  # --once: it exits when the trainer disconnects
    except subprocess.TimeoutExpired:
        worker.kill()
        pytest.fail("the vLLM worker did not exit after the trainer disconnected")
    finally:
        log.close()


def test_the_worker_serves_vllm_and_samples_what_the_trainer_does(trainer):
    assert trainer.engine.workers[0].info["backend"] == "vllm"
    completions, results = trainer.engine.submit(trainer.prompts, GREEDY, None).result()
    assert results[0].version == 0  # the first request pushed the trainer's weights first
    assert [c.token_ids for c in completions] == [c.token_ids for c in trainer.local.generate(trainer.prompts, GREEDY, None)]


def test_pushed_weights_change_what_it_samples_to_the_trainers(trainer):
    before = [c.token_ids for c in trainer.engine.generate(trainer.prompts, GREEDY, None)]
    trainer.perturb(0.2, seed=1)
    trainer.version = 7
    completions, results = trainer.engine.submit(trainer.prompts, GREEDY, None).result()
    assert results[0].version == 7
    assert trainer.engine.workers[0].call({"type": "get_weight_version"})["version"] == 7
    tokens = [c.token_ids for c in completions]
    assert tokens != before  # the push changed the model
    assert tokens == [c.token_ids for c in trainer.local.generate(trainer.prompts, GREEDY, None)]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_are_the_trainers_after_a_push(trainer, temperature):
    trainer.perturb(0.05, seed=2)
    trainer.version += 1
    prompts = [p for p in trainer.prompts for _ in range(3)]
    params = SamplingParams(max_new_tokens=24, temperature=temperature, stop=[])
    completions, results = trainer.engine.submit(prompts, params, seed=5).result()
    assert results[0].version == trainer.version
    for p, c in zip(prompts, completions):
        assert len(c.logprobs) == len(c.token_ids) > 0
        torch.testing.assert_close(torch.tensor(c.logprobs), trainer.logprobs(p, c.token_ids, temperature), atol=LOGP_TOL, rtol=0)
    again = trainer.engine.generate(prompts, params, seed=5)  # the same seed, the same samples
    assert [c.token_ids for c in again] == [c.token_ids for c in completions]


def test_a_push_without_the_tied_head_still_updates_the_head(trainer):
    """A trainer may send a tied weight once, under the embedding's name: vLLM's reload then
    skips the LM head, whose packed CPU kernel must still see the new embeddings. Small buckets,
    so one layer's weights also arrive over several ``update_weights``."""
    before = [c.token_ids for c in trainer.engine.generate(trainer.prompts, GREEDY, None)]
    trainer.perturb(0.2, seed=3)
    trainer.version += 1
    worker = trainer.engine.workers[0]
    weights = [(n, t) for n, t in named_weights(trainer.model) if n != "lm_head.weight"]
    assert any(n == "model.embed_tokens.weight" for n, _ in weights) and trainer.model.config.tie_word_embeddings
    reply = worker.wait(worker.push(weights, trainer.version, bucket_bytes=8 << 10))
    assert reply["version"] == trainer.version
    trainer.engine.synced_version = trainer.version  # pushed by hand: the engine would push again otherwise
    completions, results = trainer.engine.submit(trainer.prompts, GREEDY, None).result()
    assert results[0].version == trainer.version
    tokens = [c.token_ids for c in completions]
    assert tokens != before
    assert tokens == [c.token_ids for c in trainer.local.generate(trainer.prompts, GREEDY, None)]


def test_the_gloo_backend_is_registered_once():
    from vllm.distributed.weight_transfer.base import WeightTransferEngine
    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory

    from r1lab.rollout.vllm_worker import BACKEND, register_gloo_engine

    register_gloo_engine()
    register_gloo_engine()  # a second registration is a no-op, not vLLM's "already registered"
    engine_class = WeightTransferEngineFactory._registry[BACKEND]()
    assert issubclass(engine_class, WeightTransferEngine) and engine_class.__name__ == "GlooWeightTransferEngine"
