import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from audiocl.errors import DataError
from audiocl.scoring.metrics import compute_metrics, det_curve, eer, min_dcf


def test_perfectly_separated_gives_zero():
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.0, -0.2])
    labels = np.array([1, 1, 1, 0, 0, 0])
    value, threshold = eer(scores, labels)
    assert value == 0.0
    # The threshold separates the classes under "accept when score >= threshold".
    assert np.all(scores[labels == 1] >= threshold)
    assert np.all(scores[labels == 0] < threshold)
    assert min_dcf(scores, labels, 0.01)[0] == 0.0


def test_inverted_gives_one():
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.0, -0.2])
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert eer(scores, labels)[0] == pytest.approx(1.0)
    # Worst case the normalised minDCF is 1 (reject everything, or accept everything).
    assert min_dcf(scores, labels, 0.01)[0] == pytest.approx(1.0)


def test_all_tied_scores_give_half():
    scores = np.full(10, 0.3)
    labels = np.array([1, 0] * 5)
    value, threshold = eer(scores, labels)
    assert value == pytest.approx(0.5)
    fpr, fnr, thr = det_curve(scores, labels)
    # One distinct score: two operating points only (accept all, accept none).
    np.testing.assert_allclose(fpr, [1.0, 0.0])
    np.testing.assert_allclose(fnr, [0.0, 1.0])
    assert thr[0] == 0.3 and thr[1] > 0.3


def test_ties_move_together():
    # A target and a non-target share 0.5: no threshold can split them.
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    fpr, fnr, thr = det_curve(scores, labels)
    assert len(thr) == 4  # 3 distinct scores + the "accept none" point
    np.testing.assert_allclose(fnr, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(fpr, [1.0, 0.5, 0.0, 0.0])
    # Crossing between (fpr .5, fnr 0) and (fpr 0, fnr .5): EER 0.25.
    assert eer(scores, labels)[0] == pytest.approx(0.25)


def test_det_points_match_decision_rule():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=200), 1)  # many ties
    labels = rng.integers(0, 2, size=200)
    fpr, fnr, thr = det_curve(scores, labels)
    for f, m, t in zip(fpr, fnr, thr, strict=True):
        accept = scores >= t
        assert f == pytest.approx(np.mean(accept[labels == 0]))
        assert m == pytest.approx(np.mean(~accept[labels == 1]))
    assert np.all(np.diff(thr) > 0)


def _sklearn_eer(scores, labels):
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_sklearn_roc(seed):
    rng = np.random.default_rng(seed)
    n_tar, n_non = 300, 700
    scores = np.concatenate([rng.normal(1.0, 1.0, n_tar), rng.normal(0.0, 1.0, n_non)])
    labels = np.concatenate([np.ones(n_tar), np.zeros(n_non)]).astype(int)
    perm = rng.permutation(scores.size)
    scores, labels = scores[perm], labels[perm]
    if seed % 2:  # coarse scores: ties
        scores = np.round(scores, 1)
    value, threshold = eer(scores, labels)
    ref = _sklearn_eer(scores, labels)
    assert abs(value - ref) < 1.0 / min(n_tar, n_non)
    assert value == pytest.approx(ref, abs=1e-6)  # same interpolation, so in fact equal
    # The threshold's operating point is near the EER (within one step of tied scores).
    tol = 0.02 if seed % 2 == 0 else 0.1
    accept = scores >= threshold
    assert abs(np.mean(~accept[labels == 1]) - value) < tol
    assert abs(np.mean(accept[labels == 0]) - value) < tol


def _brute_min_dcf(scores, labels, p, c_miss=1.0, c_fa=1.0):
    best = np.inf
    for t in list(np.unique(scores)) + [np.inf]:
        accept = scores >= t
        fnr = np.mean(~accept[labels == 1])
        fpr = np.mean(accept[labels == 0])
        best = min(best, c_miss * p * fnr + c_fa * (1 - p) * fpr)
    return best / min(c_miss * p, c_fa * (1 - p))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("p", [0.01, 0.05, 0.5])
def test_min_dcf_matches_brute_force(seed, p):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=150)
    scores = rng.normal(size=150) + 1.5 * labels
    if seed % 2:
        scores = np.round(scores, 1)
    value, threshold = min_dcf(scores, labels, p)
    assert value == pytest.approx(_brute_min_dcf(scores, labels, p), abs=1e-12)
    accept = scores >= threshold
    cost = p * np.mean(~accept[labels == 1]) + (1 - p) * np.mean(accept[labels == 0])
    assert cost / min(p, 1 - p) == pytest.approx(value, abs=1e-12)
    # With other costs too.
    v2, _ = min_dcf(scores, labels, p, c_miss=10.0, c_fa=1.0)
    assert v2 == pytest.approx(_brute_min_dcf(scores, labels, p, 10.0, 1.0), abs=1e-12)


def test_compute_metrics_keys_and_consistency():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=500)
    scores = (rng.normal(size=500) + labels).astype(np.float32)
    m = compute_metrics(scores, labels)
    assert set(m) >= {
        "eer",
        "eer_threshold",
        "min_dcf_0.01",
        "min_dcf_0.01_threshold",
        "min_dcf_0.05",
        "min_dcf_0.05_threshold",
        "n_target",
        "n_nontarget",
    }
    assert m["n_target"] == int(labels.sum()) and m["n_nontarget"] == int((1 - labels).sum())
    assert (m["eer"], m["eer_threshold"]) == eer(scores, labels)
    assert (m["min_dcf_0.05"], m["min_dcf_0.05_threshold"]) == min_dcf(scores, labels, 0.05)
    assert all(np.isfinite(v) for v in m.values())
    assert 0.0 < m["eer"] < 0.5


def test_errors():
    with pytest.raises(DataError, match="no target"):
        eer([0.1, 0.2], [0, 0])
    with pytest.raises(DataError, match="no non-target"):
        compute_metrics([0.1, 0.2], [1, 1])
    with pytest.raises(DataError):
        eer([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(DataError):
        eer([0.1, np.nan], [0, 1])
    with pytest.raises(DataError):
        eer([0.1, 0.2], [0, 2])
