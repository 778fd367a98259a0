"""r1lab's GRPO loss equals TRL's ``GRPOTrainer`` loss, value and gradient, on one identical batch.

The batch (countdown prompts, completions of different lengths, advantages with a zero-spread
group, old log-probs and a reference from perturbed weights) is built by
``bench.grpo_vs_trl.loss_agreement``, which the benchmark also reports. Each pair maps a TRL 1.16
``loss_type`` to an r1lab ``loss.reduction`` (``bench.grpo_vs_trl.LOSS_VARIANTS``).
"""
import pytest

pytest.importorskip("trl")

from bench.grpo_vs_trl import LOSS_VARIANTS, loss_agreement, save_bench_model  # noqa: E402

TOLERANCE = 1e-4


@pytest.mark.slow
def test_grpo_loss_and_gradient_match_trl(tmp_path):
    model_dir = save_bench_model(tmp_path / "model", vocab_size=2048)
    results = loss_agreement(model_dir, num_prompts=2, samples=4, max_new_tokens=16)

    assert {r["variant"] for r in results} == set(LOSS_VARIANTS)
    for r in results:
        case = f"{r['variant']} beta={r['beta']} off_policy={r['off_policy']}"
        assert r["same_grad_keys"], case
        assert r["loss_abs_diff"] < TOLERANCE, (case, r)
        assert r["grad_max_abs_diff"] < TOLERANCE, (case, r)
        assert r["grad_max_abs"] > 100 * TOLERANCE, (case, "gradient too small for the check to mean anything")
    off_policy = [r for r in results if r["off_policy"]]
    # the off-policy cases exercise the clip and the KL term, and the reductions really differ
    assert all(r["clipped_fraction"] > 0 and r["beta"] > 0 for r in off_policy)
    assert len({round(r["loss_trl"], 5) for r in off_policy}) >= 3  # grpo, dr_grpo, dapo (= bnpo here)
