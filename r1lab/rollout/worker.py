"""A rollout worker: one of r1lab's engines (hf, vllm) in its own process, behind a socket.

``rollout.placement=separate`` puts GRPO's sampling here, off the trainer's critical path: the
trainer sends requests and weight pushes (`r1lab.rollout.remote`), the worker answers in order.
On one machine the trainer starts its workers itself; elsewhere start one per GPU or host::

    r1lab-rollout-worker --model /runs/x/stages/01-cold_start/checkpoint --port 5601 --backend hf

and point the trainer at them with ``rollout.servers=[host:5601,...]``.

Messages (JSON frames, `r1lab.rollout.wire`), answered in the order they arrive:

* ``hello``: protocol version and the model signature (architecture and parameter shapes); a
  worker serving another model, or speaking another protocol version, refuses with a message.
* ``init_weight_transfer``: join the trainer's two-process gloo group (`r1lab.rollout.transfer`).
* ``start_weight_update`` / ``update_weights`` (one per bucket, its bytes broadcast over the
  group) / ``finish_weight_update`` (with the policy version): vLLM's RL weight-update API.
* ``generate``: prompt token ids, sampling settings, seed, tools; the reply carries the
  completions, the policy version that wrote them, and the worker's timings.
* ``get_weight_version``, ``shutdown``.

While a request runs, a heartbeat frame goes out every ``--heartbeat-s`` seconds, so a trainer
tells a slow worker from a dead or hung one. Nothing a model writes runs here except through
the tools' sandbox (`r1lab.tools`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable

import torch

from r1lab.registry import Registry
from r1lab.rollout.transfer import BucketInfo, GlooGroup
from r1lab.rollout.wire import PROTOCOL_VERSION, ConnectionClosed, completion_json, recv_message, send_message

READY = "r1lab rollout worker ready on"  # the first line a worker prints: "<READY> host:port"


def model_signature(config) -> str:
    """A digest of a model's architecture: its config (less names, versions and dtype) and every
    parameter's name and shape, from a meta-device instance (no weights are read)."""
    from transformers import AutoModelForCausalLM

    shape = config.to_dict()
    for volatile in ("_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype", "architectures"):
        shape.pop(volatile, None)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = [(n, list(p.shape)) for n, p in model.named_parameters(remove_duplicate=False)]
    return hashlib.sha1(json.dumps([shape, params], sort_keys=True, default=str).encode()).hexdigest()[:16]


class HFWorkerBackend:
    """The ``hf`` engine on the worker's own copy of the model; pushes are copied into it in place."""

    name = "hf"

    def __init__(self, model_path: str, dtype: torch.dtype, seed: int) -> None:
        from r1lab.models.load import load_model, load_tokenizer
        from r1lab.rollout.engine import Policy
        from r1lab.rollout.hf_engine import HFEngine

        self.model = load_model(model_path, dtype=dtype).eval().requires_grad_(False)
        self.tokenizer = load_tokenizer(model_path)
        self.engine = HFEngine(Policy(module=self.model, path=model_path), self.tokenizer)
        self.config = self.model.config
        self.params = dict(self.model.named_parameters(remove_duplicate=False))
        self.group: GlooGroup | None = None

    def init_weight_transfer(self, host: str, port: int, timeout_s: float) -> None:
        self.group = GlooGroup(host, port, rank=1, timeout_s=timeout_s)

    def start_weight_update(self) -> None:
        pass

    @torch.no_grad()
    def update_weights(self, info: BucketInfo) -> None:
        for name, tensor in self.group.receive(info):
            if name not in self.params:
                raise KeyError(f"pushed weight {name!r} is not a parameter of the worker's model")
            self.params[name].copy_(tensor)

    def finish_weight_update(self, version: int) -> None:
        pass

    def close(self) -> None:
        pass


def _vllm_backend(model_path: str, dtype: torch.dtype, seed: int, options: dict):
    from r1lab.rollout.vllm_worker import VLLMWorkerBackend  # vLLM only when asked for

    return VLLMWorkerBackend(model_path, dtype, seed, options)


# `--backend` name -> factory(model_path, dtype, seed, options): what a worker can serve
WORKER_BACKENDS: Registry[Callable[..., Any]] = Registry("rollout worker backend")
WORKER_BACKENDS.register("hf", lambda model_path, dtype, seed, options: HFWorkerBackend(model_path, dtype, seed))
WORKER_BACKENDS.register("vllm", _vllm_backend)


def build_backend(backend: str, model_path: str, dtype: torch.dtype, seed: int, options: dict):
    if backend not in WORKER_BACKENDS:
        raise ValueError(f"--backend {backend!r}: a rollout worker runs {' or '.join(WORKER_BACKENDS.names())}")
    return WORKER_BACKENDS.get(backend)(model_path, dtype, seed, options)


