"""``rollout.placement=separate``: GRPO's rollouts on worker processes, one-step-off, exact resume, faults.

Through the real CLI on a micro model (a random model never solves Countdown, so the entropy
term gives every step a gradient that depends on the samples):

* ``max_staleness=0`` reproduces the colocated run's per-step figures to 1e-6 (the same samples);
* ``max_staleness=1`` is one-step-off: every step after the first trains on a round written by
  the previous version, and the ``async/*`` figures are logged;
* kill -9 with a round in flight, then ``resume=``: the uninterrupted async run's figures;
* a worker that dies or goes silent stops the trainer with one line naming it and its address;
  with ``restart_workers`` it is started again and the run finishes.

And directly, on a real worker process: pushed weights arrive exactly (the worker's greedy
tokens equal the trainer's own sampler on the same weights), ``AheadRounds`` keeps at most
``k`` versions of lag, and bad input stops at start-up with a clear message.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from r1lab.engine.checkpoint import step_dirname
from tests.helpers import MICRO, run_cli

pytestmark = pytest.mark.slow

R1LAB = Path(sys.executable).with_name("r1lab")
STAGE = "stages/01-grpo"
_RDZV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
ENV = {**{k: v for k, v in os.environ.items() if k not in _RDZV}, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu"}
FIGURES = ("loss", "entropy", "grad_norm", "response_length", "reward")


def grpo_run(steps: int, *extra: str) -> list[str]:
    """A GRPO-only run of the micro model with the entropy term on from step 0."""
    return [*(o for o in MICRO if not o.startswith("stages.grpo.steps=")), f"stages.grpo.steps={steps}",
            "stages.cold_start=null", "eval.initial=false", "eval.num_problems=2", "eval.samples=1",
            "stages.grpo.entropy_coef=-0.5", "stages.grpo.entropy_from_step=0", "stages.grpo.entropy_sample_fraction=1.0",
            "tracking.wandb.mode=disabled", *extra]


def rows(run_dir: Path) -> dict[int, dict]:
    """Per-step metrics; a step logged twice (before a kill and after the resume) keeps the last."""
    out = {}
    for line in (run_dir / STAGE / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out[row["step"]] = row
    return out


def assert_same_figures(a: dict[int, dict], b: dict[int, dict]) -> None:
    assert sorted(a) == sorted(b)
    for step in a:
        for key in FIGURES:
            assert b[step][key] == pytest.approx(a[step][key], rel=1e-6, abs=1e-6), (step, key)


@pytest.fixture(scope="module")
def colocated(tmp_path_factory) -> dict[int, dict]:
    run_dir = tmp_path_factory.mktemp("colocated") / "run"
    out = run_cli(*grpo_run(4), f"run_dir={run_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    return rows(run_dir)


def test_staleness_0_reproduces_the_colocated_run(colocated, tmp_path):
    out = run_cli(*grpo_run(4, "rollout.placement=separate", "rollout.max_staleness=0"), f"run_dir={tmp_path / 'run'}")
    assert out.returncode == 0, out.stderr[-3000:]
    separate = rows(tmp_path / "run")
    assert_same_figures(colocated, separate)
    assert [r["async/version_lag"] for r in separate.values()] == [0.0] * 4
    assert all(r["grad_norm"] > 0 for r in separate.values())  # the samples mattered: there was a gradient


def test_staleness_1_trains_one_step_off_and_logs_the_async_figures(colocated, tmp_path):
    out = run_cli(*grpo_run(4, "rollout.placement=separate", "rollout.max_staleness=1"), f"run_dir={tmp_path / 'run'}")
    assert out.returncode == 0, out.stderr[-3000:]
    async_rows = rows(tmp_path / "run")
    # round 0 is written by version 0 and consumed at version 0; every later round one version behind
    assert [r["async/version_lag"] for r in async_rows.values()] == [0.0, 1.0, 1.0, 1.0]
    assert [r["async/version_lag_share/1"] for r in async_rows.values()] == [0.0, 1.0, 1.0, 1.0]
    assert_same_figures({1: colocated[1]}, {1: async_rows[1]})  # the first step is on-policy either way
    assert async_rows[2]["grad_norm"] != pytest.approx(colocated[2]["grad_norm"], rel=1e-9)  # then it is not
    last = async_rows[4]
    for key in ("async/trainer_wait_s", "async/worker0/idle_s", "async/worker_idle_fraction", "async/weight_sync_s"):
        assert last[key] >= 0
    assert last["async/worker0/tokens_per_s"] > 0
    assert last["async/rounds_in_flight"] == 1.0
    # the micro model's fp32 weights, every parameter under each of its names (the tied embedding twice)
    assert last["async/weight_sync_bytes"] > 4 * 32 * 64


def _start(run_dir: Path, *extra: str, resume: bool = False) -> subprocess.Popen:
    where = f"resume={run_dir}" if resume else f"run_dir={run_dir}"
    return subprocess.Popen([str(R1LAB), *grpo_run(8, "rollout.placement=separate", "rollout.max_staleness=1",
                                                   "++stages.grpo.save_every=2", *extra), where],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, expect: int = 0, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == expect, f"exit status {proc.returncode}, expected {expect}:\n{out[-5000:]}"
    return out


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the condition held:\n{proc.stdout.read()[-5000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.01)


def test_kill_9_with_a_round_in_flight_then_resume_matches_the_uninterrupted_async_run(tmp_path):
    straight = tmp_path / "straight"
    _finish(_start(straight))
    run_dir = tmp_path / "run"
    proc = _start(run_dir)
    saved = run_dir / STAGE / "resume" / step_dirname(4) / "r1lab_state.json"
    _wait_for(saved.exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (run_dir / STAGE / "done.json").exists(), "the run finished before kill -9; make it longer"
    in_flight = json.loads((saved.parent / "rounds_in_flight-rank0.json").read_text())["rounds_in_flight"]
    assert list(in_flight) == ["4"]  # the round sampled ahead for step 5, by version 3, saved with the checkpoint
    assert in_flight["4"]["results"][0][0] == 3

    _finish(_start(run_dir, resume=True))
    assert_same_figures(rows(straight), rows(run_dir))
    assert [r["async/version_lag"] for r in rows(run_dir).values()] == [0.0] + [1.0] * 7


# --- faults -------------------------------------------------------------------------------------


def _worker(model: str, *extra: str) -> tuple[subprocess.Popen, str]:
    from r1lab.rollout.worker import READY

    proc = subprocess.Popen([sys.executable, "-m", "r1lab.rollout.worker", "--model", model, "--threads", "1",
                             "--heartbeat-s", "0.5", *extra], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith(READY), proc.stderr.read()[-3000:]
    return proc, line[len(READY):].strip()


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory) -> str:
    """The model MICRO's ``model.name_or_path=tiny`` builds, saved where a worker can load it."""
    from r1lab.config.schema import TinyModelConfig
    from r1lab.models.tiny import save_tiny_model

    tiny = {o.split("=")[0].removeprefix("model.tiny."): int(o.split("=")[1]) for o in MICRO if o.startswith("model.tiny.")}
    return str(save_tiny_model(TinyModelConfig(**tiny), tmp_path_factory.mktemp("micro") / "model"))


