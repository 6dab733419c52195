"""vitnp.training.probe: the closed-form few-shot head (the linear probe trained by AdamW runs in
tests/test_finetune_experiments.py and tests/test_self_supervision.py)."""
import numpy as np
import pytest

from vitnp.training.probe import ridge_head, ridge_predict


def test_ridge_head_solves_the_penalised_least_squares():
    """At the returned (W, b) the objective's gradient is zero: Aᵀ(A [W; b] − T) + λ [W; 0] = 0 (float64, 1e-9),
    the bias unpenalised; λ = 0 is ordinary least squares."""
    rng = np.random.default_rng(0)
    F, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
    T = -np.ones((40, 3))
    T[np.arange(40), y] = 1
    A = np.concatenate([F, np.ones((40, 1))], axis=1)
    for lam in (0.0, 0.5, 10.0):
        W, b = ridge_head(F, y, 3, lam)
        grad = A.T @ (A @ np.vstack([W, b]) - T) + lam * np.vstack([W, np.zeros((1, 3))])
        assert np.abs(grad).max() < 1e-9 and W.shape == (6, 3) and b.shape == (3,)
    W0, b0 = ridge_head(F, y, 3, 0.0)
    assert np.allclose(np.vstack([W0, b0]), np.linalg.lstsq(A, T, rcond=None)[0], atol=1e-12)


def test_ridge_predict_separates_separable_classes():
    rng = np.random.default_rng(1)
    centres = np.eye(4) * 5
    y = rng.integers(0, 4, 200)
    F = centres[y] + rng.standard_normal((200, 4)) * 0.3
    W, b = ridge_head(F, y, 4, 1.0)
    assert (ridge_predict(F, W, b) == y).mean() == 1.0
    with pytest.raises(ValueError):
        ridge_head(F, y, 4, -1.0)
