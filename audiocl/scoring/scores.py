"""Cosine scoring of trials, AS-Norm, and the calibration record stored in a model.

All arrays are numpy float32. Embeddings are ``(M, D)``; scores are raw cosine in [-1, 1]
unless a function says it returns AS-Norm scores (which are on another, unbounded scale).

Typical use (the embeddings come from the embedder, one row per distinct file)::

    index = {utt_id: row for row, utt_id in enumerate(utt_ids)}
    enroll_idx, test_idx, labels = trial_indices(trials, index)
    raw = score_pairs(matrix, enroll_idx, test_idx)
    metrics = compute_metrics(raw, labels)
    normed = as_norm_trials(matrix, enroll_idx, test_idx, cohort, top_k=300, scores=raw)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ..errors import DataError

CALIBRATION_SCALE = "cosine"


def l2_normalize(x, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` ``(..., D)`` scaled to unit length, float32. Zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, eps)


def cosine_scores(emb_a, emb_b) -> np.ndarray:
    """Row-wise cosine of ``emb_a (N, D)`` and ``emb_b (N, D)`` -> ``(N,)`` float32 in [-1, 1].

    The inputs are normalised here, so they need not be unit length. ``(D,)`` inputs are
    treated as one row.
    """
    a = l2_normalize(np.atleast_2d(emb_a))
    b = l2_normalize(np.atleast_2d(emb_b))
    if a.shape != b.shape:
        raise ValueError(f"embedding shapes differ: {a.shape} vs {b.shape}")
    return np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0)


def _trial_fields(trial) -> tuple[int, str, str]:
    if hasattr(trial, "enroll"):
        return int(trial.label), str(trial.enroll), str(trial.test)
    label, enroll, test = trial  # (label, enroll, test), the order of trials.Trial
    return int(label), str(enroll), str(test)


def trial_indices(
    trials: Iterable, index: Mapping[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map trials to embedding rows.

    Args:
        trials: ``Trial(label, enroll, test)`` objects (or ``(label, enroll, test)`` tuples).
        index: key (utterance id / path as written in the trial list) -> row of the matrix.

    Returns:
        ``(enroll_idx, test_idx, labels)``, each ``(N,)`` (int64, int64, int8).

    Raises:
        DataError: a trial names a key that ``index`` lacks (the message gives the trial number,
        1-based, and the key).
    """
    enroll_idx, test_idx, labels = [], [], []
    for n, trial in enumerate(trials, start=1):
        label, e, t = _trial_fields(trial)
        try:
            enroll_idx.append(index[e])
            test_idx.append(index[t])
        except KeyError as exc:
            raise DataError(f"trial {n}: no embedding for {exc.args[0]!r}") from None
        labels.append(label)
    return (
        np.asarray(enroll_idx, dtype=np.int64),
        np.asarray(test_idx, dtype=np.int64),
        np.asarray(labels, dtype=np.int8),
    )


def score_pairs(
    matrix, enroll_idx, test_idx, chunk_size: int = 8192, normalize: bool = True
) -> np.ndarray:
    """Cosine scores of row pairs of one embedding matrix.

    Args:
        matrix: ``(M, D)`` embeddings, one row per distinct utterance.
        enroll_idx, test_idx: ``(N,)`` integer rows of ``matrix``.
        chunk_size: trials gathered at a time (``2 * chunk_size * D`` floats; small enough to stay
            in cache, which is faster than one big gather).
        normalize: L2-normalise the rows of ``matrix`` first (once per row, not per trial).

    Returns:
        ``(N,)`` float32 cosine scores in [-1, 1].
    """
    m = l2_normalize(matrix) if normalize else np.asarray(matrix, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"matrix must be (M, D), got shape {m.shape}")
    ei = np.asarray(enroll_idx, dtype=np.int64).reshape(-1)
    ti = np.asarray(test_idx, dtype=np.int64).reshape(-1)
    if ei.shape != ti.shape:
        raise ValueError(f"index arrays differ in length: {ei.size} vs {ti.size}")
    out = np.empty(ei.size, dtype=np.float32)
    for lo in range(0, ei.size, chunk_size):
        hi = min(lo + chunk_size, ei.size)
        a = np.take(m, ei[lo:hi], axis=0)
        b = np.take(m, ti[lo:hi], axis=0)
        np.einsum("ij,ij->i", a, b, out=out[lo:hi])
    return np.clip(out, -1.0, 1.0, out=out)


# --------------------------------------------------------------------------------------- AS-Norm


