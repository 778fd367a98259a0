"""The stage cache: a stage already built from the same inputs is reused, not built again.

A sweep's arms often share their first stages (every arm of ``ablation_kl`` runs the same cold
start). Each stage gets a **key**, the sha256 of the canonical JSON of everything its result
depends on (``key_inputs``):

* ``stage``: its typed config, less the fields that change how it runs but not what it writes
  (``NOT_IN_KEY["stage"]``: resumable-checkpoint frequency). ``data: previous`` stays the word
  ``previous``: what it points to is covered by ``earlier``.
* ``run``: the run-level settings a stage reads: ``seed``, ``model``, ``task``, ``engine`` and
  ``rollout`` (less their performance-only fields, ``NOT_IN_KEY``), the data-parallel world size,
  and ``eval`` only when ``eval.every > 0`` (the in-training evaluation writes into the stage's
  metrics). Not in it: ``name``, ``run_dir``, ``resume``, ``tracking``, ``cache`` and the final
  evaluation's settings (the evaluation has a key of its own, ``eval_key``).
* ``earlier``: the keys of *every* earlier stage of the run. A stage can read more of them than its
  start model (``data: previous``; rejection's ``source: train_tail`` reads the GRPO stages' drawn
  prompts), so only a shared prefix of stages is reused; conservative, and always right.
* ``files``: the sha256 of every local file or folder a config string names (data files, a
  start-model path, task files, a reward model folder), so editing a data file misses.
* ``code``: r1lab's version, a hash of every ``r1lab/**/*.py``, torch's and transformers'
  versions, and the kind's run function (module, name and, outside r1lab, a hash of its file).
  Any code change invalidates every entry: that is what a code hash means.

A hub id is keyed by its name and ``model.revision``: pin a commit to make that exact.

**Entry**: ``<cache.dir>/<kind>-<key[:16]>/`` holds ``outputs/`` (every file the stage wrote in its
directory: ``checkpoint/``, ``dataset/``, ``metrics.jsonl``, ``prompts.json`` ...; not
``config.yaml``, ``done.json``, ``resume/``, ``wandb/``), ``eval.json`` (the pipeline's evaluation
of it, reused when ``eval_key`` matches) and ``manifest.json`` (the key, its inputs, each file's
size and sha256). It is built in ``.tmp-*`` beside and published by one ``rename``, so it is
whole or absent; a hit is verified file by file first, and an entry that fails (truncated or
missing file, no manifest) is logged, removed and built again.

**Reuse**: the entry's files are hard-linked into the stage directory (copied across file
systems): the run stays self-contained (deleting the cache breaks no run) at no extra disk. Stages
never rewrite a finished stage's files; one that did would change the entry too, which the next
hit's verification catches.

**Concurrency**: one lock file per key (``.locks/<kind>-<key16>.lock``, ``fcntl.lockf``). The job
holding it checks the entry and, on a miss, builds and publishes while holding it; a second job
waits (logging whom for) and then hits. The kernel drops the lock of a job that dies, ``kill -9``
included, so a killed builder leaves no stale lock to take over (on NFS, lockf needs lock
support: NFSv4 has it). Should two jobs publish anyway, the second ``rename`` fails and its copy
is dropped.

Nondeterminism: every stage is seeded, but a GPU stage (vLLM sampling, bf16 reductions) is not
bit-reproducible, so a hit gives the builder's sample of it; for an ablation's arms sharing one
cold start that is what a controlled comparison wants.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

from r1lab.config.schema import CacheConfig, RunConfig
from r1lab.engine import dist
from r1lab.engine.checkpoint import write_json_atomic

FORMAT = 1  # of manifest.json
SOURCE = Path(__file__).resolve().parent  # the r1lab package

# fields that change how a stage runs (speed, memory, timeouts, checkpoint frequency) but not
# what it writes; every other field of these sections is in the key
NOT_IN_KEY: dict[str, tuple[str, ...]] = {
    "stage": ("save_every", "keep_checkpoints"),
    "engine": ("num_threads", "collective_timeout_minutes", "cpu_shm_allreduce"),
    "rollout": ("gpu_memory_utilization", "max_num_seqs", "enforce_eager", "enable_sleep_mode", "enable_prefix_caching",
                "kv_cache_gb", "weight_sync_timeout_s", "servers", "worker_threads", "worker_timeout_s", "restart_workers"),
    "eval": ("initial",),
}
# the evaluation suites the in-training evaluation does not run: only in eval_key
FINAL_EVAL_ONLY = ("forgetting", "faithfulness", "robustness")
# the in-training evaluation's own fields: in a stage's key when eval.every > 0, never in eval_key
EVAL_DURING_TRAINING = ("every", "every_num_problems", "every_samples")
# what a stage directory holds that is not the stage's output (or is the pipeline's, cached apart)
NOT_CACHED = ("config.yaml", "done.json", "eval.json", "resume", "wandb")


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=4096)
def input_sha256(path: str, size: int, mtime_ns: int) -> str:
    """``file_sha256`` of an input file, hashed once per process while its size and mtime stay
    (every stage's key names the run's model path: a large local model is read once, not per stage)."""
    return file_sha256(Path(path))


def path_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's relative paths and file hashes."""

    def digest(p: Path) -> str:
        st = p.stat()
        return input_sha256(str(p.resolve()), st.st_size, st.st_mtime_ns)

    if path.is_file():
        return digest(path)
    lines = [f"{p.relative_to(path).as_posix()}\0{digest(p)}" for p in sorted(path.rglob("*")) if p.is_file()]
    return sha256("\n".join(lines))


