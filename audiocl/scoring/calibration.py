"""Scores to calibrated evidence: log-likelihood ratios, their cost, and decisions from them.

A calibration maps a raw cosine ``s`` to a log-likelihood ratio ``llr = a * s + b`` (natural log:
how much more likely the score is if the two recordings share a speaker than if they do not).
``a`` and ``b`` are fitted by the prior-weighted logistic regression of the calibration and
fusion literature (Brümmer's FoCal): target and non-target trials weigh ``prior`` and
``1 - prior`` in total, so the fit does not depend on how many of each a list holds. SciPy's
L-BFGS solves it: a smooth convex problem of a few unknowns, for which SciPy is already a
dependency and scikit-learn would add nothing but a package.

Measures, every one on ``(N,)`` arrays with labels 1 = same speaker:

* ``cllr``: the log-likelihood-ratio cost in bits (0 perfect, 1 = an uninformative
  ``llr = 0``), which charges both poor discrimination and poor calibration;
* ``min_cllr``: the same after the best monotone recalibration (PAV), the discrimination part
  alone; ``cllr - min_cllr`` is what calibration loses;
* ``act_dcf``: the normalised detection cost of deciding at the Bayes threshold of the LLRs
  (compare with ``metrics.min_dcf``, the cost at the best threshold in hindsight).

Decisions: P(same speaker) at a prior is ``sigmoid(llr + logit(prior))``; the Bayes decision
accepts when ``llr >= log(c_fa (1 - p) / (c_miss p))``. A false-accept-rate threshold is read off
the calibration trials' non-target scores (``far_table``), and refused where too few
non-targets lie above it to estimate the rate.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import ConfigError, DataError

# Doddington's rule of 30: a rate is estimated to within about +-30% (90% confidence) once 30
# errors are seen, so a false-accept threshold needs 30 non-target scores above it.
MIN_FALSE_ACCEPTS = 30
# false-accept rates kept in a model's table, log-spaced from FAR_MAX down to 30 / n_nontarget
FAR_MAX = 0.5
FAR_POINTS = 64


def _labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if s.shape != y.shape:
        raise DataError(f"scores and labels differ in length: {s.size} vs {y.size}")
    if not y.any() or y.all():
        raise DataError("calibration needs both target and non-target trials")
    if np.isnan(s).any():
        raise DataError(f"{int(np.isnan(s).sum())} scores are NaN")
    return s, y


def logit(p: float) -> float:
    if not 0.0 < p < 1.0:
        raise ValueError(f"a prior must lie in (0, 1), got {p}")
    return float(np.log(p / (1.0 - p)))


def fit_logistic(
    features, labels, prior: float = 0.5, nonnegative: bool = False
) -> tuple[np.ndarray, float]:
    """``(a (K,), b)`` of ``llr = a @ features + b`` for ``features (K, N)`` of trials
    ``labels (N,)``, by prior-weighted logistic regression. ``nonnegative``: every ``a_k >= 0``
    (fusion: a member is never counted against). ``DataError`` without both kinds of trial."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(bool).reshape(-1)
    if x.ndim != 2 or x.shape[1] != y.size:
        raise ValueError(f"features must be (K, N={y.size}), got {x.shape}")
    n_tar, n_non = int(y.sum()), int((~y).sum())
    if n_tar == 0 or n_non == 0:
        raise DataError("a logistic fit needs target and non-target trials")
    if not np.isfinite(x).all():
        raise DataError("a logistic fit: the scores hold NaN or Inf")
    w = np.where(y, prior / n_tar, (1 - prior) / n_non)
    sign = np.where(y, 1.0, -1.0)
    offset = logit(prior)
    # fitted on standardised features: cosines spread by a few hundredths give slopes in the
    # tens, a valley too flat for L-BFGS's stopping rule on the raw scale
    centre = x.mean(axis=1)
    scale = np.maximum(x.std(axis=1), 1e-12)
    xs = (x - centre[:, None]) / scale[:, None]

    def loss(theta):
        z = sign * (theta[:-1] @ xs + theta[-1] + offset)
        grad_z = -w * sign * expit(-z)
        return -(w * log_expit(z)).sum(), np.append(xs @ grad_z, grad_z.sum())

    k = x.shape[0]
    start = np.append(np.full(k, 1.0 / k), 0.0)
    bounds = [(0.0, None) if nonnegative else (None, None)] * k + [(None, None)]
    res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds, options={"gtol": 1e-10})
    a = res.x[:-1] / scale
    return a, float(res.x[-1] - a @ centre)


