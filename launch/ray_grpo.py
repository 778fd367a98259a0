"""GRPO with its rollout workers placed by Ray: trainer ranks and workers in one placement group.

    python launch/ray_grpo.py --trainers 2 --workers 4 --gpus-per-trainer 1 --gpus-per-worker 1 \\
        --worker-backend vllm -- recipe=r1_math model.name_or_path=/models/base rollout.max_staleness=1
    python launch/ray_grpo.py --address local --num-cpus 2 --worker-model <dir> -- recipe=r1_countdown_async  # one machine, CPU

One placement group holds a bundle per trainer rank (bundles 0..T-1) and per rollout worker
(bundles T..T+W-1), PACK by default (SPREAD with ``--strategy SPREAD``). Each worker is an actor
on its bundle that runs ``python -m r1lab.rollout.worker --host <its node's IP> --port 0`` and
returns the address from the worker's ready line; each trainer rank is an actor on its bundle
that runs the ``r1lab`` CLI with RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set and
``rollout.placement=separate rollout.servers=[...]`` appended (rank r takes the r-th contiguous
share of the workers). Subprocess output reaches this driver through Ray's log forwarding. The
first rank to fail ends the run with its exit code; the workers are stopped at the end, on
failure and on Ctrl-C. A GPU actor sees only its own GPUs (Ray sets CUDA_VISIBLE_DEVICES); the
trainer ranks of a node are given their node's trainer GPUs in local-rank order, so that
``cuda:LOCAL_RANK`` is each rank's own.

``--worker-model`` (default: the overrides' ``model.name_or_path``) needs only the GRPO stage's
architecture and tokenizer: the trainer pushes its weights before its first request, so the base
model serves a GRPO stage that follows a cold start.

Ray is an optional extra (``pip install "r1lab[ray]"``); r1lab itself never imports it. On a
cluster, every node needs r1lab installed, the same working directory (the run directory is
relative to it, as with the other launchers) and the model at the same path.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

READY = "r1lab rollout worker ready on"  # r1lab.rollout.worker.READY (a test checks they agree)
FORWARDED_ENV = ("HF_", "WANDB_", "DS_", "TOKENIZERS_", "TRANSFORMERS_", "NCCL_", "TORCH_", "PYTORCH_")


def forwarded_env() -> dict[str, str]:
    """The driver's settings that the subprocesses need on any node (offline flags, W&B, NCCL)."""
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}


def _placement() -> dict:
    """Where this actor runs: its placement group, node and GPUs, as Ray sees them."""
    context = ray.get_runtime_context()
    return {"placement_group": context.get_placement_group_id(), "node_id": context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(), "gpus": [str(g) for g in ray.get_gpu_ids()],
            "actor_pid": os.getpid()}


def _stop(proc: subprocess.Popen | None, grace_s: float = 10.0) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@ray.remote
class RolloutWorkerActor:
    """One ``r1lab.rollout.worker`` process on this actor's node (and GPUs)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self, model: str, backend: str, threads: int, extra: list[str], env: dict, cwd: str) -> dict:
        """Start the worker on this node's IP and a free port; return its address once it is ready."""
        where = _placement()
        argv = [sys.executable, "-m", "r1lab.rollout.worker", "--model", model, "--backend", backend,
                "--host", where["node_ip"], "--port", "0", "--threads", str(threads), *extra]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     env={**os.environ, **env}, cwd=cwd if os.path.isdir(cwd) else None)
        for line in self.proc.stdout:
            print(line, end="", flush=True)
            if line.startswith(READY):
                address = line[len(READY):].strip()
                break
        else:
            raise RuntimeError(f"rollout worker exited with code {self.proc.wait()} before it was ready: {shlex.join(argv)}")
        threading.Thread(target=lambda: [print(x, end="", flush=True) for x in self.proc.stdout], daemon=True).start()
        return {**where, "address": address, "pid": self.proc.pid}

    def stop(self) -> int | None:
        _stop(self.proc)
        return None if self.proc is None else self.proc.returncode


@ray.remote
class TrainerRankActor:
    """One trainer rank: the ``r1lab`` CLI in a subprocess on this actor's node (and GPU)."""

    def placement(self) -> dict:
        return _placement()

    def free_port(self) -> int:
        with socket.socket() as s:
            s.bind(("", 0))
            return s.getsockname()[1]

    def run(self, argv: list[str], env: dict, cwd: str) -> int:
        """Run the rank to its end; its output goes to this actor's log (forwarded to the driver)."""
        return subprocess.run(argv, env={**os.environ, **env}, cwd=cwd if os.path.isdir(cwd) else None).returncode


