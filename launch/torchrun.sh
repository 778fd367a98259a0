#!/usr/bin/env bash
# One node, N processes (GPUs, or CPU processes over gloo), PyTorch's torchrun.
#
#   NPROC=8 launch/torchrun.sh recipe=r1_countdown_tiny engine=zero3
#   NPROC=2 launch/torchrun.sh recipe=r1_countdown_tiny engine=zero2 engine.precision=fp32   # CPU
#   DRY_RUN=1 launch/torchrun.sh recipe=...         # print the command instead of running it
#
# Env: NPROC (default: GPUs nvidia-smi lists, else 1), RUN_DIR. --standalone picks a free port.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_run_dir.sh"
NPROC="${NPROC:-$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)}"
[[ "$NPROC" -ge 1 ]] 2>/dev/null || NPROC=1
cmd=(torchrun --standalone --nproc_per_node "$NPROC" -m r1lab.cli "$@" $(r1lab_run_dir_args "$@"))
if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "${cmd[@]}"; echo; else exec "${cmd[@]}"; fi
