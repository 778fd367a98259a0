"""The trainer's side of ``rollout.placement=separate``: rollout workers in their own processes.

`RemoteEngine` is a `RolloutEngine` whose ``generate`` runs on workers (`r1lab.rollout.worker`),
each a connection (`WorkerConnection`) with its own sender and reader threads:

* Requests and weight pushes leave in the order the trainer makes them, through one FIFO per
  worker, and a worker answers in order, so the policy version each request sees is fixed by
  the trainer's order of calls alone: a run is reproducible, and resumable, whatever the timing.
* `submit` returns at once (`PendingCompletions`); GRPO's one-step-off loop
  (`r1lab.rollout.rounds.AheadRounds`) keeps ``max_staleness`` rounds in flight that way.
* A push (`sync_weights`, lazily before the first request after an optimizer step) snapshots
  the policy's weights (LoRA merged, ZeRO-3 gathered bucket by bucket:
  `r1lab.rollout.weights.named_weights`) and returns; the sender thread broadcasts them over the
  worker's gloo group (`r1lab.rollout.transfer`) when the worker gets to it.
* Faults: a worker whose connection drops, or that sends nothing (no reply, no heartbeat) for
  ``rollout.worker_timeout_s``, raises `RolloutWorkerError` naming it and its address; with
  ``rollout.restart_workers`` an embedded worker is started again, given the current weights,
  and its unanswered requests are sent again.

Embedded workers (no ``rollout.servers``): ``rollout.num_workers`` processes of
``python -m r1lab.rollout.worker`` on free local ports, stopped by `close` (and by their own end
of the socket if the trainer dies).
"""
from __future__ import annotations

import itertools
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field

import torch

from r1lab.config.schema import RolloutConfig, ToolsConfig
from r1lab.engine.seeds import derive_seed
from r1lab.rollout.engine import Completion, Policy, RolloutEngine, RolloutEngineError, SamplingParams
from r1lab.rollout.transfer import DEFAULT_BUCKET_BYTES, GlooGroup, buckets, pack
from r1lab.rollout.weights import named_weights, no_gather
from r1lab.rollout.wire import (
    PROTOCOL_VERSION, ConnectionClosed, completion_from_json, parse_address, recv_message, send_message,
)

START_TIMEOUT_S = 300.0  # an embedded worker that has not printed its ready line by then failed to start


class RolloutWorkerError(RolloutEngineError):
    """A rollout worker failed, stopped answering, or refused the trainer; the message names it."""


@dataclass
class GenerateResult:
    completions: list[Completion]
    version: int  # the policy version (trainer optimizer steps) of the weights that wrote them
    seconds: float  # the worker's generation time
    idle_s: float  # how long the worker waited for this request after its previous one
    tokens: int
    worker: int


@dataclass
class PushStats:
    seconds: float = 0.0
    bytes: int = 0


SENDER_JOIN_S = 10.0  # close(): how long to let a push in flight finish or fail before exiting


