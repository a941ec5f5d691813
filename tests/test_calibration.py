"""Score-to-LLR calibration, Cllr / minCllr (PAV), actDCF and false-accept thresholds, checked
against closed-form answers on Gaussian scores and against a brute-force PAV."""

import numpy as np
import pytest

from audiocl.errors import ConfigError, DataError
from audiocl.scoring import calibration as cal
from audiocl.scoring.metrics import min_dcf


def gaussian_trials(n=20000, mu=1.0, sigma=1.0, seed=0):
    """Targets ~ N(mu, sigma^2), non-targets ~ N(-mu, sigma^2): true LLR = 2 mu s / sigma^2."""
    rng = np.random.default_rng(seed)
    s = np.concatenate([rng.normal(mu, sigma, n), rng.normal(-mu, sigma, n)])
    y = np.concatenate([np.ones(n, bool), np.zeros(n, bool)])
    return s, y, 2 * mu / sigma**2


def closed_form_cllr(m: float) -> float:
    """Cllr of true Gaussian LLRs: L ~ N(m, 2m) on targets (and N(-m, 2m) on non-targets)."""
    from scipy.integrate import quad
    from scipy.stats import norm

    f = lambda x: np.logaddexp(0.0, -x) * norm.pdf(x, m, np.sqrt(2 * m))  # noqa: E731
    return quad(f, m - 12 * np.sqrt(2 * m), m + 12 * np.sqrt(2 * m))[0] / np.log(2)


