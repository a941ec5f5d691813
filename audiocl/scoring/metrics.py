"""Verification metrics: DET curve, EER and normalised minDCF, vectorised (one sort, O(n log n)).

Conventions used throughout:

* ``scores`` are raw cosine (or any real score where higher means "more likely the same speaker"),
  ``labels`` are 1 for target (same speaker) and 0 for non-target trials.
* Decision rule: a trial is accepted as "same speaker" when ``score >= threshold``.
* The threshold sweeps over the *distinct* score values only (tied scores move together), plus one
  threshold just above the largest score (``nextafter(max, +inf)``) at which nothing is accepted.
  So every returned threshold is finite and reproduces its operating point exactly under
  ``score >= threshold``.
* EER is a fraction in [0, 1] (a percentage only when printed). It is the point where the linearly
  interpolated DET curve (equivalently the ROC curve) crosses ``fnr == fpr``; its threshold is
  interpolated between the two bracketing thresholds in the same proportion.
* minDCF is normalised: ``min_t (c_miss p fnr(t) + c_fa (1-p) fpr(t)) / min(c_miss p, c_fa (1-p))``.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError

P_TARGETS = (0.01, 0.05)


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: scores ``(N,)`` float64, labels ``(N,)`` bool."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise DataError(f"scores and labels differ in length: {s.size} vs {y.size}")
    if y.dtype != np.bool_:
        if y.size and not np.all((y == 0) | (y == 1)):
            raise DataError("labels must be 0 (non-target) or 1 (target)")
        y = y.astype(bool)
    if not np.all(np.isfinite(s)):
        raise DataError(f"{int(np.sum(~np.isfinite(s)))} scores are NaN or infinite")
    n_tar = int(y.sum())
    if n_tar == 0:
        raise DataError("no target trials: EER and minDCF need both target and non-target trials")
    if n_tar == y.size:
        raise DataError(
            "no non-target trials: EER and minDCF need both target and non-target trials"
        )
    return s, y


def _det(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """DET points over distinct thresholds, ascending. Returns ``(fpr, fnr, thr, n_tar, n_non)``."""
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    y_sorted = y[order]
    n = s_sorted.size
    # Index of the first element of each group of equal scores.
    starts = np.concatenate(([0], np.flatnonzero(np.diff(s_sorted)) + 1))
    # Number of targets / non-targets strictly below each element: exclusive cumulative counts.
    cum_tar = np.concatenate(([0], np.cumsum(y_sorted, dtype=np.int64)))
    n_tar = int(cum_tar[-1])
    n_non = n - n_tar
    tar_below = cum_tar[starts]  # targets with score < threshold -> misses
    non_below = starts - tar_below  # non-targets with score < threshold -> correct rejections
    fnr = np.concatenate((tar_below, [n_tar])) / n_tar
    fpr = np.concatenate((n_non - non_below, [0])) / n_non
    thr = np.concatenate((s_sorted[starts], [np.nextafter(s_sorted[-1], np.inf)]))
    return fpr, fnr, thr, n_tar, n_non


def det_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DET curve points.

    Args:
        scores: ``(N,)`` trial scores (higher = more likely same speaker).
        labels: ``(N,)`` 1 for target, 0 for non-target.

    Returns:
        ``(fpr, fnr, thresholds)``, each ``(K+1,)`` for K distinct scores, thresholds ascending
        (fpr falls from 1 to 0, fnr rises from 0 to 1). Point k is the operating point of
        "accept when score >= thresholds[k]"; the last threshold lies just above the largest score.

    Raises:
        DataError: mismatched lengths, non-finite scores, or no target / no non-target trials.
    """
    s, y = _check(scores, labels)
    fpr, fnr, thr, _, _ = _det(s, y)
    return fpr, fnr, thr


def _eer_from_det(fpr: np.ndarray, fnr: np.ndarray, thr: np.ndarray) -> tuple[float, float]:
    # fnr rises and fpr falls along the curve; first index where fnr >= fpr. Index 0 has
    # fnr = 0 < fpr = 1, so j >= 1 and the crossing lies on segment (j-1, j).
    j = int(np.argmax(fnr >= fpr))
    i = j - 1
    d_i = fpr[i] - fnr[i]  # > 0
    d_j = fpr[j] - fnr[j]  # <= 0
    alpha = d_i / (d_i - d_j)
    eer = fnr[i] + alpha * (fnr[j] - fnr[i])
    threshold = thr[i] + alpha * (thr[j] - thr[i])
    return float(eer), float(threshold)


def _min_dcf_from_det(
    fpr: np.ndarray, fnr: np.ndarray, thr: np.ndarray, p_target: float, c_miss: float, c_fa: float
) -> tuple[float, float]:
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must lie in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"c_miss and c_fa must be positive, got {c_miss}, {c_fa}")
    dcf = c_miss * p_target * fnr + c_fa * (1.0 - p_target) * fpr
    k = int(np.argmin(dcf))
    norm = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(dcf[k] / norm), float(thr[k])


def eer(scores, labels) -> tuple[float, float]:
    """Equal error rate as a fraction, and its threshold (accept when ``score >= threshold``).

    Tied scores are handled as one threshold step; e.g. all-equal scores give 0.5.
    ``scores``/``labels``: ``(N,)``. Raises DataError as :func:`det_curve`.
    """
    fpr, fnr, thr = det_curve(scores, labels)
    return _eer_from_det(fpr, fnr, thr)


def min_dcf(
    scores, labels, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> tuple[float, float]:
    """Normalised minimum detection cost and the threshold reaching it (``score >= threshold``).

    ``scores``/``labels``: ``(N,)``. Raises DataError as :func:`det_curve`.
    """
    fpr, fnr, thr = det_curve(scores, labels)
    return _min_dcf_from_det(fpr, fnr, thr, p_target, c_miss, c_fa)


def compute_metrics(
    scores, labels, p_targets=P_TARGETS, c_miss: float = 1.0, c_fa: float = 1.0
) -> dict:
    """All figures of a trial list from one sort.

    Returns a JSON-ready dict: ``eer`` (fraction), ``eer_threshold``, and for each p in
    ``p_targets`` ``min_dcf_<p>`` and ``min_dcf_<p>_threshold`` (keys ``min_dcf_0.01``,
    ``min_dcf_0.05`` by default), ``min_cllr`` (bits: the LLR cost after the best monotone
    calibration, ``calibration.min_cllr``), ``n_target``, ``n_nontarget``, ``c_miss``, ``c_fa``.
    Thresholds follow "accept when score >= threshold".
    """
    from .calibration import min_cllr

    s, y = _check(scores, labels)
    fpr, fnr, thr, n_tar, n_non = _det(s, y)
    e, e_thr = _eer_from_det(fpr, fnr, thr)
    out = {"eer": e, "eer_threshold": e_thr}
    for p in p_targets:
        value, t = _min_dcf_from_det(fpr, fnr, thr, p, c_miss, c_fa)
        out[f"min_dcf_{p:g}"] = value
        out[f"min_dcf_{p:g}_threshold"] = t
    out["min_cllr"] = min_cllr(s, y)
    out.update(n_target=n_tar, n_nontarget=n_non, c_miss=float(c_miss), c_fa=float(c_fa))
    return out
