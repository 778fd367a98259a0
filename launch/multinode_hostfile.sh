#!/usr/bin/env bash
# Several nodes with DeepSpeed's launcher (pdsh over ssh) and a hostfile, one line per node:
#     node-a slots=8
#     node-b slots=8
# Every node needs the same checkout, venv and data at the same paths, and password-less ssh.
# Run it on the first host of the hostfile:
#
#   HOSTFILE=hostfile launch/multinode_hostfile.sh recipe=... engine=zero3
#   DRY_RUN=1 HOSTFILE=hostfile launch/multinode_hostfile.sh recipe=...   # print the command
#
# Env: HOSTFILE (./hostfile), MASTER_ADDR (the first host of the hostfile), MASTER_PORT (29500), RUN_DIR
# (must be on a filesystem all nodes share).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_run_dir.sh"
HOSTFILE="${HOSTFILE:-hostfile}"
MASTER_ADDR="${MASTER_ADDR:-$(awk 'NF && $1 !~ /^#/ {print $1; exit}' "$HOSTFILE")}"
cmd=(deepspeed --hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:-29500}"
     --no_local_rank --module r1lab.cli "$@" $(r1lab_run_dir_args "$@"))
if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "${cmd[@]}"; echo; else exec "${cmd[@]}"; fi
