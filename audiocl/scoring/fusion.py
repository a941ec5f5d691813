"""Linear score fusion fitted on calibration trials: the weights of an ensemble's members.

``fit_fusion_weights(scores (M, N), labels (N,)) -> (M,)``: the members' cosine scores of the
same ``N`` trials, combined as ``llr = sum_i a_i s_i + b``, with ``a`` and ``b`` fitted by the
prior-weighted logistic regression of ``calibration.fit_logistic`` (Brümmer's FoCal). The fusion
weights are ``a`` scaled to sum to 1 (an ensemble's cosine is ``sum w_i cos_i``; ``a >= 0``: a
member is never counted against).
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .calibration import fit_logistic


def fit_fusion_weights(scores, labels, prior: float = 0.5) -> np.ndarray:
    """Fusion weights ``(M,)`` (>= 0, summing to 1) of the rows of ``scores (M, N)`` on
    trials ``labels (N,)`` (1 = same speaker). ``DataError`` without both kinds of trial."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (M, N), got {s.shape}")
    try:
        a, _ = fit_logistic(s, labels, prior, nonnegative=True)
    except DataError as e:
        raise DataError(f"fitting fusion weights: {e}") from None
    a = np.clip(a, 0.0, None)
    if a.sum() <= 0:
        raise DataError("fitting fusion weights: no member's scores separate the trials")
    return a / a.sum()
