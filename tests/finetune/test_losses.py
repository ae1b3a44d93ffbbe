"""Each loss against values computed by hand with `math` on scalars."""

from __future__ import annotations

import math

import pytest
import torch

from finetune.losses import normalise, pointwise_loss, sequence_logprobs


def softplus(x: float) -> float:
    """-log sigmoid(-x) = log(1 + e^x)."""
    return math.log1p(math.exp(x))


LOGPS = torch.tensor([-1.0, -2.0, -0.5])
REF = torch.tensor([-1.5, -1.0, -0.5])
SCORES = torch.tensor([1.0, 0.0, 0.0])
BETA = 0.1
# log-ratios 0.5, -1.0, 0.0 -> rewards 0.05, -0.1, 0.0


def test_ulma_positive_is_nll_negative_is_sigmoid_of_reward():
    out = pointwise_loss(LOGPS, REF, SCORES, loss_type="ulma", beta=BETA)
    expected = [1.0, softplus(-0.1), softplus(0.0)]  # -logp; -log sigmoid(-(beta r))
    assert out.per_row.tolist() == pytest.approx(expected, abs=1e-6)
    assert out.loss.item() == pytest.approx(sum(expected) / 3, abs=1e-6)
    assert out.rewards.tolist() == pytest.approx([0.05, -0.1, 0.0], abs=1e-6)


def test_ulma_margin_shifts_the_reward():
    out = pointwise_loss(LOGPS, REF, SCORES, loss_type="ulma", beta=BETA, margin=0.5)
    assert out.per_row.tolist() == pytest.approx([1.0, softplus(-0.1 + 0.5), softplus(0.5)], abs=1e-6)


def test_pointwise_dpo_uses_the_sigmoid_on_positives_too():
    out = pointwise_loss(LOGPS, REF, SCORES, loss_type="pointwise_dpo", beta=BETA)
    expected = [softplus(-0.05), softplus(-0.1), softplus(0.0)]  # -log sigmoid(beta r) = softplus(-beta r)
    assert out.per_row.tolist() == pytest.approx(expected, abs=1e-6)


def test_sft_counts_positives_only_and_needs_no_reference():
    out = pointwise_loss(LOGPS, None, SCORES, loss_type="sft")
    assert out.per_row.tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-6)
    assert out.rewards.tolist() == [0.0, 0.0, 0.0]


def test_weights_scale_each_side():
    out = pointwise_loss(LOGPS, REF, SCORES, beta=BETA, positive_weight=2.0, negative_weight=0.5)
    assert out.per_row.tolist() == pytest.approx([2.0, 0.5 * softplus(-0.1), 0.5 * softplus(0.0)], abs=1e-6)


def test_fractional_score_blends_both_sides():
    out = pointwise_loss(torch.tensor([-1.0]), torch.tensor([-1.5]), torch.tensor([0.25]), beta=BETA)
    assert out.loss.item() == pytest.approx(0.25 * 1.0 + 0.75 * softplus(0.05), abs=1e-6)


@pytest.mark.parametrize("loss_type", ["ulma", "pointwise_dpo"])
@pytest.mark.parametrize("score", [0.0, 1.0])
def test_batches_of_one_kind_are_finite_with_gradients(loss_type, score):
    logps = torch.tensor([-1.0, -3.0], requires_grad=True)
    out = pointwise_loss(
        logps, torch.tensor([-2.0, -2.0]), torch.full((2,), score), loss_type=loss_type, beta=BETA
    )
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(logps.grad).all()
    assert logps.grad.abs().sum() > 0


def test_reference_is_required_where_the_loss_uses_it():
    with pytest.raises(ValueError, match="reference"):
        pointwise_loss(LOGPS, None, SCORES, loss_type="ulma")
    with pytest.raises(ValueError, match="unknown loss_type"):
        pointwise_loss(LOGPS, REF, SCORES, loss_type="kto")


def test_sequence_logprobs_shifts_and_masks():
    logits = torch.tensor([[[1.0, 2.0, 0.0], [0.5, 0.5, 3.0], [2.0, 0.0, 1.0]]])
    labels = torch.tensor([[-100, 1, 2]])  # token 1 predicted at position 0, token 2 at position 1

    def log_softmax(row: list[float], index: int) -> float:
        return row[index] - math.log(sum(math.exp(v) for v in row))

    sums, counts = sequence_logprobs(logits, labels)
    expected = log_softmax([1.0, 2.0, 0.0], 1) + log_softmax([0.5, 0.5, 3.0], 2)
    assert sums.item() == pytest.approx(expected, abs=1e-6)
    assert counts.item() == 2
    assert normalise(sums, counts, True).item() == pytest.approx(expected / 2, abs=1e-6)
    assert normalise(sums, counts, False).item() == pytest.approx(expected, abs=1e-6)


def test_ulma_positives_need_no_reference_and_a_missing_one_stays_out_of_the_gradient():
    scores = torch.tensor([1.0, 0.0])
    with_ref = torch.tensor([-1.0, -2.0], requires_grad=True)
    without_ref = torch.tensor([-1.0, -2.0], requires_grad=True)
    full = pointwise_loss(with_ref, torch.tensor([-1.5, -2.5]), scores, loss_type="ulma", beta=0.5)
    partial = pointwise_loss(
        without_ref, torch.tensor([float("nan"), -2.5]), scores, loss_type="ulma", beta=0.5
    )
    full.loss.backward()
    partial.loss.backward()
    torch.testing.assert_close(partial.loss, full.loss)
    torch.testing.assert_close(without_ref.grad, with_ref.grad)
    assert partial.rewards[0].isnan() and partial.rewards[1] == full.rewards[1]