def _trainer_on(run_dir: Path, model: str, address: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(R1LAB), *grpo_run(40, "rollout.placement=separate", f"rollout.servers=[{address}]",
                                                    f"model.name_or_path={model}", *extra), f"run_dir={run_dir}"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _first_step_logged(run_dir: Path):
    path = run_dir / STAGE / "metrics.jsonl"
    return lambda: path.exists() and path.read_text().strip()


def test_a_worker_that_dies_stops_the_trainer_naming_it(tmp_path, micro_dir):
    worker, address = _worker(micro_dir)
    trainer = _trainer_on(tmp_path / "run", micro_dir, address)
    _wait_for(_first_step_logged(tmp_path / "run"), trainer)
    worker.kill()
    began = time.time()
    out = _finish(trainer, expect=2, timeout=120)  # r1lab: error: <one line>
    assert time.time() - began < 60
    assert f"rollout worker 0 at {address} stopped" in out
    assert not (tmp_path / "run" / STAGE / "done.json").exists()


def test_a_worker_that_stops_answering_stops_the_trainer_within_the_timeout(tmp_path, micro_dir):
    worker, address = _worker(micro_dir)
    trainer = _trainer_on(tmp_path / "run", micro_dir, address, "rollout.worker_timeout_s=3")
    _wait_for(_first_step_logged(tmp_path / "run"), trainer)
    worker.send_signal(signal.SIGSTOP)  # alive, silent: no replies, no heartbeats
    try:
        began = time.time()
        out = _finish(trainer, expect=2, timeout=120)  # r1lab: error: <one line>
        assert time.time() - began < 60
        assert f"rollout worker 0 at {address} stopped answering: nothing heard for" in out
        assert "rollout.worker_timeout_s=3" in out
    finally:
        worker.kill()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,ppid=,args=", "-e"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if int(line.split()[1]) == pid and "r1lab.rollout.worker" in line]


def test_restart_workers_starts_a_dead_worker_again_and_the_run_finishes(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([str(R1LAB), *grpo_run(12, "rollout.placement=separate", "rollout.max_staleness=1",
                                                   "rollout.restart_workers=true"), f"run_dir={run_dir}"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(_first_step_logged(run_dir), proc)
    workers = _children(proc.pid)
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    out = _finish(proc)
    assert "rollout worker 0 at 127.0.0.1:" in out and "restarted it as rollout worker 0" in out
    assert sorted(rows(run_dir)) == list(range(1, 13))


# --- start-up ------------------------------------------------------------------------------------


def test_a_bad_address_stops_at_start_up_naming_it(tmp_path, micro_dir):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run_cli(*grpo_run(2, "rollout.placement=separate", f"rollout.servers=[127.0.0.1:{port}]",
                            f"model.name_or_path={micro_dir}"), f"run_dir={tmp_path / 'run'}")
    assert out.returncode != 0
    assert f"rollout worker 0 at 127.0.0.1:{port}: cannot connect" in out.stderr
    out = run_cli(*grpo_run(2, "rollout.placement=separate", "rollout.servers=[localhost]"), f"run_dir={tmp_path / 'b'}")
    assert out.returncode != 0 and "rollout.servers: 'localhost' is not host:port" in out.stderr
    out = run_cli(*grpo_run(2, "rollout.max_staleness=1"), f"run_dir={tmp_path / 'c'}")
    assert out.returncode != 0 and "set rollout.placement=separate" in out.stderr


def test_a_port_in_use_stops_the_worker_with_a_message(micro_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "r1lab.rollout.worker", "--model", micro_dir, "--port", str(port)],
                             env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "--port" in out.stderr


def test_a_worker_serving_another_model_or_protocol_is_refused(tmp_path, micro_dir):
    from r1lab.config.schema import TinyModelConfig
    from r1lab.models.tiny import save_tiny_model
    from r1lab.rollout.wire import PROTOCOL_VERSION

    other = str(save_tiny_model(TinyModelConfig(hidden_size=48, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64),
                                tmp_path / "other"))
    worker, address = _worker(other)
    try:
        out = run_cli(*grpo_run(2, "rollout.placement=separate", f"rollout.servers=[{address}]",
                                f"model.name_or_path={micro_dir}"), f"run_dir={tmp_path / 'run'}")
        assert out.returncode != 0
        assert f"rollout worker 0 at {address}" in out.stderr and "serves another model" in out.stderr
        from r1lab.rollout.remote import RolloutWorkerError, WorkerConnection

        conn = WorkerConnection(0, address, timeout_s=30)  # the worker outlived the refused trainer
        with pytest.raises(RolloutWorkerError, match=f"trainer speaks rollout protocol {PROTOCOL_VERSION + 1}, this worker {PROTOCOL_VERSION}"):
            conn.call({"type": "hello", "protocol": PROTOCOL_VERSION + 1})
        conn.close()
    finally:
        worker.kill()


# --- on a real worker, without the CLI -----------------------------------------------------------------


@pytest.fixture
def remote(micro_dir):
    """A trainer-side model and a `RemoteEngine` on one embedded worker; ``state["version"]`` is the policy version."""
    from r1lab.config.schema import RolloutConfig
    from r1lab.models.load import load_model, load_tokenizer
    from r1lab.rollout.engine import Policy
    from r1lab.rollout.remote import RemoteEngine

    model, tokenizer = load_model(micro_dir, dtype=torch.float32).eval(), load_tokenizer(micro_dir)
    state = {"version": 0}
    policy = Policy(module=model, path=micro_dir, version=lambda: state["version"])
    engine = RemoteEngine(RolloutConfig(placement="separate"), policy, tokenizer, seed=0)
    yield model, tokenizer, engine, state
    engine.close()


def test_pushed_weights_arrive_exactly(remote):
    from r1lab.rollout.engine import Policy, SamplingParams
    from r1lab.rollout.hf_engine import HFEngine

    model, tokenizer, engine, state = remote
    prompts = [tokenizer("Use 3 5 7 to make 22.", add_special_tokens=False).input_ids] * 2
    greedy = SamplingParams(max_new_tokens=16, temperature=0.0, stop=[])
    local = HFEngine(Policy(module=model, path=""), tokenizer)
    before = [c.token_ids for c in engine.generate(prompts, greedy, None)]
    assert before == [c.token_ids for c in local.generate(prompts, greedy, None)]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
    state["version"] = 7
    pending = engine.submit(prompts, greedy, None)
    completions, results = pending.result()
    assert results[0].version == 7
    assert [c.token_ids for c in completions] == [c.token_ids for c in local.generate(prompts, greedy, None)] != before
    sampled = SamplingParams(max_new_tokens=16, temperature=1.0, stop=[])
    assert [c.token_ids for c in engine.generate(prompts, sampled, 5)] == [c.token_ids for c in local.generate(prompts, sampled, 5)]


def test_ahead_rounds_never_lag_more_than_k_versions(remote):
    from r1lab.rollout.engine import SamplingParams
    from r1lab.rollout.groups import GroupRequest, score_groups
    from r1lab.rollout.rounds import AheadRounds, RoundSpec

    model, tokenizer, engine, state = remote
    prompt = tokenizer("Use 3 5 7 to make 22.", add_special_tokens=False).input_ids

    def spec(draw: int) -> RoundSpec:
        request = GroupRequest(2, [prompt, prompt], {"numbers": [[3, 5, 7]] * 2, "target": [22] * 2}, None)
        return RoundSpec(request, SamplingParams(max_new_tokens=8, temperature=1.0, stop=[]), seed=draw)

    def score(request, completions, seconds):
        return score_groups(request, completions, "none", {"countdown": 1.0}, False, seconds)

    rounds = AheadRounds(engine, spec, score, max_staleness=2, version=lambda: state["version"])
    written_by = []
    for step in range(6):
        written_by.append(int(rounds.get(step).policy_versions[0]))
        state["version"] += 1  # one optimizer step per round
    # rounds 0-2 were sent before any update; from then on each round is two versions behind
    assert written_by == [0, 0, 0, 1, 2, 3]
    figures = rounds.step_figures()
    assert figures["async/version_lag_max"] == 2.0 and figures["async/rounds_in_flight"] == 2.0
    assert figures["async/version_lag_share/0"] == pytest.approx(1 / 6)
    saved = rounds.checkpoint()
    assert sorted(saved["rounds_in_flight"]) == ["6", "7"]
    restored = AheadRounds(engine, spec, score, max_staleness=2, version=lambda: state["version"])
    restored.restore(json.loads(json.dumps(saved)))
    again = restored.get(6)
    assert again.completions == rounds.get(6).completions and int(again.policy_versions[0]) == 4


def test_a_worker_idle_longer_than_the_timeout_is_not_a_failure(micro_dir):
    from r1lab.config.schema import RolloutConfig
    from r1lab.models.load import load_model, load_tokenizer
    from r1lab.rollout.engine import Policy, SamplingParams

    from r1lab.rollout.remote import RemoteEngine

    model, tokenizer = load_model(micro_dir, dtype=torch.float32).eval(), load_tokenizer(micro_dir)
    engine = RemoteEngine(RolloutConfig(placement="separate", worker_timeout_s=1.0), Policy(module=model, path=micro_dir), tokenizer, seed=0)
    try:
        prompts = [tokenizer("Use 3 5 7 to make 22.", add_special_tokens=False).input_ids]
        greedy = SamplingParams(max_new_tokens=4, temperature=0.0, stop=[])
        first = engine.generate(prompts, greedy, None)
        time.sleep(2.5)  # idle, silent: the trainer was busy elsewhere
        assert engine.generate(prompts, greedy, None)[0].token_ids == first[0].token_ids
        # a request that keeps the worker busy for longer than the timeout: its heartbeats keep it alive
        longer = SamplingParams(max_new_tokens=128, temperature=1.0, stop=[])
        assert len(engine.generate(prompts * 2048, longer, 1)) == 2048  # seconds: several heartbeats
    finally:
        engine.close()


@pytest.mark.distributed
def test_two_data_parallel_ranks_each_with_its_own_worker_reproduce_the_colocated_run(tmp_path):
    """ZeRO-2 over 2 ranks: each rank pushes to and samples from its own worker; at k=0 the run is the colocated one."""
    torchrun = Path(sys.executable).with_name("torchrun")
    figures = {}
    for name, extra in (("colocated", []), ("separate", ["rollout.placement=separate", "rollout.max_staleness=0"])):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args = [*grpo_run(3, "engine=zero2", "stages.grpo.prompts_per_step=4", *extra), f"run_dir={tmp_path / name}"]
        out = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(port), "-m", "r1lab.cli", *args],
                             env=ENV, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
        figures[name] = rows(tmp_path / name)
    assert_same_figures(figures["colocated"], figures["separate"])
    assert all(r["grad_norm"] > 0 for r in figures["separate"].values())
