"""Linear score fusion fitted on calibration trials: the weights of an ensemble's members.

``fit_fusion_weights(scores (M, N), labels (N,)) -> (M,)``: the members' cosine scores of the
same ``N`` trials, combined as ``llr = sum_i a_i s_i + b``, with ``a`` and ``b`` fitted by the
prior-weighted logistic regression of the fusion literature (Brümmer's FoCal): target and
non-target trials weigh ``prior`` and ``1 - prior`` in total, so the fit does not depend on how
many of each the list holds. The fusion weights are ``a`` scaled to sum to 1 (an ensemble's
cosine is ``sum w_i cos_i``; ``a >= 0``: a member is never counted against). Fitted with SciPy's
bounded L-BFGS: a smooth convex problem of ``M + 1`` unknowns, for which SciPy is already a
dependency and scikit-learn would add nothing but a package.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def fit_fusion_weights(scores, labels, prior: float = 0.5) -> np.ndarray:
    """Fusion weights ``(M,)`` (>= 0, summing to 1) of the rows of ``scores (M, N)`` on
    trials ``labels (N,)`` (1 = same speaker). ``DataError`` without both kinds of trial."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool).reshape(-1)
    if s.ndim != 2 or s.shape[1] != y.size:
        raise ValueError(f"scores must be (M, N={y.size}), got {s.shape}")
    n_tar, n_non = int(y.sum()), int((~y).sum())
    if n_tar == 0 or n_non == 0:
        raise DataError("fitting fusion weights needs target and non-target trials")
    if not np.isfinite(s).all():
        raise DataError("fitting fusion weights: a member's scores hold NaN or Inf")
    w = np.where(y, prior / n_tar, (1 - prior) / n_non)
    sign = np.where(y, 1.0, -1.0)
    logit_prior = np.log(prior / (1 - prior))

    def loss(theta):
        llr = theta[:-1] @ s + theta[-1]
        z = sign * (llr + logit_prior)
        grad_z = -w * sign * expit(-z)
        return -(w * log_expit(z)).sum(), np.append(s @ grad_z, grad_z.sum())

    m = s.shape[0]
    start = np.append(np.full(m, 10.0 / m), 0.0)
    bounds = [(0.0, None)] * m + [(None, None)]
    res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    a = np.clip(res.x[:-1], 0.0, None)
    if a.sum() <= 0:
        raise DataError("fitting fusion weights: no member's scores separate the trials")
    return a / a.sum()
