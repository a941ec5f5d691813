"""studies/study_backend.py: the LDA and WCCN it measures are the textbook ones."""

import importlib.util
from pathlib import Path

import numpy as np

PATH = Path(__file__).resolve().parents[1] / "studies" / "study_backend.py"


def load_study():
    spec = importlib.util.spec_from_file_location("study_backend", PATH)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    return study


def clusters(rng, n_per=50, classes=6):
    """Classes apart along dimension 0 only; dimension 1 is loud within-class noise."""
    labels = np.repeat(np.arange(classes), n_per)
    x = rng.normal(0, 0.05, (len(labels), 4))
    x[:, 0] += labels * 0.5
    x[:, 1] += rng.normal(0, 5.0, len(labels))
    return x, labels


def test_lda_finds_the_direction_that_separates_speakers():
    study = load_study()
    x, y = clusters(np.random.default_rng(0))
    mu, sw, sb = study.class_scatter(x, y)
    np.testing.assert_allclose(mu, x.mean(0))
    direction = study.lda(sw, sb, 1, shrink=0.0)[:, 0]
    assert abs(direction[0]) / np.linalg.norm(direction) > 0.99
    # a class with one utterance has no within-class spread to give: Sb only
    x1 = np.vstack([x, [[9.0, 0, 0, 0]]])
    _, sw1, _ = study.class_scatter(x1, np.append(y, 99))
    np.testing.assert_allclose(sw1, sw)


def test_wccn_whitens_within_class_scatter():
    study = load_study()
    x, y = clusters(np.random.default_rng(1))
    _, sw, _ = study.class_scatter(x, y)
    w = study.shrunk_inverse_root(sw, 0.0)
    np.testing.assert_allclose(w @ sw @ w, np.eye(4), atol=1e-6)
    # shrinkage moves it towards a scaled identity
    ws = study.shrunk_inverse_root(sw, 1.0)
    np.testing.assert_allclose(ws, np.eye(4) / np.sqrt(np.trace(sw) / 4), rtol=1e-6)


def test_back_ends_keep_raw_scores_and_skip_lda_wider_than_the_embedding():
    study = load_study()
    x, y = clusters(np.random.default_rng(2))
    fits = study.back_ends(x, y, lda_dims=[2, 8], shrinks=[0.1])
    assert set(fits) == {"raw", "centred", "wccn s=0.1", "lda 2 s=0.1"}
    mu, proj = fits["raw"]
    np.testing.assert_array_equal(x @ proj - mu, x)
