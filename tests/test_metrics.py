import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from unet_transfer.metrics import (
    adjusted_rand,
    confusion_counts,
    dice,
    per_image_scores,
    pixel_error,
)


def scores(pred, target):
    c = confusion_counts(torch.as_tensor(pred)[None], torch.as_tensor(target)[None])
    return dice(c).item(), pixel_error(c).item(), adjusted_rand(c).item()


@pytest.mark.parametrize("p_pred,p_true", [(0.0, 0.0), (0.01, 0.3), (0.3, 0.3), (0.5, 0.9), (1.0, 0.2), (0.0, 1.0)])
def test_adjusted_rand_matches_scikit_learn(p_pred, p_true):
    rng = np.random.default_rng(7)
    for _ in range(5):
        pred, true = rng.random((48, 40)) < p_pred, rng.random((48, 40)) < p_true
        assert scores(pred, true)[2] == pytest.approx(adjusted_rand_score(true.ravel(), pred.ravel()), abs=1e-12)


def test_adjusted_rand_matches_scikit_learn_at_the_papers_size():
    rng = np.random.default_rng(0)
    true = np.zeros((256, 256), bool)
    true[60:180, 40:200] = True
    pred = true ^ (rng.random(true.shape) < 0.05)
    assert scores(pred, true)[2] == pytest.approx(adjusted_rand_score(true.ravel(), pred.ravel()), abs=1e-12)


def test_hand_made_cases():
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    half = np.zeros((4, 4), bool)
    half[:2] = True
    assert scores(empty, empty) == (1.0, 0.0, 1.0)  # both empty: a correct "no lesion"
    assert scores(half, half) == (1.0, 0.0, 1.0)
    assert scores(empty, half)[:2] == (0.0, 50.0)
    assert scores(~half, half)[:2] == (0.0, 100.0)
    d, e, _ = scores(full, half)  # TP=8, FP=8: dice = 16/24
    assert d == pytest.approx(2 / 3) and e == 50.0
    one = np.zeros((4, 4), bool)
    one[0, 0] = True
    assert scores(one, empty)[:2] == (0.0, 100 / 16)


def test_per_image_scores_threshold_probabilities_at_one_half_and_do_not_average():
    probs = torch.tensor([[[0.51, 0.49]], [[0.2, 0.9]]])  # two 1x2 images
    target = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])
    out = per_image_scores(probs, target)
    assert out["dice"].tolist() == pytest.approx([1.0, 2 / 3])
    assert out["pixel_error"].tolist() == pytest.approx([0.0, 50.0])
