#!/usr/bin/env bash
# One node, N GPUs, DeepSpeed's launcher. Arguments are r1lab (Hydra) overrides.
#
#   NUM_GPUS=8 launch/deepspeed.sh recipe=r1_countdown_tiny engine=zero2
#   DRY_RUN=1 launch/deepspeed.sh recipe=...        # print the command instead of running it
#
# Env: NUM_GPUS (default: GPUs nvidia-smi lists, else 1), MASTER_PORT (29500), RUN_DIR.
# --no_local_rank: the rank arrives in $LOCAL_RANK; a `--local_rank=` argument would reach Hydra.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_run_dir.sh"
NUM_GPUS="${NUM_GPUS:-$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)}"
[[ "$NUM_GPUS" -ge 1 ]] 2>/dev/null || NUM_GPUS=1
cmd=(deepspeed --num_gpus "$NUM_GPUS" --master_port "${MASTER_PORT:-29500}" --no_local_rank
     --module r1lab.cli "$@" $(r1lab_run_dir_args "$@"))
if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "${cmd[@]}"; echo; else exec "${cmd[@]}"; fi
