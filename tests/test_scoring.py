from collections import namedtuple

import numpy as np
import pytest

from audiocl.errors import DataError
from audiocl.scoring.metrics import compute_metrics
from audiocl.scoring.scores import (
    as_norm_trials,
    calibration_from_metrics,
    cohort_stats,
    cosine_scores,
    score_pairs,
    trial_indices,
)

Trial = namedtuple("Trial", "label enroll test")


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_cosine_scores_range_and_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 16)) * 5  # not normalised
    b = rng.normal(size=(50, 16))
    s = cosine_scores(a, b)
    assert s.shape == (50,) and s.dtype == np.float32
    assert np.all((s >= -1) & (s <= 1))
    np.testing.assert_allclose(s, np.sum(_unit(a) * _unit(b), axis=1), atol=1e-6)
    assert cosine_scores(a, a) == pytest.approx(np.ones(50), abs=1e-6)
    assert cosine_scores(a, -a) == pytest.approx(-np.ones(50), abs=1e-6)
    assert np.all(np.abs(cosine_scores(a, a)) <= 1.0)


def test_score_pairs_chunks_match_direct():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(40, 8)).astype(np.float32)
    ei = rng.integers(0, 40, size=1000)
    ti = rng.integers(0, 40, size=1000)
    s = score_pairs(m, ei, ti, chunk_size=37)
    np.testing.assert_allclose(s, cosine_scores(m[ei], m[ti]), atol=1e-6)


def test_trial_indices_name_the_missing_key():
    keys = [f"spk{i}/u.wav" for i in range(3)]
    index = {k: i for i, k in enumerate(keys)}
    trials = [Trial(1, keys[0], keys[1]), (0, keys[2], keys[0])]
    ei, ti, labels = trial_indices(trials, index)
    np.testing.assert_array_equal(ei, [0, 2])
    np.testing.assert_array_equal(ti, [1, 0])
    np.testing.assert_array_equal(labels, [1, 0])
    with pytest.raises(DataError, match="trial 2"):
        trial_indices([trials[0], Trial(0, keys[0], "missing.wav")], index)


def _naive_as_norm(matrix, ei, ti, cohort, top_k):
    m = _unit(matrix.astype(np.float64))
    c = _unit(cohort.astype(np.float64))
    out = []
    for e, t in zip(ei, ti, strict=True):
        s = m[e] @ m[t]
        top_e = np.sort(c @ m[e])[::-1][:top_k]
        top_t = np.sort(c @ m[t])[::-1][:top_k]
        out.append(0.5 * ((s - top_e.mean()) / top_e.std() + (s - top_t.mean()) / top_t.std()))
    return np.array(out)


@pytest.mark.parametrize("top_k", [2, 10, 50, 1000])
def test_as_norm_matches_naive(top_k):
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(30, 12)).astype(np.float32)
    cohort = rng.normal(size=(80, 12)).astype(np.float32)
    ei = rng.integers(0, 30, size=200)
    ti = rng.integers(0, 30, size=200)
    got = as_norm_trials(matrix, ei, ti, cohort, top_k=top_k, chunk_size=7)
    ref = _naive_as_norm(matrix, ei, ti, cohort, min(top_k, 80))
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3)  # float32 vs float64


def test_as_norm_is_symmetric_and_rejects_bad_args():
    rng = np.random.default_rng(4)
    matrix = rng.normal(size=(10, 6))
    cohort = rng.normal(size=(20, 6))
    a = as_norm_trials(matrix, [0, 1, 2], [3, 4, 5], cohort, top_k=5)
    b = as_norm_trials(matrix, [3, 4, 5], [0, 1, 2], cohort, top_k=5)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    with pytest.raises(ValueError):
        cohort_stats(matrix, cohort, top_k=1)
    with pytest.raises(ValueError):
        cohort_stats(matrix, rng.normal(size=(20, 7)))


def test_as_norm_improves_separation_with_speaker_dependent_offsets():
    # Each speaker's embeddings share a "hub" direction with the cohort: raw scores of some
    # speakers are inflated; AS-Norm removes that, so the EER must fall well below the raw one.
    rng = np.random.default_rng(5)
    d, n_spk, n_utt = 32, 40, 6
    centers = _unit(rng.normal(size=(n_spk, d)))
    hub = _unit(rng.normal(size=d))
    weight = rng.uniform(0, 2, size=n_spk)[:, None]
    emb = np.concatenate(
        [
            centers[s] + weight[s] * hub + 0.8 * rng.normal(size=(n_utt, d)) / np.sqrt(d)
            for s in range(n_spk)
        ]
    )
    spk = np.repeat(np.arange(n_spk), n_utt)
    cohort = _unit(rng.normal(size=(200, d))) + weight.mean() * hub
    ei = rng.integers(0, len(emb), size=3000)
    ti = rng.integers(0, len(emb), size=3000)
    keep = ei != ti
    ei, ti = ei[keep], ti[keep]
    labels = (spk[ei] == spk[ti]).astype(int)
    raw = compute_metrics(score_pairs(emb, ei, ti), labels)["eer"]
    normed = compute_metrics(as_norm_trials(emb, ei, ti, cohort, top_k=50), labels)["eer"]
    assert raw > 0.05  # the offsets do hurt raw cosine scoring here
    assert normed < raw / 2  # (9.5% -> 1.6% with this seed; a no-op AS-Norm fails)


def test_calibration_from_metrics():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 2, size=400)
    scores = np.clip(0.2 + 0.4 * labels + 0.2 * rng.normal(size=400), -1, 1)
    m = compute_metrics(scores, labels)
    cal = calibration_from_metrics(m)
    assert cal["scale"] == "cosine"
    assert cal["threshold"] == cal["eer_threshold"] == m["eer_threshold"]
    assert cal["min_dcf_0.01_threshold"] == m["min_dcf_0.01_threshold"]
    assert cal["min_dcf_0.05_threshold"] == m["min_dcf_0.05_threshold"]
    assert cal["n_target"] == m["n_target"]
    with pytest.raises(ValueError, match="raw cosine"):
        calibration_from_metrics(m, score_scale="as-norm")