class WorkerConnection:
    """One worker: its socket, an ordered outbox (sender thread) and a reader thread."""

    def __init__(self, index: int, address: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
        self.index, self.address, self.timeout_s, self.process = index, address, timeout_s, process
        self.host, self.port = parse_address(address)
        self.pending: dict[int, Future] = {}
        self.ids = itertools.count()
        self.failure: RolloutWorkerError | None = None
        self.last_heard = time.time()
        self.push_stats: list[PushStats] = []
        self.push_future: Future | None = None  # the reply to the last push queued (RemoteEngine.push_figures)
        self._outbox: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=30)
        except OSError as err:
            raise RolloutWorkerError(
                f"{self.name}: cannot connect ({err.strerror or err}); is a worker listening there? "
                "Start one with `r1lab-rollout-worker --model <model> --port <port>` or fix rollout.servers"
            ) from None
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.group: GlooGroup | None = None
        threading.Thread(target=self._read, daemon=True, name=f"r1lab-worker{index}-reader").start()
        self._sender = threading.Thread(target=self._send, daemon=True, name=f"r1lab-worker{index}-sender")
        self._sender.start()

    @property
    def name(self) -> str:
        return f"rollout worker {self.index} at {self.address}"

    # --- threads ---------------------------------------------------------------------------
    def _read(self) -> None:
        try:
            while True:
                header, _ = recv_message(self.sock)
                self.last_heard = time.time()
                if header.get("type") == "heartbeat":
                    continue
                with self._lock:
                    future = self.pending.pop(header.get("id"), None)
                if future is None:
                    continue
                if header.get("type") == "error":
                    future.set_exception(RolloutWorkerError(f"{self.name} failed: {header['error']}"))
                else:
                    future.set_result(header)
        except (ConnectionClosed, OSError) as err:
            self._fail(RolloutWorkerError(f"{self.name} stopped: connection lost ({err}); see the worker's log"))

    def _send(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            try:
                if item[0] == "message":
                    send_message(self.sock, item[1])
                else:
                    self._push(*item[1:])
            except (OSError, RuntimeError) as err:
                self._fail(RolloutWorkerError(f"{self.name} stopped: sending failed ({type(err).__name__}: {err})"))
                return

    def _fail(self, err: RolloutWorkerError) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = err
            pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(self.failure)

    # --- requests --------------------------------------------------------------------------
    def request(self, header: dict) -> Future:
        """Queue ``header`` behind everything sent so far; its reply's future."""
        future: Future = Future()
        if self.failure is not None:
            future.set_exception(self.failure)
            return future
        rid = next(self.ids)
        with self._lock:
            if not self.pending:  # an idle worker's silence so far was no fault: the clock starts now
                self.last_heard = time.time()
            self.pending[rid] = future
        self._outbox.put(("message", {**header, "id": rid}))
        return future

    def wait(self, future: Future) -> dict:
        """The reply, or `RolloutWorkerError` when the worker fails or is silent for ``timeout_s``."""
        while True:
            try:
                return future.result(timeout=0.5)
            except TimeoutError:
                pass
            silent = time.time() - self.last_heard
            if self.timeout_s and silent > self.timeout_s:
                self._fail(RolloutWorkerError(
                    f"{self.name} stopped answering: nothing heard for {silent:.0f} s "
                    f"(rollout.worker_timeout_s={self.timeout_s:g})"
                ))

    def call(self, header: dict) -> dict:
        return self.wait(self.request(header))

    # --- weights ---------------------------------------------------------------------------
    def init_weight_transfer(self, timeout_s: float) -> None:
        """Open the trainer's end of the gloo group and have the worker join it."""
        host = self.sock.getsockname()[0]
        store = GlooGroup.open_store(host, timeout_s)
        reply = self.request({"type": "init_weight_transfer", "host": host, "port": store.port, "timeout_s": timeout_s})
        self.group = GlooGroup(host, store.port, rank=0, timeout_s=timeout_s, store=store)
        self.wait(reply)

    def push(self, weights: list[tuple[str, torch.Tensor]], version: int, bucket_bytes: int) -> Future:
        """Queue a push of ``weights`` (already copied) as ``version``; its reply's future."""
        future: Future = Future()
        rid = next(self.ids)
        with self._lock:
            if not self.pending:
                self.last_heard = time.time()
            self.pending[rid] = future
        self._outbox.put(("push", weights, version, bucket_bytes, rid))
        return future

    def _push(self, weights, version: int, bucket_bytes: int, rid: int) -> None:
        send_message(self.sock, {"type": "start_weight_update", "version": version})
        for info, tensors in buckets(weights, bucket_bytes):
            send_message(self.sock, {"type": "update_weights", **info.as_dict()})
            self.group.broadcast(pack(tensors))
        send_message(self.sock, {"type": "finish_weight_update", "version": version, "id": rid})

    def close(self) -> None:
        """Disconnect: an embedded worker (``--once``) exits, one started elsewhere waits for the next trainer."""
        self._outbox.put(None)
        try:
            # shut down first: close() alone sends nothing while the reader thread is blocked in recv
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        # a push cut off by the worker's death fails inside gloo a moment later; exiting while gloo
        # raises that error aborts the process ("terminate called without an active exception")
        self._sender.join(timeout=SENDER_JOIN_S)


@dataclass
class PendingCompletions:
    """Completions still being generated: one part per worker shard, in row order."""

    engine: "RemoteEngine"
    parts: list[tuple[int, tuple]]  # (worker index, (its connection, its reply, the request))
    began: float = field(default_factory=time.time)

    def result(self) -> tuple[list[Completion], list[GenerateResult]]:
        results = [self.engine._result(i, f) for i, f in self.parts]
        return [c for r in results for c in r.completions], results


def start_local_worker(cfg: RolloutConfig, model_path: str, dtype: torch.dtype, seed: int) -> tuple[subprocess.Popen, str]:
    """An embedded worker process on a free local port; (process, address) once it is ready."""
    command = [sys.executable, "-m", "r1lab.rollout.worker", "--model", model_path, "--backend", cfg.backend,
               "--port", "0", "--dtype", str(dtype).removeprefix("torch."), "--threads", str(cfg.worker_threads),
               "--seed", str(seed), "--once", "--options", _options_json(cfg),
               # beats well inside the timeout, so a busy worker is never taken for a silent one
               "--heartbeat-s", str(min(2.0, cfg.worker_timeout_s / 4) if cfg.worker_timeout_s else 2.0)]
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.worker_threads or os.environ.get("OMP_NUM_THREADS", ""))}
    if not cfg.worker_threads:
        env.pop("OMP_NUM_THREADS")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=None, text=True, env=env, start_new_session=True)
    deadline = time.time() + START_TIMEOUT_S
    from r1lab.rollout.worker import READY

    while time.time() < deadline:
        line = process.stdout.readline()
        if line.startswith(READY):
            return process, line[len(READY):].strip()
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RolloutWorkerError(
        f"an embedded rollout worker ({cfg.backend}, model '{model_path}') did not start (exit code {process.poll()}); "
        "its error is printed above"
    )


