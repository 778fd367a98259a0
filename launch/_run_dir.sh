# Sourced by the launchers. Every process must write to the same run directory, but Hydra's
# default (outputs/<name>/<timestamp>) is computed per process and can differ by a second between
# ranks, so a launch without `run_dir=` or `resume=` gets one fixed here, once, for all ranks.
r1lab_run_dir_args() {
  local arg
  for arg in "$@"; do
    case "$arg" in run_dir=* | resume=*) return 0 ;; esac
  done
  echo "run_dir=${RUN_DIR:-outputs/launch-$(date +%Y-%m-%d_%H-%M-%S)}"
}
