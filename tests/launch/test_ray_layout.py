"""launch/ray_grpo.py: trainer ranks and rollout workers placed by one Ray placement group.

The slow tests start a local Ray cluster (2 CPUs, a 100 MB object store, no dashboard) through the
script itself, run GRPO on a micro model with its rollouts on a Ray-placed worker, and check that
every process the run started (workers, actors, Ray's own) is gone when the script exits.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'r1lab[ray]'")

from tests.helpers import MICRO, REPO  # noqa: E402

SCRIPT = REPO / "launch" / "ray_grpo.py"
_spec = importlib.util.spec_from_file_location("ray_grpo", SCRIPT)
ray_grpo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ray_grpo)


def test_ready_line_matches_the_worker():
    from r1lab.rollout.worker import READY

    assert ray_grpo.READY == READY


def test_rank_envs_count_local_ranks_per_node_and_order_their_gpus():
    places = [{"node_id": "a", "node_ip": "10.0.0.1", "gpus": ["3"]}, {"node_id": "b", "node_ip": "10.0.0.2", "gpus": ["0"]},
              {"node_id": "a", "node_ip": "10.0.0.1", "gpus": ["1"]}]
    envs = ray_grpo.rank_envs(places, 29400)
    assert [(e["RANK"], e["LOCAL_RANK"], e["LOCAL_WORLD_SIZE"]) for e in envs] == [("0", "0", "2"), ("1", "0", "1"), ("2", "1", "2")]
    assert {e["MASTER_ADDR"] for e in envs} == {"10.0.0.1"} and {e["WORLD_SIZE"] for e in envs} == {"3"}
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["3,1", "0", "3,1"]  # cuda:LOCAL_RANK is the rank's own GPU
    cpu = ray_grpo.rank_envs([{"node_id": "a", "node_ip": "h", "gpus": []}], 1)
    assert "CUDA_VISIBLE_DEVICES" not in cpu[0]


def test_trainer_overrides_add_the_servers_and_one_run_dir():
    out = ray_grpo.trainer_overrides(["recipe=r1_countdown_tiny"], ["10.0.0.1:5601", "10.0.0.2:5601"])
    assert out[0] == "recipe=r1_countdown_tiny" and out[1].startswith("run_dir=outputs/launch-")
    assert out[2:] == ["rollout.placement=separate", "rollout.servers=['10.0.0.1:5601','10.0.0.2:5601']"]
    assert ray_grpo.trainer_overrides(["run_dir=/x"], ["h:1"])[:1] == ["run_dir=/x"]


def test_arguments(capsys):
    args, overrides = ray_grpo.parse_args(["--workers", "2", "--", "recipe=r1_math", "model.name_or_path=/m"])
    assert (args.trainers, args.workers, args.worker_model, overrides) == (1, 2, "/m", ["recipe=r1_math", "model.name_or_path=/m"])
    for bad in (["--trainers", "2", "--workers", "3", "--worker-model", "/m"],
                ["--worker-model", "/m", "--", "rollout.servers=[h:1]"]):
        with pytest.raises(SystemExit):
            ray_grpo.parse_args(bad)
    with pytest.raises(SystemExit, match="--worker-model is needed"):
        ray_grpo.parse_args(["--", "recipe=r1_countdown_tiny"])  # model.name_or_path=tiny is built at run start


def _micro_model(path: Path) -> Path:
    """The micro model MICRO describes, saved once: the trainer starts from it and the worker serves it."""
    from r1lab.config.schema import TinyModelConfig
    from r1lab.models.tiny import save_tiny_model

    sizes = {o.split("=")[0].removeprefix("model.tiny."): int(o.split("=")[1]) for o in MICRO if o.startswith("model.tiny.")}
    return save_tiny_model(TinyModelConfig(**sizes), path)


def _run_layout(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, dict]:
    model = _micro_model(tmp_path / "model")
    layout = tmp_path / "layout.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
           "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    argv = [sys.executable, str(SCRIPT), "--address", "local", "--num-cpus", "2", "--object-store-mb", "100",
            "--trainers", "1", "--workers", "1", "--trainer-cpus", "1", "--worker-cpus", "1",
            "--worker-model", str(model), "--layout", str(layout), "--timeout-s", "240", "--",
            *MICRO, "stages.cold_start=null", "eval.initial=false", f"model.name_or_path={model}",
            f"run_dir={tmp_path / 'run'}", *overrides]
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=420)
    assert layout.exists(), out.stdout[-3000:] + out.stderr[-3000:]
    return out, json.loads(layout.read_text())


def _assert_all_stopped(layout: dict) -> None:
    pids = [w["pid"] for w in layout["workers"]] + [a["actor_pid"] for a in layout["workers"] + layout["trainers"]]
    assert [p for p in pids if Path(f"/proc/{p}").exists()] == []
    gcs = f"gcs-address={layout['gcs_address']}"
    left = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and gcs in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                left.append(proc.name)
        except OSError:
            pass
    assert left == [], f"Ray processes of the test's cluster still running: {left}"


@pytest.mark.slow
def test_grpo_with_a_ray_placed_rollout_worker(tmp_path):
    out, layout = _run_layout(tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "r1lab ray: trainer exited with code 0" in out.stdout
    # both actors ran inside the one placement group, each on the node that holds its bundle
    (worker,), (trainer,) = layout["workers"], layout["trainers"]
    assert worker["placement_group"] == trainer["placement_group"] == layout["placement_group"]
    assert (trainer["bundle"], worker["bundle"]) == (0, 1)
    for actor in (worker, trainer):
        assert actor["node_id"] == layout["bundles_to_node_id"][str(actor["bundle"])]
    assert trainer["env"]["RANK"] == "0" and trainer["env"]["WORLD_SIZE"] == "1"
    assert layout["argv"][-2:] == ["rollout.placement=separate", f"rollout.servers=['{worker['address']}']"]
    # GRPO sampled on that worker: the async/ figures of two steps
    rows = [json.loads(x) for x in (tmp_path / "run/stages/01-grpo/metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert all("async/trainer_wait_s" in r and r["async/worker0/tokens_per_s"] > 0 for r in rows)
    _assert_all_stopped(layout)


@pytest.mark.slow
def test_a_failing_trainer_rank_fails_the_launch_and_stops_the_workers(tmp_path):
    out, layout = _run_layout(tmp_path, "stages.grpo.lr=not-a-number")
    assert out.returncode != 0
    assert f"r1lab ray: trainer exited with code {out.returncode}" in out.stdout
    _assert_all_stopped(layout)