def naive_pav(scores, labels):
    """Brute force: pool ties, then merge the first violating adjacent pair until none is left."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    values = sorted(set(s))
    blocks = [[int(y[s == v].sum()), int((s == v).sum()), [v]] for v in values]
    merged = True
    while merged:
        merged = False
        for i in range(len(blocks) - 1):
            a, b = blocks[i], blocks[i + 1]
            if a[0] / a[1] >= b[0] / b[1]:
                blocks[i : i + 2] = [[a[0] + b[0], a[1] + b[1], a[2] + b[2]]]
                merged = True
                break
    post = {v: t / c for t, c, vs in blocks for v in vs}
    prior_odds = y.sum() / (~y).sum()
    with np.errstate(divide="ignore"):
        return np.array([np.log(post[v]) - np.log1p(-post[v]) - np.log(prior_odds) for v in s])


def test_logistic_fit_recovers_the_true_llr_of_gaussian_scores():
    s, y, slope = gaussian_trials(mu=0.5, sigma=0.5)
    rec = cal.fit_calibration(s, y)
    assert rec["llr"]["a"] == pytest.approx(slope, rel=0.03)
    assert abs(rec["llr"]["b"]) < 0.05


def test_fit_is_independent_of_the_target_proportion():
    s, y, _ = gaussian_trials(n=20000)
    keep = np.concatenate([np.arange(2000), np.arange(20000, 40000)])  # 1 target in 11
    rec = cal.fit_calibration(s[keep], y[keep])
    assert rec["llr"]["a"] == pytest.approx(2.0, rel=0.06)
    assert abs(rec["llr"]["b"]) < 0.1


def test_cllr_matches_the_closed_form_and_min_cllr_the_fitted_value():
    s, y, slope = gaussian_trials()
    true_llr = slope * s
    expected = closed_form_cllr(2.0)  # m = 2 mu^2 / sigma^2
    assert cal.cllr(true_llr, y) == pytest.approx(expected, abs=0.01)
    assert cal.min_cllr(s, y) == pytest.approx(expected, abs=0.015)
    assert cal.min_cllr(s, y) <= cal.cllr(true_llr, y) + 1e-9
    # badly scaled or shifted LLRs lose calibration, never discrimination
    assert cal.cllr(3 * true_llr, y) > expected + 0.05
    assert cal.cllr(true_llr + 3, y) > expected + 0.1
    assert cal.min_cllr(3 * s + 1, y) == pytest.approx(cal.min_cllr(s, y), abs=1e-9)


def test_cllr_reference_points():
    y = np.array([1, 1, 0, 0, 0])
    assert cal.cllr(np.zeros(5), y) == pytest.approx(1.0)
    assert cal.min_cllr([0.9, 0.8, 0.1, 0.2, 0.3], y) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(DataError, match="target and non-target"):
        cal.cllr([1.0, 2.0], [1, 1])


@pytest.mark.parametrize("seed", range(5))
def test_pav_matches_a_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 12, 60) / 4.0  # many ties
    y = rng.random(60) < 0.3 + 0.04 * s
    y[:2] = [True, False]
    np.testing.assert_allclose(cal.pav_llr(s, y), naive_pav(s, y), rtol=1e-12, atol=1e-12)


def test_act_dcf_of_true_llrs_meets_min_dcf_and_a_shift_costs():
    s, y, slope = gaussian_trials(n=50000)
    for p in (0.01, 0.05):
        best, _ = min_dcf(s, y, p_target=p)
        assert cal.act_dcf(slope * s, y, p) == pytest.approx(best, abs=0.02)
        assert cal.act_dcf(slope * s + 4, y, p) > best + 0.2


def test_bayes_threshold_and_p_same_agree():
    assert cal.p_same(0.0, 0.5) == pytest.approx(0.5)
    for prior in (0.01, 0.3, 0.9):
        t = cal.bayes_threshold(prior)
        assert cal.p_same(t, prior) == pytest.approx(0.5)
        assert cal.p_same(t + 0.1, prior) > 0.5 > cal.p_same(t - 0.1, prior)


def test_far_threshold_lets_through_the_stated_rate():
    rng = np.random.default_rng(1)
    non = rng.normal(0.0, 0.1, 20000)
    table = cal.far_table(non)
    for far in (0.1, 0.01, 0.002):
        t = cal.far_threshold(table, far)
        measured = float((non >= t).mean())
        assert measured <= far * 1.05
        assert measured == pytest.approx(far, rel=0.15)
    with pytest.raises(ConfigError, match="lowest it can estimate is 0.0015"):
        cal.far_threshold(table, 0.001)
    with pytest.raises(DataError, match="at least 60 non-target"):
        cal.far_table(non[:50])


def test_too_few_non_targets_keep_the_llr_but_no_far_table():
    s, y, _ = gaussian_trials(n=40)
    rec = cal.fit_calibration(s, y)
    assert rec["far"] is None and rec["llr"]["a"] > 0


def test_ape_curve_actual_at_or_above_minimum():
    s, y, slope = gaussian_trials(n=5000)
    rec = {"llr": {"a": slope, "b": 2.0}}
    curve = cal.ape_curve(s, y, rec)
    assert curve["actual"].shape == curve["minimum"].shape == (57,)
    assert np.all(curve["actual"] >= curve["minimum"] - 1e-9)
    assert np.all(curve["minimum"] <= 1.0 + 1e-9)
    assert cal.ape_curve(s, y)["actual"] is None


def test_study_folds_never_fit_on_the_speakers_they_score(monkeypatch):
    """studies/study_calibration.py: a fold's LLRs come from a mapping fitted on trials that
    share no speaker with the fold's own trials."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "studies" / "study_calibration.py"
    spec = importlib.util.spec_from_file_location("study_calibration", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    rng = np.random.default_rng(0)
    spk = np.array([f"s{k}" for k in range(12)])
    e, t = rng.choice(spk, 4000), rng.choice(spk, 4000)
    y = e == t
    s = np.where(y, rng.normal(1, 1, 4000), rng.normal(-1, 1, 4000))
    who = {float(v): {a, b} for v, a, b in zip(s, e, t, strict=True)}  # scores are distinct
    fitted, applied = [], []
    real_fit, real_apply = cal.fit_calibration, cal.apply_llr
    monkeypatch.setattr(cal, "fit_calibration", lambda x, *a: fitted.append(x) or real_fit(x, *a))
    monkeypatch.setattr(cal, "apply_llr", lambda r, x: applied.append(x) or real_apply(r, x))
    llr, yy, ss = study.fold_llrs(s, y, e, t, folds=3)
    assert len(fitted) == len(applied) == 3
    for train, scored in zip(fitted, applied, strict=True):
        seen = set().union(*(who[float(v)] for v in train))
        scored_spk = set().union(*(who[float(v)] for v in scored))
        assert seen and scored_spk and not seen & scored_spk
    assert llr.shape == yy.shape == ss.shape and yy.size == sum(map(len, applied)) < y.size
    assert 0 < yy.sum() < yy.size and cal.cllr(llr, yy) >= cal.min_cllr(ss, yy) - 1e-9