def without(section: dict, names: tuple[str, ...]) -> dict:
    return {k: v for k, v in section.items() if k not in names}


def strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from strings(v)


def file_inputs(*sections: dict) -> dict[str, str]:
    """Config string -> content digest, for every string that names a local file or folder."""
    out = {}
    for value in sorted({s for section in sections for s in strings(section)}):
        if value in ("", ".", "..", "/") or "\n" in value:
            continue
        path = Path(value).expanduser()
        with contextlib.suppress(OSError):  # a name too long for a path, say
            if path.is_file() or path.is_dir():
                out[value] = path_digest(path)
    return out


@lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 over r1lab's Python sources (relative path and bytes of each)."""
    return sha256("\n".join(f"{p.relative_to(SOURCE).as_posix()}\0{file_sha256(p)}" for p in sorted(SOURCE.rglob("*.py"))))


def code_version(run_fn: Callable) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "none"

    fn = {"name": f"{getattr(run_fn, '__module__', '?')}.{getattr(run_fn, '__qualname__', repr(run_fn))}"}
    with contextlib.suppress(TypeError, OSError):
        where = Path(inspect.getsourcefile(run_fn)).resolve()
        if SOURCE not in where.parents:  # a plugin's or a test's stage: its file is not in source_digest
            fn["source"] = file_sha256(where)
    return {"r1lab": installed("r1lab"), "source": source_digest(), "torch": installed("torch"),
            "transformers": installed("transformers"), "run": fn}


def key_inputs(run: RunConfig, stage_cfg: Any, earlier: list[str], run_fn: Callable, world_size: int) -> dict:
    """Everything a stage's result depends on (module docstring); its sha256 is the key."""
    stage = without(asdict(stage_cfg), NOT_IN_KEY["stage"])
    model, task = asdict(run.model), asdict(run.task)
    settings = {
        "seed": run.seed, "model": model, "task": task, "world_size": world_size,
        "engine": without(asdict(run.engine), NOT_IN_KEY["engine"]),
        "rollout": without(asdict(run.rollout), NOT_IN_KEY["rollout"]),
    }
    if run.eval.every > 0:
        settings["eval"] = without(asdict(run.eval), NOT_IN_KEY["eval"] + FINAL_EVAL_ONLY)
    return {"kind": stage_cfg.kind, "stage": stage, "run": settings, "earlier": list(earlier),
            "files": file_inputs(stage, model, task), "code": code_version(run_fn)}


def stage_keys(run: RunConfig, stages: list, run_fns: dict[str, Callable], world_size: int) -> dict[str, tuple[str, dict]]:
    """Stage dirname -> (key, key inputs), each stage chained to the keys of all earlier ones."""
    out, earlier = {}, []
    for stage in stages:
        inputs = key_inputs(run, stage.cfg, earlier, run_fns[stage.cfg.kind], world_size)
        key = sha256(canonical(inputs))
        out[stage.dirname] = (key, inputs)
        earlier.append(key)
    return out


def eval_key(stage_key: str, run: RunConfig) -> str:
    """The key of the pipeline's evaluation of a stage's model: the stage's key and the final
    evaluation's settings (the in-training ones are in the stage's key already)."""
    settings = without(asdict(run.eval), NOT_IN_KEY["eval"] + EVAL_DURING_TRAINING)
    return sha256(canonical({"stage": stage_key, "eval": settings, "rollout": without(asdict(run.rollout), NOT_IN_KEY["rollout"])}))


