"""One tracker per stage: `metrics.jsonl`, a W&B run (grouped by pipeline run) and a progress bar;
with ``tracking.completions_every``, tables of sampled completions (`completions.jsonl`, W&B
``completions/<name>``).

Only rank 0 writes; other ranks get a tracker whose methods do nothing, so stage code never asks
which rank it is on. W&B never asks to log in: offline unless ``tracking.wandb.mode=online``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from r1lab.config.schema import TrackingConfig
from r1lab.engine import dist


class Tracker:
    def __init__(self, cfg: TrackingConfig, stage_dir: Path, run_name: str, group: str, config: dict, total_steps: int, start_step: int = 0):
        self.cfg = cfg
        self.active = dist.is_main()
        self.file = None
        self.wandb_run = None
        self.bar = None
        if not self.active:
            return
        stage_dir.mkdir(parents=True, exist_ok=True)
        # A resumed stage continues at start_step: drop records of steps it will redo.
        self.file = open(_drop_after(stage_dir / "metrics.jsonl", start_step), "a")
        self.completions_path = _drop_after(stage_dir / "completions.jsonl", start_step)
        if cfg.wandb.mode != "disabled":
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self.wandb_run = wandb.init(
                project=cfg.wandb.project,
                entity=cfg.wandb.entity,
                group=group,
                name=run_name,
                tags=list(cfg.wandb.tags),
                config=config,
                mode=cfg.wandb.mode,
                dir=str(stage_dir),
                reinit="finish_previous",
            )
        if cfg.progress_bar and total_steps > 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc=run_name, dynamic_ncols=True, leave=True)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.active:
            return
        clean = {k: _plain(v) for k, v in metrics.items()}
        if step % max(1, self.cfg.log_every) == 0:
            self.file.write(json.dumps({"step": step, **clean}) + "\n")
            self.file.flush()
            if self.wandb_run is not None:
                self.wandb_run.log(clean, step=step)
        if self.bar is not None:
            self.bar.n = step
            shown = {k: clean[k] for k in ("loss", "reward", "accuracy") if k in clean}
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
            self.bar.refresh()

    def log_completions(self, step: int, name: str, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` (one dict per completion, same keys) to ``completions.jsonl`` as
        ``{"step", "table": name, **row}`` lines, and log them as the W&B table ``completions/<name>``
        (columns ``step`` and the rows' keys)."""
        if not self.active or not rows:
            return
        rows = [{k: _plain(v) for k, v in r.items()} for r in rows]
        with open(self.completions_path, "a") as f:
            f.write("".join(json.dumps({"step": step, "table": name, **r}) + "\n" for r in rows))
        if self.wandb_run is not None:
            import wandb

            columns = ["step", *rows[0]]
            data = [[step, *(r.get(c) for c in columns[1:])] for r in rows]
            self.wandb_run.log({f"completions/{name}": wandb.Table(columns=columns, data=data, allow_mixed_types=True)}, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb_run is not None:
            for k, v in values.items():
                self.wandb_run.summary[k] = _plain(v)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def _drop_after(path: Path, step: int) -> Path:
    """Keep only the JSON lines of ``path`` (if any) with ``"step" <= step``."""
    if path.exists():
        kept = [l for l in path.read_text().splitlines() if json.loads(l)["step"] <= step]
        path.write_text("".join(l + "\n" for l in kept))
    return path


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v
