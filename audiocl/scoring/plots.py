"""DET curves and score histograms as PNG files.

Uses ``matplotlib.figure.Figure`` with the Agg canvas directly, so importing this module (or
calling it) never touches pyplot or the process-wide backend. Files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ..fileio import atomic_path

DET_TICKS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.4)
DET_LIMITS = (0.0005, 0.5)


def _probit(p) -> np.ndarray:
    """Normal deviate of probabilities (clipped away from 0 and 1)."""
    from scipy.special import ndtri

    return ndtri(np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6))


def _new_figure(size=(6.0, 5.0)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _eer_point(fpr: np.ndarray, fnr: np.ndarray) -> float:
    """EER of a DET curve given as points (fpr falling, fnr rising), by linear interpolation."""
    d = fpr - fnr
    j = int(np.argmax(d <= 0))
    if j == 0:
        return float(fnr[0])
    i = j - 1
    alpha = d[i] / (d[i] - d[j])
    return float(fnr[i] + alpha * (fnr[j] - fnr[i]))


def _thin(x: np.ndarray, y: np.ndarray, step: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """Drop curve points closer than ``step`` normal deviates to the previous kept grid cell, so
    a curve of a million trials draws quickly; the first and last points are kept."""
    if x.size <= 2000:
        return x, y
    q = np.round(np.stack([x, y], axis=1) / step)
    keep = np.concatenate(([True], np.any(np.diff(q, axis=0) != 0, axis=1)))
    keep[-1] = True
    return x[keep], y[keep]


def plot_det(
    path: str | os.PathLike, curves: Mapping[str, tuple], title: str = "DET curve"
) -> None:
    """Write DET curves on normal-deviate axes to a PNG at ``path``.

    Args:
        path: output ``.png`` file (parents created; written atomically).
        curves: name -> ``(fpr, fnr)`` arrays as returned by ``metrics.det_curve`` (fractions).
            Each curve's EER point is marked and given in the legend.
        title: figure title.
    """
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = _probit(DET_LIMITS)
    for name, (fpr, fnr) in curves.items():
        fpr = np.asarray(fpr, dtype=np.float64)
        fnr = np.asarray(fnr, dtype=np.float64)
        e = _eer_point(fpr, fnr)
        x, y = _thin(_probit(fpr), _probit(fnr))
        (line,) = ax.plot(x, y, lw=1.5, label=f"{name} (EER {100 * e:.2f}%)")
        ax.plot(_probit(e), _probit(e), "o", color=line.get_color(), ms=6)
    ax.plot([lo, hi], [lo, hi], ls="--", lw=0.8, color="grey")
    ticks = _probit(DET_TICKS)
    labels = [f"{100 * t:g}" for t in DET_TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("False acceptance rate (%)")
    ax.set_ylabel("False rejection rate (%)")
    ax.set_title(title)
    ax.grid(True, lw=0.5, alpha=0.5)
    ax.set_aspect("equal")
    if curves:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_score_hist(
    path: str | os.PathLike,
    scores,
    labels,
    thresholds: Mapping[str, float] | None = None,
    bins: int = 100,
    title: str = "Score distribution",
) -> None:
    """Write target and non-target score histograms (densities) to a PNG at ``path``.

    Args:
        scores: ``(N,)`` trial scores; labels: ``(N,)`` 1 target / 0 non-target.
        thresholds: optional name -> score, drawn as vertical lines (e.g. ``{"EER": 0.31}``).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    fig = _new_figure((7.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    finite = s[np.isfinite(s)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    for mask, name, color in ((~y, "non-target", "tab:red"), (y, "target", "tab:blue")):
        if mask.any():
            ax.hist(s[mask], bins=edges, density=True, alpha=0.5, color=color, label=name)
    for k, (name, t) in enumerate((thresholds or {}).items()):
        ax.axvline(float(t), ls="--", lw=1.0, color=f"C{(k + 2) % 10}", label=f"{name} = {t:.3f}")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_ape(path: str | os.PathLike, curve: Mapping, title: str = "Calibration") -> None:
    """Write applied-probability-of-error curves (``calibration.ape_curve``) to a PNG at
    ``path``: normalised Bayes error rate against the prior log-odds, for the model's LLR
    mapping (actual), the best monotone mapping in hindsight (minimum) and deciding without the
    score (default). Where actual rises above minimum, the calibration loses."""
    x = np.asarray(curve["logit_prior"], dtype=np.float64)
    fig = _new_figure((7.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(x, curve["default"], ls=":", lw=1.0, color="grey", label="default (no score)")
    ax.plot(x, curve["minimum"], lw=1.5, color="tab:green", label="minimum (PAV)")
    if curve.get("actual") is not None:
        ax.plot(x, curve["actual"], lw=1.5, color="tab:blue", label="actual (model's LLR)")
    else:
        title += " (the model has no LLR calibration: minimum only)"
    for p in (0.01, 0.05, 0.5):
        ax.axvline(np.log(p / (1 - p)), lw=0.6, color="grey", alpha=0.5)
    ax.set_ylim(0.0, 1.2)
    ax.set_xlabel("prior log-odds  logit P(target)  (lines: 0.01, 0.05, 0.5)")
    ax.set_ylabel("normalised Bayes error rate")
    ax.set_title(title, fontsize=10)
    ax.grid(True, lw=0.5, alpha=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