class CorruptEntry(Exception):
    pass


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, dst)


def stage_files(stage_dir: Path) -> tuple[list[str], list[str]]:
    """The stage's output folders and files, relative to ``stage_dir`` (``NOT_CACHED`` left out)."""
    dirs, files = [], []
    for top in sorted(stage_dir.iterdir()):
        if top.name in NOT_CACHED or top.name.endswith(".tmp"):
            continue
        for p in [top, *sorted(top.rglob("*"))] if top.is_dir() else [top]:
            rel = p.relative_to(stage_dir).as_posix()
            (dirs if p.is_dir() else files).append(rel)
    return dirs, files


@dataclass
class StageCache:
    dir: Path
    log: Callable[[str], None] = print
    poll_s: float = 0.5  # how often a waiting job tries the lock again

    @classmethod
    def from_config(cls, cfg: CacheConfig, log: Callable[[str], None]) -> "StageCache | None":
        """The cache ``cfg`` asks for, or None (off, or no ``dir`` outside a sweep)."""
        return cls(Path(cfg.dir), log) if cfg.enabled and cfg.dir else None

    def entry(self, kind: str, key: str) -> Path:
        return self.dir / f"{kind}-{key[:16]}"

    @contextlib.contextmanager
    def locked(self, kind: str, key: str, label: str) -> Iterator[None]:
        """Hold the key's lock (rank 0 only; the other ranks wait with it, one collective a poll)."""
        handle = None
        if dist.is_main():
            path = self.dir / ".locks" / f"{kind}-{key[:16]}.lock"
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")
        try:
            told = False
            while True:
                waiting = False
                if handle is not None:
                    try:
                        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        waiting = True
                        if not told:
                            handle.seek(0)
                            self.log(f"stage {label}: waiting for the job building it ({handle.read().strip() or 'unknown'}; lock {path})")
                            told = True
                if dist.world_size() > 1:
                    waiting = dist.all_gather_objects(waiting)[0]
                if not waiting:
                    break
                time.sleep(self.poll_s)
            if handle is not None:
                handle.seek(0)
                handle.truncate()
                handle.write(canonical({"host": socket.gethostname(), "pid": os.getpid(), "since": round(time.time())}))
                handle.flush()
            yield
        finally:
            if handle is not None:
                handle.close()  # releases the lock

    def verify(self, entry: Path, key: str) -> dict:
        """The entry's manifest once every file it lists checks out; else ``CorruptEntry``."""
        try:
            manifest = json.loads((entry / "manifest.json").read_text())
        except (OSError, ValueError) as err:
            raise CorruptEntry(f"no readable manifest.json: {err.__class__.__name__}") from None
        if manifest.get("format") != FORMAT or manifest.get("key") != key:
            raise CorruptEntry("manifest of another format or key")
        listed = [(f"outputs/{rel}", meta) for rel, meta in manifest["files"].items()]
        if manifest.get("eval"):
            listed.append(("eval.json", manifest["eval"]))
        for rel, meta in listed:
            path = entry / rel
            if not path.is_file():
                raise CorruptEntry(f"{rel} is missing")
            if path.stat().st_size != meta["size"]:
                raise CorruptEntry(f"{rel} has {path.stat().st_size} bytes, the manifest says {meta['size']}")
            if file_sha256(path) != meta["sha256"]:
                raise CorruptEntry(f"{rel} does not match its sha256")
        for rel in manifest["dirs"]:
            if not (entry / "outputs" / rel).is_dir():
                raise CorruptEntry(f"folder {rel} is missing")
        return manifest

    def lookup(self, kind: str, key: str, label: str) -> dict | None:
        """The verified manifest of the key's entry; None on a miss (a corrupt entry is removed)."""
        entry = self.entry(kind, key)
        if not entry.exists():
            return None
        try:
            return self.verify(entry, key)
        except CorruptEntry as err:
            self.log(f"stage {label}: cache entry {entry} is corrupt ({err}): removed, building it again")
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def restore(self, manifest: dict, entry: Path, stage_dir: Path, eval_key: str) -> None:
        """Put the entry's outputs (and its evaluation, when ``eval_key`` matches) into ``stage_dir``,
        replacing whatever an interrupted build left there (``config.yaml`` stays)."""
        for old in stage_dir.iterdir():
            if old.name == "config.yaml":
                continue
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        for rel in manifest["dirs"]:
            (stage_dir / rel).mkdir(parents=True, exist_ok=True)
        for rel in manifest["files"]:
            link_or_copy(entry / "outputs" / rel, stage_dir / rel)
        if manifest.get("eval") and manifest["eval"]["key"] == eval_key:
            result = json.loads((entry / "eval.json").read_text())
            if "checkpoint" in manifest["dirs"]:
                result["model"] = str(stage_dir / "checkpoint")
            write_json_atomic(stage_dir / "eval.json", result)

    def publish(self, stage_dir: Path, kind: str, key: str, inputs: dict, eval_key: str, label: str) -> bool:
        """Copy the built stage into a new entry (hard links); False when another job's entry is there."""
        entry = self.entry(kind, key)
        tmp = self.dir / f".tmp-{entry.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        dirs, files = stage_files(stage_dir)
        manifest = {"format": FORMAT, "key": key, "kind": kind, "inputs": inputs, "dirs": dirs, "files": {}, "eval": None,
                    "built": {"stage_dir": str(stage_dir), "host": socket.gethostname(), "time": round(time.time())}}
        (tmp / "outputs").mkdir(parents=True)
        for rel in dirs:
            (tmp / "outputs" / rel).mkdir(parents=True, exist_ok=True)
        for rel in files:
            link_or_copy(stage_dir / rel, tmp / "outputs" / rel)
            manifest["files"][rel] = {"size": (stage_dir / rel).stat().st_size, "sha256": file_sha256(tmp / "outputs" / rel)}
        evaluation = stage_dir / "eval.json"
        if evaluation.is_file() and "reused_from" not in json.loads(evaluation.read_text()):
            shutil.copy2(evaluation, tmp / "eval.json")  # copied: the pipeline may rewrite its own
            manifest["eval"] = {"key": eval_key, "size": evaluation.stat().st_size, "sha256": file_sha256(tmp / "eval.json")}
        with open(tmp / "manifest.json", "w") as f:  # last: an entry with a manifest is complete
            f.write(json.dumps(manifest, indent=1, default=str))
            f.flush()
            os.fsync(f.fileno())
        try:
            tmp.rename(entry)  # atomic; fails when the entry exists (a directory is not renamed over a full one)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            self.log(f"stage {label}: {entry} was published by another job meanwhile; this build is kept, not cached")
            return False
        self.log(f"stage {label}: cached as {entry}")
        return True


