"""GRPO's sampling rounds, drawn in place (colocated) or ahead on rollout workers (separate).

A *round* is one draw of the prompt stream (``draw`` = rounds drawn before it): this rank's
prompts, their seed and the tools they may call (`RoundSpec`). GRPO asks for rounds in order,
one or more a step (DAPO's dynamic sampling tops a step up with more), and never sees how they
were made:

* `InPlaceRounds` samples a round when it is asked for, from the live policy: today's
  synchronous on-policy loop.
* `AheadRounds` keeps the next ``max_staleness`` rounds in flight on the rollout workers
  (`r1lab.rollout.remote.RemoteEngine`). A round is sent right after the one ``k`` before it was
  consumed, behind the weights of the policy at that moment, so while the trainer updates on
  round ``d`` the workers sample ``d+1 .. d+k`` (``k = 1``: one-step-off). A round consumed at
  policy version ``V`` was written by version ``V - k`` at the oldest: each step consumes at
  least one round, so ``k`` rounds ahead are at most ``k`` steps old. ``k = 0`` sends each round
  when it is asked for: synchronous, and with one worker the very samples `InPlaceRounds` draws.

Which version writes which round depends only on the order of the trainer's calls (a worker
answers in order), so an async run is reproducible. For exact resume the rounds in flight at a
checkpoint are waited for and saved with it (`checkpoint` / `restore`): the resumed run
consumes what the uninterrupted one did.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import torch

from r1lab.config.schema import ToolsConfig
from r1lab.rollout.engine import Completion, RolloutEngine, SamplingParams
from r1lab.rollout.groups import GroupRequest, Rollout, generate_groups

Score = Callable[[GroupRequest, list[Completion], float], Rollout]  # (request, completions, seconds generating) -> Rollout


@dataclass
class RoundSpec:
    """One round of this rank: what to sample, with which seed and tools."""

    request: GroupRequest
    sampling: SamplingParams
    seed: int
    tools: ToolsConfig | None = None


class InPlaceRounds:
    """Rounds sampled when asked for, by ``engine`` on the live policy (colocated)."""

    def __init__(self, engine: RolloutEngine, tokenizer, spec: Callable[[int], RoundSpec], score: Score,
                 sampling_mode: Callable[[bool], None] = lambda sampling: None) -> None:
        self.engine, self.tokenizer, self.spec, self.score, self.sampling_mode = engine, tokenizer, spec, score, sampling_mode

    def get(self, draw: int) -> Rollout:
        spec = self.spec(draw)
        self.sampling_mode(True)  # the training module in eval mode while it samples
        began = time.time()
        completions = generate_groups(self.engine, self.tokenizer, spec.request, spec.sampling, spec.seed, tools=spec.tools)
        seconds = time.time() - began
        self.sampling_mode(False)
        return self.score(spec.request, completions, seconds)

    def step_figures(self) -> dict[str, float]:
        return {}

    def checkpoint(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class _Ready:
    """A round already answered (restored from a checkpoint, or drained into one)."""

    completions: list[Completion]
    results: list  # GenerateResult per worker shard

    def result(self):
        return self.completions, self.results


class AheadRounds:
    """Rounds sampled up to ``max_staleness`` ahead by rollout workers (module docstring).

    ``version()``: the trainer's policy version (optimizer steps); ``versions_per_step``: optimizer
    steps per GRPO step (``updates_per_batch``), so lags are counted in steps."""

    def __init__(self, engine, spec: Callable[[int], RoundSpec], score: Score, max_staleness: int,
                 version: Callable[[], int], versions_per_step: int = 1) -> None:
        self.engine, self.spec, self.score, self.k = engine, spec, score, max_staleness
        self.version, self.versions_per_step = version, versions_per_step
        self.in_flight: dict[int, tuple[RoundSpec, object]] = {}  # draw -> (spec, PendingCompletions | _Ready)
        self._figures: dict[str, float] = defaultdict(float)
        self._lags: list[int] = []
        self._workers: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def _submit(self, draw: int) -> None:
        spec = self.spec(draw)
        pending = self.engine.submit(spec.request.prompts, spec.sampling, spec.seed, tools=spec.tools,
                                     contexts=spec.request.contexts)
        self.in_flight[draw] = (spec, pending)

    def get(self, draw: int) -> Rollout:
        """Round ``draw``, written by a policy at most ``max_staleness`` steps old."""
        if draw not in self.in_flight:
            self._submit(draw)
        spec, pending = self.in_flight.pop(draw)
        began = time.time()
        completions, results = pending.result()
        self._figures["trainer_wait_s"] += time.time() - began
        for ahead in range(draw + 1, draw + 1 + self.k):  # keep k rounds in flight, behind the current weights
            if ahead not in self.in_flight:
                self._submit(ahead)
        written_by = min(r.version for r in results) if results else self.version()
        lag = max(0, self.version() - written_by) // self.versions_per_step
        if lag > self.k:
            raise RuntimeError(
                f"round {draw} was written by policy version {written_by}, {lag} steps behind the trainer's "
                f"{self.version()}: more than rollout.max_staleness={self.k} (a bug: please report it)"
            )
        self._lags.append(lag)
        for r in results:
            w = self._workers[r.worker]
            w["seconds"] += r.seconds
            w["idle_s"] += r.idle_s
            w["tokens"] += r.tokens
        rollout = self.score(spec.request, completions, max((r.seconds for r in results), default=0.0))
        rollout.policy_versions = torch.full((len(rollout),), written_by, dtype=torch.long)
        return rollout

    def step_figures(self) -> dict[str, float]:
        """``async/*`` since the last call: version lag (mean, max, and the share of rounds at
        each lag 0..k: the histogram), the trainer's wait for rollouts, each worker's idle time
        and tokens per second, the last weight push (seconds on the worker, bytes)."""
        figures = {"async/trainer_wait_s": self._figures.pop("trainer_wait_s", 0.0)}
        if self._lags:
            figures["async/version_lag"] = sum(self._lags) / len(self._lags)
            figures["async/version_lag_max"] = float(max(self._lags))
            for lag in range(self.k + 1):
                figures[f"async/version_lag_share/{lag}"] = self._lags.count(lag) / len(self._lags)
        busy = idle = 0.0
        for j, w in sorted(self._workers.items()):
            figures[f"async/worker{j}/tokens_per_s"] = w["tokens"] / max(w["seconds"], 1e-9)
            figures[f"async/worker{j}/idle_s"] = w["idle_s"]
            busy, idle = busy + w["seconds"], idle + w["idle_s"]
        if self._workers:
            figures["async/worker_idle_fraction"] = idle / max(busy + idle, 1e-9)
        figures.update({f"async/{k}": v for k, v in self.engine.push_figures().items()})
        figures["async/rounds_in_flight"] = float(len(self.in_flight))
        self._lags, self._workers = [], defaultdict(lambda: defaultdict(float))
        return figures

    # --- exact resume ----------------------------------------------------------------------
    def checkpoint(self) -> dict:
        """Wait for the rounds in flight and return them (JSON): saved with the checkpoint."""
        from r1lab.rollout.wire import completion_json

        state = {}
        for draw in sorted(self.in_flight):
            spec, pending = self.in_flight[draw]
            completions, results = pending.result()
            self.in_flight[draw] = (spec, _Ready(completions, results))
            state[str(draw)] = {"completions": [completion_json(c) for c in completions],
                                "results": [[r.version, r.seconds, r.idle_s, r.tokens, r.worker] for r in results]}
        return {"rounds_in_flight": state}

    def restore(self, state: dict) -> None:
        """Put the rounds a checkpoint saved back in flight, answered."""
        from r1lab.rollout.remote import GenerateResult
        from r1lab.rollout.wire import completion_from_json

        for draw, saved in (state.get("rounds_in_flight") or {}).items():
            completions = [completion_from_json(c) for c in saved["completions"]]
            results = [GenerateResult([], int(v), float(s), float(i), int(t), int(w)) for v, s, i, t, w in saved["results"]]
            self.in_flight[int(draw)] = (self.spec(int(draw)), _Ready(completions, results))

    def close(self) -> None:
        self.in_flight.clear()