# ----------------------------------------------------------------------------------- measures


def cllr(llr, labels) -> float:
    """Log-likelihood-ratio cost in bits of ``llr (N,)`` (natural-log LLRs; +-inf allowed)."""
    s, y = _labels(llr, labels)
    c_tar = np.logaddexp(0.0, -s[y]).mean()
    c_non = np.logaddexp(0.0, s[~y]).mean()
    return float(0.5 * (c_tar + c_non) / np.log(2.0))


def pav_llr(scores, labels) -> np.ndarray:
    """The optimal monotone score-to-LLR map on these trials (pool adjacent violators).

    Tied scores are pooled first (they must get one LLR). The isotonic fit of the labels is a
    posterior at the list's own target proportion; subtracting that prior's log-odds gives LLRs
    ``(N,)`` in the input order, +-inf where a pool holds one kind of trial only.
    """
    s, y = _labels(scores, labels)
    from scipy.optimize import isotonic_regression

    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted = s[order], y[order].astype(np.float64)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(s_sorted)) + 1))
    cnt = np.diff(np.append(starts, s.size)).astype(np.float64)
    mean = np.add.reduceat(y_sorted, starts) / cnt
    # SciPy's PAV (C, one pass) over the tie pools, each weighted by its size
    post = np.clip(isotonic_regression(mean, weights=cnt, increasing=True).x, 0.0, 1.0)
    n_tar = y.sum()
    with np.errstate(divide="ignore"):
        llr_pool = np.log(post) - np.log1p(-post) - np.log(n_tar / (s.size - n_tar))
    out = np.empty(s.size)
    out[order] = np.repeat(llr_pool, cnt.astype(np.int64))
    return out


def min_cllr(scores, labels) -> float:
    """Cllr after the best monotone recalibration: what the scores could reach, in bits."""
    return cllr(pav_llr(scores, labels), labels)


def bayes_threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """The LLR above which deciding "same speaker" costs least at prior ``p_target``."""
    return float(np.log(c_fa / c_miss) - logit(p_target))