@dataclass
class Claim:
    """One stage's use of the cache inside ``claim``: ``hit`` says whether it was restored;
    ``record`` goes into its ``done.json``."""

    hit: bool = False
    record: dict = field(default_factory=dict)
    publish: Callable[[], None] = lambda: None  # after the build and its evaluation (a miss only)


@contextlib.contextmanager
def claim(cache: StageCache | None, stage, key_and_inputs: tuple[str, dict] | None, stage_dir: Path, run: RunConfig) -> Iterator[Claim]:
    """Lock the stage's key, restore its entry into ``stage_dir`` on a hit, or let the caller build
    it and ``publish`` it, all under the lock. Without a cache: a miss that publishes nothing."""
    if cache is None or key_and_inputs is None:
        yield Claim()
        return
    key, inputs = key_and_inputs
    kind, label, entry = stage.cfg.kind, f"{stage.dirname} ({stage.cfg.kind})", cache.entry(stage.cfg.kind, key)
    ev_key = eval_key(key, run)
    with cache.locked(kind, key, label):
        manifest = cache.lookup(kind, key, label) if dist.is_main() else None
        hit = manifest is not None
        if dist.world_size() > 1:
            hit = dist.all_gather_objects(hit)[0]
        if hit:
            if dist.is_main():
                cache.restore(manifest, entry, stage_dir, ev_key)
            dist.barrier("stage cache restore")
            cache.log(f"stage {label}: cache hit {key[:16]} ({entry})")
            yield Claim(hit=True, record={"key": key, "hit": True, "entry": str(entry)})
            return
        cache.log(f"stage {label}: cache miss {key[:16]}")

        def publish() -> None:
            if dist.is_main():
                cache.publish(stage_dir, kind, key, inputs, ev_key, label)
            dist.barrier("stage cache publish")

        yield Claim(hit=False, record={"key": key, "hit": False, "entry": str(entry)}, publish=publish)
