import pytest

from apo.training.step_metrics import UpdateSums, loss_metrics


class TwoProcesses:
    """Two processes whose sums are this one's, twice."""

    def reduce(self, tensor, op):
        assert op == "sum"
        return tensor * 2


def test_losses_are_per_update_and_other_metrics_per_micro_batch():
    sums = UpdateSums(micro_batches=3, grad_norms=[1.0, 3.0], skipped=1)
    sums.add({"loss/total": 0.5, "policy/clip_frac": 0.3})
    sums.add({"loss/total": 0.25, "policy/clip_frac": 0.0})
    metrics = loss_metrics(sums, updates=3, backend=TwoProcesses())
    assert metrics["loss/total"] == pytest.approx(2 * 0.75 / 3)  # summed over processes
    assert metrics["policy/clip_frac"] == pytest.approx(2 * 0.3 / 6)  # 6 micro-batches in all
    assert metrics["optim/grad_norm"] == 2.0
    assert metrics["optim/skipped_updates"] == 1.0


def test_a_step_whose_updates_were_all_skipped_has_no_gradient_norm():
    metrics = loss_metrics(
        UpdateSums(micro_batches=1, skipped=2), updates=2, backend=TwoProcesses()
    )
    assert "optim/grad_norm" not in metrics and metrics["optim/skipped_updates"] == 2.0
