"""r1lab-compare's seed bands on hand-written sweep directories: arms grouped by their overrides
less the seeds, each figure's mean, sample std, min and max over seeds, exact."""
from __future__ import annotations

import json
import math
import shutil

import pytest

from r1lab.eval.compare import load_sweep, main, seed_bands, write_compare
from r1lab.eval.seed_bands import band, curve_spread, figure, group_arms, spread
from tests.eval.conftest import make_run

# arm (kl) -> greedy accuracy of the final stage per seed; seed 2 of kl=0.04 never finished
ACCS = {"0.0": {0: 0.5, 1: 0.6, 2: 0.7}, "0.04": {0: 0.4, 1: 0.2, 2: None}}


def make_seed_sweep(sweep_dir):
    job = 0
    for kl, by_seed in ACCS.items():
        for seed, acc in by_seed.items():
            overrides = ["recipe=ablation_kl", f"stages.grpo.kl.beta={kl}", f"seed={seed}", f"stages.grpo.seed={seed}"]
            run = make_run(sweep_dir / str(job), accs=(0.05, 0.4, acc or 0.0), with_samples=False, overrides=overrides)
            rows = [{"step": s, "reward": (acc or 0.0) + 0.1 * s, "response_length": 50.0 + s} for s in (1, 2, 3)]
            if job == 2:  # a shorter curve: step 3 has two seeds in this arm
                rows = rows[:2]
            rows.append({"step": 3, "eval/greedy_accuracy": 0.1})  # an in-training eval row: no reward
            (run / "stages" / "02-grpo" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            if acc is None:
                shutil.rmtree(run / "stages")
                (run / "summary.json").unlink()
            job += 1
    return sweep_dir


@pytest.fixture
def seed_sweep(tmp_path):
    return make_seed_sweep(tmp_path / "multirun" / "ablation_kl" / "2025-01-01_00-00-00")


def test_arms_group_runs_by_overrides_without_seed_keys():
    ovs = [{"recipe": "r", "kl": "0", "seed": "0", "stages.grpo.seed": "0"}, {"recipe": "r", "kl": "0", "seed": "1"},
           {"recipe": "r", "kl": "1", "seed": "0"}]
    arms = group_arms(ovs)
    assert [a.overrides for a in arms] == [{"recipe": "r", "kl": "0"}, {"recipe": "r", "kl": "1"}]
    assert [a.runs for a in arms] == [[0, 1], [2]]
    assert arms[0].seeds == ["seed=0, stages.grpo.seed=0", "seed=1"]
    assert [a.runs for a in group_arms(ovs, ["seed"])] == [[0], [1], [2]]  # stages.grpo.seed=0 now makes an arm


def test_spread_is_sample_std():
    s = spread([0.2, 0.4])
    assert s["n"] == 2 and s["mean"] == pytest.approx(0.3) and s["std"] == pytest.approx(math.sqrt(0.02))
    assert spread([0.7]) == {"n": 1, "mean": 0.7, "std": None, "min": 0.7, "max": 0.7}
    assert spread([0.1, 0.1, 0.1])["std"] == pytest.approx(0.0)
    assert spread([None, float("nan")])["n"] == 0


def test_figure_paths():
    ev = {"pass_at_k": {"4": 0.5}, "by_difficulty": {"2 numbers, target 0.5": {"greedy_accuracy": 0.25}}, "ci95": {"x": [0, 1]}}
    assert figure(ev, "pass_at_k.4") == figure(ev, "pass@4") == 0.5
    assert figure(ev, "by_difficulty.2 numbers, target 0.5.greedy_accuracy") == 0.25  # a key holding a dot
    assert figure(ev, "ci95.x") is None and figure(ev, "pass_at_k") is None and figure(ev, "nope") is None


def test_curve_spread_and_bands():
    c = curve_spread([{1: 1.0, 2: 2.0}, {1: 3.0}])
    assert c["step"] == [1, 2] and c["n"] == [2, 1] and c["mean"] == [2.0, 2.0] and c["min"] == [1.0, 2.0]
    assert c["std"][0] == pytest.approx(math.sqrt(2)) and c["std"][1] is None
    assert band(c, "minmax") == ([1.0, 2.0], [3.0, 2.0])
    lo, hi = band(c, "std")
    assert lo == pytest.approx([2 - math.sqrt(2), 2.0]) and hi == pytest.approx([2 + math.sqrt(2), 2.0])


def test_seed_bands_of_a_sweep(seed_sweep):
    runs = load_sweep(seed_sweep)
    bands = seed_bands(runs, ["greedy_accuracy", "pass_at_k.4", "by_difficulty.hard.greedy_accuracy"], ["reward"], stage="02-grpo")
    assert bands.labels == ["beta=0.0", "beta=0.04"]
    a, b = bands.figures["greedy_accuracy"]
    assert (a["n"], a["min"], a["max"], a["values"]) == (3, 0.5, 0.7, [0.5, 0.6, 0.7]) and a["mean"] == pytest.approx(0.6)
    assert a["std"] == pytest.approx(0.1)
    assert (b["n"], b["values"]) == (2, [0.4, 0.2, None]) and b["mean"] == pytest.approx(0.3)
    assert b["std"] == pytest.approx(math.sqrt(0.02))
    p = bands.figures["pass_at_k.4"][0]  # acc * 1.3
    assert p["mean"] == pytest.approx(0.78) and p["std"] == pytest.approx(0.13)
    h = bands.figures["by_difficulty.hard.greedy_accuracy"][0]  # acc * 0.5
    assert h["mean"] == pytest.approx(0.3) and h["std"] == pytest.approx(0.05)
    r = bands.curves["reward"][0]  # acc + 0.1 * step; job 2 stops at step 2
    assert r["step"] == [1, 2, 3] and r["n"] == [3, 3, 2]
    assert r["mean"] == pytest.approx([0.7, 0.8, 0.85]) and r["min"] == pytest.approx([0.6, 0.7, 0.8])
    assert r["std"][0] == pytest.approx(0.1) and r["std"][2] == pytest.approx(math.sqrt(0.005))
    # another stage by its name: the cold start's eval (0.4 in every run)
    cold = seed_bands(runs, ["greedy_accuracy"], stage="cold_start").figures["greedy_accuracy"][0]
    assert cold["mean"] == pytest.approx(0.4) and cold["std"] == pytest.approx(0.0)


def test_write_compare_with_seed_bands(seed_sweep):
    md = write_compare(seed_sweep, metrics=["greedy_accuracy", "pass@4"], curves=["reward", "response_length"], band="std").read_text()
    for name in ("compare.png", "compare-arms.png", "compare-curves.png"):
        assert (seed_sweep / name).stat().st_size > 1000, name
    assert "| 0 | 0.0 | 0 | 0 | 02-grpo | 0.500 |" in md  # the per-run table is still there
    assert "| beta=0.0 | 3 | 0.600 ± 0.100 [0.500, 0.700] | 0.780 ± 0.130 [0.650, 0.910] |" in md
    assert "| beta=0.04 | 3 | 0.300 ± 0.141 [0.200, 0.400] (n=2) |" in md
    assert "shaded mean ± one sample std" in md
    arms = json.loads((seed_sweep / "compare-arms.json").read_text())
    assert [a["jobs"] for a in arms] == [["0", "1", "2"], ["3", "4", "5"]]
    assert arms[0]["overrides"] == {"recipe": "ablation_kl", "stages.grpo.kl.beta": "0.0"}
    assert arms[0]["metrics"]["greedy_accuracy"]["std"] == pytest.approx(0.1)
    assert arms[1]["curves"]["response_length"]["mean"] == [51.0, 52.0, 53.0]
    assert arms[1]["metrics"]["pass@4"]["values"] == pytest.approx([0.52, 0.26, None])
    assert isinstance(json.loads((seed_sweep / "compare.json").read_text()), list)  # as before: one entry per run


def test_default_figures_when_arms_have_seeds(seed_sweep):
    md = write_compare(seed_sweep).read_text()
    head = next(line for line in md.splitlines() if line.startswith("| arm |"))
    assert head == "| arm | seeds | greedy_accuracy | sampled_accuracy | pass_at_k.4 | maj_at_k.4 | format_rate | mean_response_length |"
    assert not (seed_sweep / "compare-curves.png").exists()


def test_single_seed_sweeps_keep_the_per_run_table(fake_sweep):
    write_compare(fake_sweep)
    assert not (fake_sweep / "compare-arms.json").exists()
    assert "## Arms" not in (fake_sweep / "compare.md").read_text()
    md = write_compare(fake_sweep, metrics=["greedy_accuracy"]).read_text()  # named: one arm per run, n = 1
    assert "| reduction=seq_mean_token_mean, coef=0.0 | 1 | 0.500 ± – [0.500, 0.500] |" in md


def test_unknown_names_list_what_exists(seed_sweep):
    runs = load_sweep(seed_sweep)
    with pytest.raises(ValueError, match=r"metrics: 'greedy' is no number.*figures there: .*by_difficulty\.easy\.greedy_accuracy.*pass_at_k\.4"):
        seed_bands(runs, ["greedy"])
    with pytest.raises(ValueError, match=r"curves: 'rewards' is logged by no run.*stage 02-grpo.*logged there: eval/greedy_accuracy, response_length, reward"):
        seed_bands(runs, curves=["rewards"], stage="02-grpo")
    with pytest.raises(ValueError, match="no run of the sweep has an eval.json of stage 07-dpo"):
        seed_bands(runs, ["greedy_accuracy"], stage="07-dpo")
    with pytest.raises(ValueError, match="band='range'; valid: minmax, std"):
        seed_bands(runs, band="range")
    assert not (seed_sweep / "compare.md").exists()  # nothing written


def test_cli_lists(seed_sweep, capsys):
    main([f"sweep_dir={seed_sweep}", "metrics=[greedy_accuracy,by_difficulty.hard.greedy_accuracy]", "curves=[reward]",
          "stage=02-grpo", "band=minmax"])
    out = capsys.readouterr().out
    assert "| beta=0.0 | 3 | 0.600 ± 0.100 [0.500, 0.700] | 0.300 ± 0.050 [0.250, 0.350] |" in out
    assert "Curves: the mean over each arm's seeds per step, shaded min..max over seeds." in (seed_sweep / "compare.md").read_text()
    with pytest.raises(SystemExit):
        main([f"sweep_dir={seed_sweep}", "metrics=[nope]"])
    assert "'nope' is no number" in capsys.readouterr().err
