"""Fusion weights fitted on calibration trials (``audiocl.scoring.fusion``) and
``audiocl ensemble --fit-weights``."""

import json

import numpy as np
import pytest

import audiocl
from audiocl.app.cli import main
from audiocl.data.synth import synthesize_corpus
from audiocl.errors import DataError
from audiocl.modelfile import checkpoint
from audiocl.scoring.fusion import fit_fusion_weights


def gaussian_members(n=20000, sigmas=(0.1, 0.2), seed=0):
    """Scores ``(M, N)`` of independent members: target mean 0.5, non-target 0.2, member i's
    spread ``sigmas[i]``. The true LLR is linear, each member weighted by ``0.3 / sigma_i**2``."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.2
    s = np.stack([np.where(y, 0.5, 0.2) + rng.normal(0, sd, n) for sd in sigmas])
    return s, y


def test_fit_finds_the_optimal_weights_of_gaussian_members():
    s, y = gaussian_members()
    w = fit_fusion_weights(s, y)
    # ideal weights proportional to 1 / sigma^2: 1/0.01 : 1/0.04 = 0.8 : 0.2
    np.testing.assert_allclose(w, [0.8, 0.2], atol=0.03)
    assert w.sum() == pytest.approx(1.0)


def test_a_useless_member_gets_no_weight_and_the_prior_does_not_move_weights():
    s, y = gaussian_members(sigmas=(0.1,))
    rng = np.random.default_rng(1)
    noise = rng.normal(0.3, 0.2, y.size)
    anti = np.where(y, 0.2, 0.5) + rng.normal(0, 0.1, y.size)  # ranks trials backwards
    w = fit_fusion_weights(np.stack([s[0], noise, anti]), y)
    assert w[0] > 0.97 and w[1] < 0.03 and w[2] < 0.01  # a member never counts against
    np.testing.assert_allclose(fit_fusion_weights(s, y), [1.0])  # one member: all of it
    # the effective prior shifts the offset, hardly the direction, on Gaussian scores
    s2, y2 = gaussian_members()
    np.testing.assert_allclose(fit_fusion_weights(s2, y2, prior=0.05), [0.8, 0.2], atol=0.04)


def test_fit_refuses_what_it_cannot_fit():
    s, y = gaussian_members(n=100)
    with pytest.raises(DataError, match="target and non-target"):
        fit_fusion_weights(s, np.zeros(100))
    bad = s.copy()
    bad[1, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fit_fusion_weights(bad, y)
    with pytest.raises(ValueError, match="must be"):
        fit_fusion_weights(s[:, :50], y)


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    return synthesize_corpus(
        tmp_path_factory.mktemp("cal"), speakers=4, utterances=3, duration=(1.0, 1.5)
    )


def test_ensemble_fit_weights_stores_the_fit_of_its_members_scores(
    tmp_path, make_tiny_model, calibration, capsys
):
    a = make_tiny_model(tmp_path / "a.pt", seed=1)
    b = make_tiny_model(tmp_path / "b.pt", seed=2)
    trials = calibration / "trials.txt"
    out = tmp_path / "ab.pt"
    cal = ["--fit-weights", str(trials), "--audio-root", str(calibration), "--quiet"]
    assert main(["ensemble", str(a), str(b), *cal, "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)

    results = [
        audiocl.load_model(p).evaluate(trials, calibration, cache=False, result=True)
        for p in (a, b)
    ]
    expected = fit_fusion_weights(np.stack([r.raw for r in results]), results[0].labels)
    np.testing.assert_allclose(checkpoint.load(out)["ensemble_weights"], expected, atol=1e-6)
    np.testing.assert_allclose(info["weights"], expected, atol=1e-6)
    assert info["fitted_on"]["member_eer"] == [r.metrics["raw"]["eer"] for r in results]

    capsys.readouterr()
    both = ["ensemble", str(a), str(b), *cal, "--weights", "1", "1", "--out", str(out)]
    assert main(both) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["ensemble", str(a), str(b), "--fit-weights", str(trials), "--out", str(out)]) == 2
    assert "needs --audio-root" in capsys.readouterr().err