def _options_json(cfg: RolloutConfig) -> str:
    import json

    return json.dumps({k: v for k, v in asdict(cfg).items() if not isinstance(v, (list, dict))})


class RemoteEngine(RolloutEngine):
    """`RolloutEngine` over rollout workers (module docstring). Rows are split over the workers
    in contiguous shards; with several workers, shard j samples with a seed derived from
    ``(seed, j)``, with one it samples exactly what the colocated engine would."""

    pushes_weights = True  # each worker holds its own copy, pushed by sync_weights
    returns_logprobs = True  # the workers' engines' log-probs, sent back with the completions
    runs_tools = True  # tool calls run on the worker, inside its decode loop

    def __init__(self, cfg: RolloutConfig, policy: Policy, tokenizer, seed: int, rank: int = 0, world: int = 1) -> None:
        self.cfg, self.policy, self.tokenizer, self.seed = cfg, policy, tokenizer, seed
        self.name = f"{cfg.backend} (separate)"
        self.synced_version: int | None = None
        self.seconds_last_push = 0.0
        self.bytes_last_push = 0
        self.dtype = policy.dtype or next(policy.module.parameters()).dtype
        self.restarts = 0
        addresses = list(cfg.servers)
        if addresses:
            if len(addresses) % world:
                raise RolloutEngineError(f"rollout.servers lists {len(addresses)} workers for {world} trainer ranks; give a multiple of {world}")
            per_rank = len(addresses) // world
            addresses = addresses[rank * per_rank : (rank + 1) * per_rank]
            self.workers = [self._connect(rank * per_rank + i, a, None) for i, a in enumerate(addresses)]
        else:
            self.workers = [self._start(rank * cfg.num_workers + i) for i in range(cfg.num_workers)]

    # --- workers ---------------------------------------------------------------------------
    def _start(self, index: int) -> WorkerConnection:
        process, address = start_local_worker(self.cfg, self.policy.path, self.dtype, self.seed)
        return self._connect(index, address, process)

    def _connect(self, index: int, address: str, process) -> WorkerConnection:
        from r1lab.rollout.worker import model_signature

        conn = WorkerConnection(index, address, self.cfg.worker_timeout_s, process)
        base = self.policy.module.get_base_model() if hasattr(self.policy.module, "get_base_model") else self.policy.module
        hello = {"type": "hello", "protocol": PROTOCOL_VERSION, "signature": model_signature(base.config),
                 "model": self.policy.path}
        try:
            conn.info = conn.call(hello)
            conn.init_weight_transfer(max(self.cfg.worker_timeout_s, 3600.0))
        except RolloutWorkerError as err:
            conn.close()
            raise RolloutWorkerError(f"start-up: {err}") from None
        return conn

    def _restart(self, j: int) -> None:
        old = self.workers[j]
        if old.process is None:
            raise old.failure
        old.process.kill()
        self.workers[j] = self._start(old.index)
        self.restarts += 1
        print(f"[r1lab] {old.failure}; restarted it as {self.workers[j].name} (rollout.restart_workers)", flush=True)

    # --- sampling --------------------------------------------------------------------------
    def submit(
        self, prompt_ids: list[list[int]], params: SamplingParams, seed: int | None, max_batch: int = 0,
        tools: ToolsConfig | None = None, contexts: list[dict] | None = None,
    ) -> PendingCompletions:
        """Send the rows to the workers (after a weight push if the policy moved) and return."""
        self.sync_weights()
        shards = _shards(len(prompt_ids), len(self.workers))
        parts = []
        for j, (lo, hi) in enumerate(shards):
            shard_seed = seed if seed is None or len(self.workers) == 1 else derive_seed(seed, "rollout/worker", j)
            header = {"type": "generate", "prompts": prompt_ids[lo:hi], "params": asdict(params), "seed": shard_seed,
                      "max_batch": max_batch, "tools": asdict(tools) if tools is not None and tools.names else None,
                      "contexts": contexts[lo:hi] if contexts is not None else None}
            parts.append((j, (self.workers[j], self.workers[j].request(header), header)))
        return PendingCompletions(self, parts)

    def _result(self, j: int, sent: tuple[WorkerConnection, Future, dict]) -> GenerateResult:
        conn, future, header = sent
        try:
            reply = conn.wait(future)
        except RolloutWorkerError:
            if not self.cfg.restart_workers:
                raise
            if self.workers[j] is conn:  # not yet replaced (several requests may have died with it)
                self._restart(j)
                self._push_to(self.workers[j], self.policy.version())  # the new worker starts from the current weights
            reply = self.workers[j].call(header)
        return GenerateResult([completion_from_json(c) for c in reply["completions"]], int(reply["version"]), float(reply["seconds"]),
                              float(reply["idle_s"]), int(reply["tokens"]), j)

    def generate(
        self, prompt_ids: list[list[int]], params: SamplingParams, seed: int | None, max_batch: int = 0,
        tools: ToolsConfig | None = None, contexts: list[dict] | None = None,
    ) -> list[Completion]:
        if not prompt_ids:
            return []
        return self.submit(prompt_ids, params, seed, max_batch, tools, contexts).result()[0]

    # --- weights ---------------------------------------------------------------------------
    def sync_weights(self) -> None:
        """Queue a push of the policy's weights to every worker if they changed since the last."""
        version = self.policy.version()
        if self.synced_version == version:
            return
        for worker in self.workers:
            self._push_to(worker, version)
        self.synced_version = version

    def _push_to(self, worker: WorkerConnection, version: int) -> None:
        began = time.time()
        weights = list(named_weights(self.policy.module, self.policy.gather_params or no_gather))
        self.bytes_last_push = sum(t.numel() * t.element_size() for _, t in weights)
        worker.push_future = worker.push(weights, version, DEFAULT_BUCKET_BYTES)
        self.seconds_last_push = time.time() - began  # the trainer's share: the copy (the sender thread broadcasts)

    def push_figures(self) -> dict[str, float]:
        """The last push as the workers saw it: seconds (slowest worker) and bytes per worker."""
        seconds = []
        for worker in self.workers:
            future = worker.push_future
            if future is not None and future.done() and future.exception() is None:
                seconds.append(float(future.result()["seconds"]))
        return {"weight_sync_s": max(seconds, default=0.0), "weight_sync_bytes": float(self.bytes_last_push),
                "weight_copy_s": self.seconds_last_push}

    def close(self) -> None:
        for worker in self.workers:
            unanswered = bool(worker.pending)  # rounds sampled ahead that no step will consume
            worker.close()
            if worker.process is not None and unanswered:
                worker.process.kill()
            if worker.process is not None:
                try:
                    worker.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
        self.workers = []


def _shards(n: int, k: int) -> list[tuple[int, int]]:
    """``k`` contiguous (lo, hi) row ranges covering ``n`` rows, sizes differing by at most one."""
    size, extra = divmod(n, k)
    out, lo = [], 0
    for j in range(k):
        hi = lo + size + (j < extra)
        out.append((lo, hi))
        lo = hi
    return out

