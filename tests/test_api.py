"""The Python API: audiocl.load_model, Model.embed/verify/store/evaluate, lazy exports."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import audiocl
from audiocl.data.synth import synthesize_corpus
from audiocl.errors import AudioError, StoreError


@pytest.fixture(scope="module")
def assets(tmp_path_factory, make_tiny_model):
    root = tmp_path_factory.mktemp("api")
    data = synthesize_corpus(root / "data", speakers=3, utterances=3, duration=(1.0, 1.5))
    files = sorted(str(p) for p in data.rglob("*.flac"))
    return {"data": data, "files": files, "model_path": make_tiny_model(root / "model.pt")}


@pytest.fixture
def model(assets, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOCL_HOME", str(tmp_path / "home"))
    path = tmp_path / "model.pt"
    path.write_bytes(assets["model_path"].read_bytes())
    return audiocl.load_model(path)


def test_import_is_light():
    code = "import sys, audiocl; assert 'torch' not in sys.modules; print(audiocl.__version__)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert callable(audiocl.load_model) and audiocl.SpeakerStore.__name__ == "SpeakerStore"
    with pytest.raises(AttributeError):
        audiocl.no_such_thing  # noqa: B018


def test_embed_path_and_waveform(model, assets):
    import soundfile as sf

    f = assets["files"][0]
    e = model.embed(f)
    assert e.shape == (16,) and e.dtype == np.float32
    assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    wave, sr = sf.read(f, dtype="float32")
    np.testing.assert_allclose(model.embed(wave), e, atol=1e-5)
    np.testing.assert_allclose(model.embed(torch.from_numpy(wave), sample_rate=sr), e, atol=1e-5)
    # another rate is resampled to the model's
    slow = model.embed(wave[::2].copy(), sample_rate=8000)
    assert slow.shape == (16,) and float(slow @ e) > 0.9
    with pytest.raises(AudioError):
        model.embed(np.full(16000, np.nan, dtype=np.float32))
    many = model.embed_many(assets["files"][:3])
    np.testing.assert_allclose(many[0], e, atol=1e-5)


def test_verify_thresholds(model, assets):
    a, b = assets["files"][:2]
    r = model.verify(a, b)
    assert -1 <= r.score <= 1 and r.same is None and r.threshold is None
    assert r.threshold_source == "none" and r.decision == "unknown"
    r = model.verify(a, b, threshold=-1.0)
    assert r.same is True and r.threshold_source == "argument"
    assert model.verify(a, b, threshold=1.5).to_dict()["decision"] == "different"


def test_store_enroll_identify(model, assets, tmp_path):
    speakers = model.store(tmp_path / "s.db")
    f = assets["files"]
    speakers.enroll("alice", f[0:2])
    speakers.enroll("bob", f[3])
    assert len(speakers) == 2 and "alice" in speakers
    assert speakers.list()[0].count == 2
    ranking = speakers.identify(f[3], top=2)
    assert ranking[0][0] == "bob" and ranking[0][1] == pytest.approx(1.0, abs=1e-4)
    assert speakers.verify("bob", f[3], threshold=0.5).same is True
    speakers.rename("bob", "carol")
    speakers.remove("alice")
    assert [r.name for r in speakers.list()] == ["carol"]
    # the default store lives under AUDIOCL_HOME
    assert model.store().path.parent.name == "home"
    with pytest.raises(StoreError):
        speakers.verify("nobody", f[0])


def test_evaluate_and_calibrate(model, assets, tmp_path):
    report = model.evaluate(assets["data"] / "trials.txt", assets["data"], out=tmp_path / "ev")
    assert set(report["raw"]) >= {"eer", "min_dcf_0.01", "min_dcf_0.05", "n_target"}
    assert (tmp_path / "ev" / "det.png").is_file()
    report2 = model.evaluate(assets["data"] / "trials.txt", assets["data"], cohort=assets["data"])
    assert report2["files"]["cached"] == 9 and report2["as_norm"] is not None
    cal = model.calibrate(report["raw"], trials="trials.txt")
    r = model.verify(*assets["files"][:2])
    assert r.threshold == pytest.approx(cal["eer_threshold"]) and r.same is not None
    assert r.threshold_source.startswith("calibration, eer threshold")
    assert r.llr is None and r.p_same is None  # thresholds only: no evidence
    # and the file on disk carries it
    assert audiocl.load_model(model.path).calibration["threshold"] == pytest.approx(
        cal["threshold"]
    )


def test_calibrated_evidence_and_decision_rules(model, assets):
    """Calibrating on known scores: the LLR, P(same) and the three decision rules."""
    from audiocl.errors import ConfigError, ModelError

    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.3, 0.1, 500), rng.normal(0.1, 0.1, 5000)])
    labels = np.concatenate([np.ones(500), np.zeros(5000)])
    report = {"eer": 0.1, "eer_threshold": 0.35, "min_dcf_0.01": 0.5}
    report["min_dcf_0.01_threshold"] = 0.5
    cal = model.calibrate(report, trials="known", scores=scores, labels=labels)
    a, b = cal["llr"]["a"], cal["llr"]["b"]
    assert a == pytest.approx(20.0, rel=0.1)  # (0.3 - 0.1) / 0.1^2: equal variances
    f = assets["files"]
    r = model.verify(f[0], f[1], prior=0.2)
    assert r.llr == pytest.approx(a * r.score + b) and r.prior == 0.2
    assert r.p_same == pytest.approx(1 / (1 + np.exp(-r.llr) * 4))
    assert r.threshold == pytest.approx((np.log(4.0) - b) / a)
    assert r.threshold_source.startswith("calibration, Bayes threshold at prior 0.2")
    r = model.verify(f[0], f[1], far=0.01)
    measured = float((scores[labels == 0] >= r.threshold).mean())
    assert measured == pytest.approx(0.01, abs=0.002) and "false-accept rate 0.01" in (
        r.threshold_source
    )
    with pytest.raises(ConfigError, match="lowest it can estimate"):
        model.verify(f[0], f[1], far=0.001)
    assert model.verify(f[0], f[1], operating_point="eer").threshold == pytest.approx(0.35)
    # after calibration with thresholds only, "bayes" and --far are refused, eer still works
    model.calibrate(report)
    with pytest.raises(ModelError, match="LLR calibration"):
        model.verify(f[0], f[1], operating_point="bayes")
    with pytest.raises(ModelError, match="false-accept rate"):
        model.verify(f[0], f[1], far=0.01)


def test_load_default_model(assets, monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOCL_HOME", str(tmp_path))
    monkeypatch.setenv("AUDIOCL_MODEL", str(assets["model_path"]))
    m = audiocl.load_model()
    assert m.source == "AUDIOCL_MODEL" and m.model_id