class RolloutWorker:
    """Answers one trainer's messages in order (module docstring)."""

    def __init__(self, backend, model_path: str, heartbeat_s: float = 2.0) -> None:
        self.backend, self.model_path, self.heartbeat_s = backend, model_path, heartbeat_s
        self.signature = model_signature(backend.config)
        self.version = -1  # the checkpoint it loaded; a trainer's first push sets its own version
        self.idle_since = time.time()
        self._send_lock = threading.Lock()

    # --- one connection ------------------------------------------------------------------------
    def serve_connection(self, conn: socket.socket) -> bool:
        """Handle a trainer's messages until it disconnects; False when asked to shut down."""
        while True:
            try:
                header, payload = recv_message(conn)
            except (ConnectionClosed, ConnectionResetError, OSError):
                return True
            kind = header.get("type")
            if kind == "shutdown":
                self._reply(conn, {"type": "bye", "id": header.get("id")})
                return False
            busy = self._heartbeats(conn)
            try:
                reply = self.handle(header)
            except Exception as err:  # the trainer gets the error, this worker keeps serving
                reply = {"type": "error", "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=8)}
            finally:
                busy.set()
            if reply is not None:
                try:
                    self._reply(conn, {**reply, "id": header.get("id")})
                except OSError:  # the trainer left with this request unanswered (it stopped, or died)
                    return True

    def _reply(self, conn: socket.socket, header: dict) -> None:
        with self._send_lock:
            send_message(conn, header)

    def _heartbeats(self, conn: socket.socket) -> threading.Event:
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.heartbeat_s):
                try:
                    self._reply(conn, {"type": "heartbeat"})
                except OSError:
                    return

        threading.Thread(target=beat, daemon=True).start()
        return done

    # --- messages ----------------------------------------------------------------------------
    def handle(self, msg: dict) -> dict | None:
        kind = msg.get("type")
        if kind == "hello":
            return self.hello(msg)
        if kind == "init_weight_transfer":
            self.backend.init_weight_transfer(msg["host"], int(msg["port"]), float(msg.get("timeout_s", 0)))
            return {"type": "ok"}
        if kind == "start_weight_update":
            self.push_began, self.push_bytes = time.time(), 0
            self.backend.start_weight_update()
            return None  # answered at finish: a push is one round trip
        if kind == "update_weights":
            info = BucketInfo(msg["names"], msg["dtype_names"], msg["shapes"])
            self.backend.update_weights(info)
            self.push_bytes += info.nbytes
            return None
        if kind == "finish_weight_update":
            version = int(msg["version"])
            self.backend.finish_weight_update(version)  # the vLLM backend sets its engine's weight version
            self.version = version
            return {"type": "weights_updated", "version": self.version, "bytes": self.push_bytes,
                    "seconds": time.time() - self.push_began}
        if kind == "get_weight_version":
            return {"type": "weight_version", "version": self.version}
        if kind == "generate":
            return self.generate(msg)
        raise ValueError(f"unknown message type {kind!r}")

    def hello(self, msg: dict) -> dict:
        if msg.get("protocol") != PROTOCOL_VERSION:
            raise ValueError(
                f"the trainer speaks rollout protocol {msg.get('protocol')}, this worker {PROTOCOL_VERSION}: "
                "run the same r1lab version on both sides"
            )
        if msg.get("signature") != self.signature:
            raise ValueError(
                f"this worker serves another model ('{self.model_path}', signature {self.signature}) than the trainer "
                f"trains ('{msg.get('model')}', signature {msg.get('signature')}): start the worker with --model "
                "pointing at the trainer's starting model"
            )
        return {"type": "hello", "protocol": PROTOCOL_VERSION, "backend": self.backend.name, "model": self.model_path,
                "version": self.version, "pid": os.getpid(), "host": socket.gethostname()}

    def generate(self, msg: dict) -> dict:
        from r1lab.config.schema import ToolsConfig
        from r1lab.rollout.sampler import SamplingParams
        from r1lab.rollout.tool_calls import ToolCallingEngine, with_tools

        began = time.time()
        idle, self.idle_since = began - self.idle_since, began
        params = SamplingParams(**msg["params"])
        tools = ToolsConfig(**msg["tools"]) if msg.get("tools") else None
        engine = with_tools(self.backend.engine, self.backend.tokenizer, tools)
        seed, max_batch = msg.get("seed"), int(msg.get("max_batch", 0))
        if isinstance(engine, ToolCallingEngine):
            completions = engine.generate(msg["prompts"], params, seed, max_batch, contexts=msg.get("contexts"))
        else:
            completions = engine.generate(msg["prompts"], params, seed, max_batch)
        seconds = time.time() - began
        self.idle_since = time.time()
        return {"type": "completions", "completions": [completion_json(c) for c in completions], "version": self.version,
                "seconds": seconds, "idle_s": idle, "tokens": sum(len(c.token_ids) for c in completions)}


def serve(worker: RolloutWorker, host: str, port: int, once: bool = False) -> None:
    """Listen on ``host:port`` (0: a free port), print the ready line, serve trainers one at a
    time; ``once``: exit when the first trainer disconnects (the embedded workers)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as err:
        raise SystemExit(f"r1lab rollout worker: cannot listen on {host}:{port} ({err.strerror}); "
                         "pick a free port with --port (0: any free port)") from None
    listener.listen(1)
    bound_host, bound_port = listener.getsockname()[:2]
    print(f"{READY} {bound_host}:{bound_port}", flush=True)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            keep_going = worker.serve_connection(conn)
        if once or not keep_going:
            break
    worker.backend.close()
    listener.close()


def main(argv: list[str] | None = None) -> None:
    from r1lab.models.load import ModelNotFound, resolve_dtype

    parser = argparse.ArgumentParser(prog="r1lab-rollout-worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the model the trainer starts from (folder or hub id)")
    parser.add_argument("--backend", default="hf", choices=WORKER_BACKENDS.names())
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 = any free port (printed)")
    parser.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--threads", type=int, default=0, help="CPU torch threads; 0 = torch's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heartbeat-s", type=float, default=2.0)
    parser.add_argument("--once", action="store_true", help="exit when the first trainer disconnects")
    parser.add_argument("--options", default="{}", help="engine settings as JSON (the trainer's rollout config)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        backend = build_backend(args.backend, args.model, resolve_dtype(args.dtype), args.seed, json.loads(args.options))
    except ModelNotFound as err:
        raise SystemExit(f"r1lab rollout worker: --model: {err}") from None
    serve(RolloutWorker(backend, args.model, args.heartbeat_s), args.host, args.port, once=args.once)


if __name__ == "__main__":
    main(sys.argv[1:])