def act_dcf(llr, labels, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised detection cost of accepting when ``llr >= bayes_threshold(p_target)``."""
    s, y = _labels(llr, labels)
    accept = s >= bayes_threshold(p_target, c_miss, c_fa)
    p_miss = float((~accept[y]).mean())
    p_fa = float(accept[~y].mean())
    cost = c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa
    return cost / min(c_miss * p_target, c_fa * (1 - p_target))


def p_same(llr, prior: float = 0.5):
    """P(same speaker) of an LLR (scalar or array) at ``prior``."""
    from scipy.special import expit

    out = expit(np.asarray(llr, dtype=np.float64) + logit(prior))
    return float(out) if np.ndim(out) == 0 else out


# ------------------------------------------------------------------------- the stored record


def far_table(nontarget_scores, min_errors: int = MIN_FALSE_ACCEPTS) -> dict:
    """Thresholds at false-accept rates from ``FAR_MAX`` down to ``min_errors / n``, log-spaced:
    ``{"far": [...], "threshold": [...], "n_nontarget": n, "min_far": min_errors / n}``. A
    threshold accepts ``score >= threshold`` and lets through at most that fraction of ``n``."""
    s = np.sort(np.asarray(nontarget_scores, dtype=np.float64).reshape(-1))[::-1]
    n = s.size
    if n < 2 * min_errors:
        raise DataError(
            f"a false-accept table needs at least {2 * min_errors} non-target trials, got {n}"
        )
    low = min_errors / n
    fars = np.geomspace(FAR_MAX, low, FAR_POINTS) if low < FAR_MAX else np.array([FAR_MAX])
    thresholds = []
    for far in fars:
        k = int(np.floor(far * n + 1e-9))  # non-targets allowed through
        # just above the (k+1)-th highest score: exactly k accepted, ties rejected together
        thresholds.append(float(np.nextafter(s[k], np.inf)))
    return {
        "far": [float(f) for f in fars],
        "threshold": thresholds,
        "n_nontarget": int(n),
        "min_far": float(low),
    }


def far_threshold(table: Mapping, far: float) -> float:
    """The cosine threshold of false-accept rate ``far`` from a :func:`far_table` record
    (interpolated in log rate). ``ConfigError`` where the calibration trials cannot tell."""
    if not 0.0 < far < 1.0:
        raise ConfigError(f"--far must lie in (0, 1), got {far:g}")
    fars, thr = np.asarray(table["far"]), np.asarray(table["threshold"])
    if far < table["min_far"] * (1 - 1e-9):
        raise ConfigError(
            f"the calibration trials have {table['n_nontarget']} non-target scores: a "
            f"false-accept rate of {far:g} needs at least {MIN_FALSE_ACCEPTS} of them above the "
            f"threshold, so the lowest it can estimate is {table['min_far']:.2g}; calibrate on "
            "more non-target trials"
        )
    if far >= fars[0]:
        return float(thr[0])
    # fars descend: interpolate on increasing log rates
    return float(np.interp(np.log(far), np.log(fars[::-1]), thr[::-1]))


def fit_calibration(scores, labels, prior: float = 0.5) -> dict:
    """The calibration record of raw cosine ``scores (N,)`` on trials ``labels (N,)``:
    ``{"llr": {"a", "b", "prior", "cllr", "min_cllr"}, "far": far_table(...) or None}``."""
    s, y = _labels(scores, labels)
    if not np.isfinite(s).all():
        raise DataError("calibration: the scores hold Inf")
    a, b = fit_logistic(s[None, :], y, prior)
    llr = a[0] * s + b
    try:
        far = far_table(s[~y])
    except DataError:
        far = None  # too few non-targets: --far is refused, the LLR still stands
    return {
        "llr": {
            "a": float(a[0]),
            "b": b,
            "prior": float(prior),
            "cllr": cllr(llr, y),
            "min_cllr": min_cllr(s, y),
        },
        "far": far,
    }


def apply_llr(record: Mapping, scores) -> np.ndarray | float:
    """LLRs of raw cosine ``scores`` under a model's calibration record (``record["llr"]``)."""
    m = record["llr"]
    out = m["a"] * np.asarray(scores, dtype=np.float64) + m["b"]
    return float(out) if np.ndim(out) == 0 else out


def calibrated_metrics(record: Mapping, scores, labels, p_targets=(0.01, 0.05)) -> dict:
    """``cllr`` and ``act_dcf_<p>`` of ``scores (N,)`` under ``record``'s LLR mapping."""
    llr = apply_llr(record, scores)
    out = {"cllr": cllr(llr, labels)}
    for p in p_targets:
        out[f"act_dcf_{p:g}"] = act_dcf(llr, labels, p)
    return out


def ape_curve(scores, labels, record: Mapping | None = None, logit_priors=None) -> dict:
    """Normalised Bayes error rate across prior log-odds (an applied-probability-of-error plot):
    ``{"logit_prior": (P,), "minimum": (P,), "actual": (P,) or None, "default": (P,)}``.
    "minimum" decides with the PAV LLRs (the best calibration in hindsight), "actual" with the
    stored mapping, "default" always rejects or always accepts, whichever costs less."""
    s, y = _labels(scores, labels)
    grid = np.linspace(-7.0, 7.0, 57) if logit_priors is None else np.asarray(logit_priors)
    prior = 1.0 / (1.0 + np.exp(-grid))

    def curve(llr):
        tar, non = np.sort(llr[y]), np.sort(llr[~y])
        t = -grid  # Bayes threshold at each prior (unit costs)
        p_miss = np.searchsorted(tar, t, side="left") / tar.size
        p_fa = 1.0 - np.searchsorted(non, t, side="left") / non.size
        return (prior * p_miss + (1 - prior) * p_fa) / np.minimum(prior, 1 - prior)

    actual = curve(apply_llr(record, s)) if record and record.get("llr") else None
    return {
        "logit_prior": grid,
        "minimum": curve(pav_llr(s, y)),
        "actual": actual,
        "default": np.ones_like(grid),
    }