def cohort_stats(
    emb, cohort, top_k: int = 300, chunk_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each embedding's ``top_k`` highest cohort cosines.

    Args:
        emb: ``(M, D)`` embeddings.
        cohort: ``(C, D)`` cohort embeddings (speakers disjoint from the trials').
        top_k: cohort scores kept per embedding; clamped to ``C``; must be >= 2.
        chunk_size: rows of ``emb`` scored at a time (bounds memory at ``chunk_size * C`` floats).

    Returns:
        ``(mean (M,), std (M,))`` float32; std is the population std (ddof 0), floored at 1e-6.
    """
    e = l2_normalize(np.atleast_2d(emb))
    c = l2_normalize(np.atleast_2d(cohort))
    if e.shape[1] != c.shape[1]:
        raise ValueError(f"embedding dim {e.shape[1]} differs from cohort dim {c.shape[1]}")
    if top_k < 2:
        raise ValueError(f"top_k must be at least 2, got {top_k}")
    n_c = c.shape[0]
    if n_c < 2:
        raise DataError(f"the AS-Norm cohort needs at least 2 embeddings, got {n_c}")
    k = min(top_k, n_c)
    # torch for the (chunk, C) product and the top-k: its topk is ~2.5x faster than
    # np.partition here (and argpartition slower still); the arrays are shared, not copied.
    import torch

    mean = np.empty(e.shape[0], dtype=np.float32)
    std = np.empty(e.shape[0], dtype=np.float32)
    ct = torch.from_numpy(np.ascontiguousarray(c.T))
    with torch.inference_mode():
        for lo in range(0, e.shape[0], chunk_size):
            s = torch.from_numpy(e[lo : lo + chunk_size]) @ ct  # (chunk, C)
            top = s.topk(k, dim=1, sorted=False).values if k < n_c else s
            mean[lo : lo + len(s)] = top.mean(dim=1).numpy()
            std[lo : lo + len(s)] = top.std(dim=1, correction=0).numpy()
    return mean, np.maximum(std, 1e-6, out=std)


def as_norm(scores, enroll_mean, enroll_std, test_mean, test_std) -> np.ndarray:
    """Adaptive symmetric normalisation of ``(N,)`` raw scores given per-trial cohort statistics.

    ``s' = 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)``; every argument is ``(N,)``.
    The result is NOT a cosine: it is unbounded, so thresholds learnt on it do not apply to raw
    cosine scores.
    """
    s = np.asarray(scores, dtype=np.float32)
    return (0.5 * ((s - enroll_mean) / enroll_std + (s - test_mean) / test_std)).astype(
        np.float32, copy=False
    )


def as_norm_trials(
    matrix,
    enroll_idx,
    test_idx,
    cohort,
    top_k: int = 300,
    scores=None,
    chunk_size: int = 4096,
) -> np.ndarray:
    """AS-Norm scores of trials given as row pairs of ``matrix (M, D)``.

    Cohort statistics are computed once per distinct embedding used by the trials (not per trial),
    then gathered. ``scores`` are the raw cosine scores if already computed (else computed here).
    If a trial's own utterances are in the cohort they take part in its top-k like any other
    cohort member; keep the cohort disjoint from the evaluation speakers.

    Returns ``(N,)`` float32 AS-Norm scores.
    """
    m = l2_normalize(matrix)
    ei = np.asarray(enroll_idx, dtype=np.int64).reshape(-1)
    ti = np.asarray(test_idx, dtype=np.int64).reshape(-1)
    if scores is None:
        scores = score_pairs(m, ei, ti, normalize=False)
    used, inverse = np.unique(np.concatenate((ei, ti)), return_inverse=True)
    mean, std = cohort_stats(m[used], cohort, top_k=top_k, chunk_size=chunk_size)
    inv_e, inv_t = inverse[: ei.size], inverse[ei.size :]
    return as_norm(scores, mean[inv_e], std[inv_e], mean[inv_t], std[inv_t])


# ------------------------------------------------------------------------------------ calibration


def calibration_from_metrics(metrics: Mapping, score_scale: str = CALIBRATION_SCALE) -> dict:
    """The calibration record a model stores for ``verify`` (from :func:`metrics.compute_metrics`).

    ``verify`` compares RAW cosine scores with these thresholds ("same speaker" when
    ``score >= threshold``), so the metrics must come from raw cosine scores: AS-Norm scores
    live on another scale and their thresholds would be meaningless there. Passing any other
    ``score_scale`` raises ``ValueError``.

    Returns ``{"scale": "cosine", "threshold": eer_threshold, "eer_threshold", "eer",
    "min_dcf_<p>_threshold", "min_dcf_<p>", ..., "n_target", "n_nontarget"}``.
    """
    if score_scale != CALIBRATION_SCALE:
        raise ValueError(
            f"calibration must come from raw cosine scores, not {score_scale!r} scores: "
            "verify compares raw cosine with the stored thresholds"
        )
    out = {
        "scale": CALIBRATION_SCALE,
        "decision": "same speaker when score >= threshold",
        "threshold": float(metrics["eer_threshold"]),
        "eer_threshold": float(metrics["eer_threshold"]),
        "eer": float(metrics["eer"]),
    }
    for key in sorted(metrics):
        if key.startswith("min_dcf_"):
            out[key] = float(metrics[key])
    for key in ("n_target", "n_nontarget"):
        if key in metrics:
            out[key] = int(metrics[key])
    return out
