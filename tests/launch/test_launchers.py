"""Each launcher, run with DRY_RUN=1, prints the exact command it would run (shell-quoted)."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch"


def dry_run(script: str, *args: str, env: dict | None = None) -> list[str]:
    full_env = {**os.environ, "DRY_RUN": "1", **(env or {})}
    proc = subprocess.run(["bash", str(LAUNCH / script), *args], env=full_env, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return shlex.split(proc.stdout)


def run_dirs(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("run_dir=")]


def test_deepspeed_single_node():
    argv = dry_run("deepspeed.sh", "recipe=r1_countdown_tiny", "engine=zero2", env={"NUM_GPUS": "8"})
    assert argv[:8] == ["deepspeed", "--num_gpus", "8", "--master_port", "29500", "--no_local_rank",
                        "--module", "r1lab.cli"]
    assert argv[8:10] == ["recipe=r1_countdown_tiny", "engine=zero2"]
    # one run directory for all ranks, fixed by the launcher
    assert len(run_dirs(argv)) == 1 and run_dirs(argv)[0].startswith("run_dir=outputs/launch-")


def test_torchrun_single_node_keeps_the_callers_run_dir():
    argv = dry_run("torchrun.sh", "recipe=r1_countdown_tiny", "run_dir=/tmp/x", env={"NPROC": "2"})
    assert argv == ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "r1lab.cli",
                    "recipe=r1_countdown_tiny", "run_dir=/tmp/x"]
    resumed = dry_run("torchrun.sh", "resume=/tmp/x", env={"NPROC": "2"})
    assert run_dirs(resumed) == [] and resumed[-1] == "resume=/tmp/x"


def test_multinode_hostfile(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two nodes\nnode-a slots=8\nnode-b slots=8\n")
    argv = dry_run("multinode_hostfile.sh", "recipe=r1_countdown_tiny", "engine=zero3",
                   env={"HOSTFILE": str(hostfile), "RUN_DIR": "/shared/run1"})
    assert argv == ["deepspeed", "--hostfile", str(hostfile), "--master_addr", "node-a", "--master_port", "29500",
                    "--no_local_rank", "--module", "r1lab.cli", "recipe=r1_countdown_tiny", "engine=zero3",
                    "run_dir=/shared/run1"]


def test_slurm_one_torchrun_per_node(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] && printf "gpu-07\\ngpu-08\\n"\n')
    scontrol.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-[07-08]", "SLURM_NNODES": "2",
           "SLURM_NODEID": "0", "SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": str(ROOT)}
    argv = dry_run("slurm.sbatch", "recipe=r1_countdown_tiny", "stages.grpo.lr=1e-6", "eval.note=two words", env=env)
    assert argv[:7] == ["srun", "--nodes", "2", "--ntasks-per-node", "1", "--kill-on-bad-exit=1", "bash"]
    assert argv[7] == "-c"
    node = shlex.split(argv[8])
    assert node == ["torchrun", "--nnodes", "2", "--node_rank", "$SLURM_NODEID", "--nproc_per_node", "8",
                    "--master_addr", "gpu-07", "--master_port", "29500", "-m", "r1lab.cli",
                    "recipe=r1_countdown_tiny", "stages.grpo.lr=1e-6", "eval.note=two words",
                    "run_dir=outputs/slurm-4242"]


def test_cli_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "r1lab.cli", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "r1lab" in proc.stdout


@pytest.mark.parametrize("script", ["deepspeed.sh", "torchrun.sh", "multinode_hostfile.sh", "slurm.sbatch"])
def test_launchers_hold_no_python(script):
    text = (LAUNCH / script).read_text()
    assert "python -c" not in text and "import " not in text