def bundles(trainers: int, workers: int, trainer_cpus: float, worker_cpus: float,
            gpus_per_trainer: float, gpus_per_worker: float) -> list[dict]:
    """The placement group's bundles: the trainer ranks first, then the rollout workers."""
    def bundle(cpus: float, gpus: float) -> dict:
        return {"CPU": cpus, **({"GPU": gpus} if gpus else {})}

    return [bundle(trainer_cpus, gpus_per_trainer)] * trainers + [bundle(worker_cpus, gpus_per_worker)] * workers


def on_bundle(actor_cls, pg, index: int, b: dict):
    """``actor_cls`` pinned to bundle ``index`` of ``pg``, asking for exactly that bundle's resources."""
    return actor_cls.options(
        num_cpus=b["CPU"], num_gpus=b.get("GPU", 0),
        scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index),
    ).remote()


def rank_envs(places: list[dict], master_port: int) -> list[dict]:
    """torch.distributed's variables for each trainer rank, from where Ray put the ranks.
    LOCAL_RANK counts the ranks on the same node. With GPUs, a rank sees its node's trainer GPUs
    in local-rank order (Ray shows an actor only its own), so ``cuda:LOCAL_RANK`` is its own GPU."""
    envs = []
    for rank, place in enumerate(places):
        peers = [r for r, p in enumerate(places) if p["node_id"] == place["node_id"]]
        env = {"RANK": str(rank), "WORLD_SIZE": str(len(places)), "LOCAL_RANK": str(peers.index(rank)),
               "LOCAL_WORLD_SIZE": str(len(peers)), "MASTER_ADDR": places[0]["node_ip"], "MASTER_PORT": str(master_port)}
        if place["gpus"]:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(places[r]["gpus"][0] for r in peers)
        envs.append(env)
    return envs


def trainer_overrides(overrides: list[str], addresses: list[str]) -> list[str]:
    """The user's overrides, a run directory shared by every rank (as launch/_run_dir.sh does),
    and the workers Ray started."""
    run_dir = [] if any(o.startswith(("run_dir=", "resume=")) for o in overrides) else [
        f"run_dir={os.environ.get('RUN_DIR', time.strftime('outputs/launch-%Y-%m-%d_%H-%M-%S'))}"]
    servers = ",".join(f"'{a}'" for a in addresses)
    return [*overrides, *run_dir, "rollout.placement=separate", f"rollout.servers=[{servers}]"]


def first_failure(refs: list) -> int:
    """Wait for every trainer rank; the first nonzero exit code (a dead actor counts as 1), else 0."""
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            code = ray.get(done[0])
        except ray.exceptions.RayError as err:
            print(f"r1lab ray: a trainer rank's actor died: {err}", file=sys.stderr, flush=True)
            code = 1
        if code:
            return code
    return 0


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        i = argv.index("--")
        argv, overrides = argv[:i], argv[i + 1:]
    else:
        overrides = []
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trainers", type=int, default=1, help="trainer ranks (data-parallel world size)")
    p.add_argument("--workers", type=int, default=1, help="rollout workers, a multiple of --trainers")
    p.add_argument("--trainer-cpus", type=float, default=1)
    p.add_argument("--worker-cpus", type=float, default=1, help="also the worker's torch threads (at least 1)")
    p.add_argument("--gpus-per-trainer", type=int, default=0, choices=(0, 1), help="a trainer rank is one process on one device")
    p.add_argument("--gpus-per-worker", type=float, default=0)
    p.add_argument("--worker-model", default=None,
                   help="the model the workers load: the GRPO stage's architecture and tokenizer (default: model.name_or_path)")
    p.add_argument("--worker-backend", default="hf", choices=("hf", "vllm"))
    p.add_argument("--worker-args", default="", help="more arguments for r1lab.rollout.worker, one string")
    p.add_argument("--strategy", default="PACK", choices=("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"))
    p.add_argument("--address", default="auto", help="Ray cluster address; auto: the running cluster; local: start one here")
    p.add_argument("--num-cpus", type=int, default=None, help="--address local: CPUs the local cluster offers")
    p.add_argument("--object-store-mb", type=int, default=200, help="--address local: object store size (nothing big goes through it)")
    p.add_argument("--timeout-s", type=float, default=600, help="for the placement group and the workers' start")
    p.add_argument("--layout", default=None, help="write where everything ran (JSON) to this file")
    args = p.parse_args(argv)
    if args.workers < 1 or args.trainers < 1 or args.workers % args.trainers:
        p.error(f"--workers {args.workers} must be a positive multiple of --trainers {args.trainers}")
    if any(o.split("=", 1)[0].lstrip("+~") in ("rollout.servers", "rollout.placement") for o in overrides):
        p.error("ray_grpo.py sets rollout.placement and rollout.servers itself: drop them from the overrides")
    args.worker_model = args.worker_model or worker_model(overrides)
    return args, overrides


def worker_model(overrides: list[str]) -> str:
    """The trainer's ``model.name_or_path``. The trainer pushes its weights before its first
    request, so a worker needs the model's architecture and tokenizer, not the stage's weights:
    the base model serves a GRPO stage that follows a cold start as well as its checkpoint does."""
    given = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("model.name_or_path=")]
    if not given or given[-1] == "tiny":
        raise SystemExit("ray_grpo.py: --worker-model is needed: a model with the GRPO stage's architecture and tokenizer "
                         "(for model.name_or_path=tiny, which is built at run start: <an earlier run>/base_model with the "
                         "same model.tiny.*, or a model saved by r1lab.models.tiny.save_tiny_model)")
    return given[-1]


def _interrupt(*_) -> None:
    """SIGTERM (a scheduler's stop) ends the run as Ctrl-C does: workers and ranks stopped. (Ray
    turns a SystemExit raised inside ray.wait into exit code 1; a KeyboardInterrupt passes.)"""
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args, overrides = parse_args(argv)
    if args.address == "local":
        ray.init(address="local", num_cpus=args.num_cpus, object_store_memory=args.object_store_mb * 2**20,
                 include_dashboard=False)
    else:
        ray.init(address=args.address)
    signal.signal(signal.SIGTERM, _interrupt)  # after ray.init, which sets its own
    env, cwd = forwarded_env(), os.getcwd()
    specs = bundles(args.trainers, args.workers, args.trainer_cpus, args.worker_cpus,
                    args.gpus_per_trainer, args.gpus_per_worker)
    pg = placement_group(specs, strategy=args.strategy)
    workers, trainers = [], []
    try:
        try:
            ray.get(pg.ready(), timeout=args.timeout_s)
        except ray.exceptions.GetTimeoutError:
            print(f"r1lab ray: the placement group's bundles {specs} ({args.strategy}) did not fit the cluster "
                  f"({ray.available_resources()} free) in {args.timeout_s:.0f} s", file=sys.stderr, flush=True)
            return 1
        print(f"r1lab ray: placement group {pg.id.hex()} ({args.strategy}): trainer bundles 0..{args.trainers - 1}, "
              f"worker bundles {args.trainers}..{args.trainers + args.workers - 1}", flush=True)
        workers = [on_bundle(RolloutWorkerActor, pg, args.trainers + i, specs[args.trainers + i]) for i in range(args.workers)]
        started = ray.get([w.start.remote(args.worker_model, args.worker_backend, max(1, int(args.worker_cpus)),
                                          shlex.split(args.worker_args), env, cwd) for w in workers], timeout=args.timeout_s)
        trainers = [on_bundle(TrainerRankActor, pg, r, specs[r]) for r in range(args.trainers)]
        places = ray.get([t.placement.remote() for t in trainers])
        envs = rank_envs(places, ray.get(trainers[0].free_port.remote()))
        argv_r1lab = [sys.executable, "-m", "r1lab.cli", *trainer_overrides(overrides, [w["address"] for w in started])]
        layout = {"gcs_address": ray.get_runtime_context().gcs_address, "placement_group": pg.id.hex(), "strategy": args.strategy,
                  "bundles_to_node_id": placement_group_table(pg)["bundles_to_node_id"],
                  "workers": [{**w, "bundle": args.trainers + i} for i, w in enumerate(started)],
                  "trainers": [{**p, "bundle": r, "env": e} for r, (p, e) in enumerate(zip(places, envs))],
                  "argv": argv_r1lab}
        for w in layout["workers"]:
            print(f"r1lab ray: rollout worker on bundle {w['bundle']} at {w['address']} (node {w['node_ip']})", flush=True)
        print(f"r1lab ray: {args.trainers} trainer rank(s), master {envs[0]['MASTER_ADDR']}:{envs[0]['MASTER_PORT']}: "
              f"{shlex.join(argv_r1lab[1:])}", flush=True)
        if args.layout:
            with open(args.layout, "w") as f:
                json.dump(layout, f, indent=1)
        code = first_failure([t.run.remote(argv_r1lab, {**env, **e}, cwd) for t, e in zip(trainers, envs)])
        print(f"r1lab ray: trainer exited with code {code}", flush=True)
        return code
    except KeyboardInterrupt:
        print("r1lab ray: interrupted; stopping the trainer ranks and rollout workers", file=sys.stderr, flush=True)
        return 130
    finally:
        for w in workers:
            try:
                ray.get(w.stop.remote(), timeout=30)
            except Exception:  # its actor is gone already (ray.kill below ends its subprocess too)
                pass
        for actor in workers + trainers:
            ray.kill(actor)
        remove_placement_group(pg)
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
