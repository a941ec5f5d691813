"""``audiocl adapt``: a model centred on the mean embedding of unlabelled in-domain speech."""

import importlib.util
import json

import numpy as np
import pytest

import audiocl
from audiocl.app.cli import main
from audiocl.data.synth import synthesize_corpus
from audiocl.errors import ModelMismatchError
from audiocl.modelfile import checkpoint

ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript"))


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    """24 recordings of 6 synthetic voices, in a folder tree."""
    return synthesize_corpus(
        tmp_path_factory.mktemp("domain"), speakers=6, utterances=4, duration=(1.0, 2.0)
    )


def _files(root):
    return sorted(root.rglob("*.flac"))


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_adapted_model_is_centred_on_the_domain_mean(tmp_path, make_tiny_model, domain, capsys):
    base = make_tiny_model(tmp_path / "base.pt", seed=4)
    out = tmp_path / "adapted.pt"
    assert main(["adapt", str(domain), "--model", str(base), "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    data = checkpoint.load(out)
    base_id = checkpoint.load(base)["model_id"]
    assert info["files"] == data["domain"]["files"] == 24 and info["skipped"] == []
    assert info["model_id"] == data["model_id"] != base_id
    assert info["adapted_from"] == data["domain"]["base_model_id"] == base_id
    assert info["calibrated"] is False and data["calibration"] is None

    files = _files(domain)
    raw = audiocl.load_model(base, min_speech=0.0).embed_many(files)
    got = audiocl.load_model(out, min_speech=0.0).embed_many(files)
    np.testing.assert_allclose(got, _unit(raw - raw.mean(0)), atol=1e-5)
    # the shared offset is gone: the domain's mean embedding is (near) zero after centring
    assert np.linalg.norm(got.mean(0)) < 0.2 * np.linalg.norm(raw.mean(0))

    # adapting again starts from the encoder's own embeddings, not the centred ones
    again = tmp_path / "again.pt"
    assert main(["adapt", *map(str, files), "--model", str(out), "--out", str(again)]) == 0
    assert checkpoint.load(again)["model_id"] == data["model_id"]
    assert "threshold: none yet" in capsys.readouterr().out


def test_adapted_model_takes_the_adapted_calibration(tmp_path, make_tiny_model, domain):
    base = make_tiny_model(tmp_path / "base.pt")
    data = checkpoint.load(base)
    data["calibration"] = {"eer_threshold": 0.6, "threshold": 0.6}
    data["adapted_calibration"] = {"eer_threshold": 0.25, "threshold": 0.25, "trials": "held out"}
    checkpoint.save(base, data)
    model = audiocl.load_model(base, min_speech=0.0)
    adapted = model.adapt([domain], tmp_path / "a.pt")
    assert adapted.threshold() == (0.25, "calibration, eer threshold on held out")
    assert model.threshold()[0] == 0.6  # the original file is untouched
    assert checkpoint.load(base)["calibration"]["eer_threshold"] == 0.6


def test_a_store_of_the_unadapted_model_refuses_the_adapted_one(tmp_path, make_tiny_model, domain):
    base = audiocl.load_model(make_tiny_model(tmp_path / "base.pt"), min_speech=0.0)
    files = _files(domain)
    base.store(tmp_path / "s.db").enroll("alice", files[:2])
    adapted = base.adapt(files, tmp_path / "a.pt")
    with pytest.raises(ModelMismatchError):
        adapted.store(tmp_path / "s.db").verify("alice", files[3])


def test_adapt_refuses_bad_input(tmp_path, make_tiny_model, domain, capsys):
    base = str(make_tiny_model(tmp_path / "base.pt"))
    out = tmp_path / "a.pt"
    few = [str(f) for f in _files(domain)[:5]]
    assert main(["adapt", *few, "--model", base, "--out", str(out)]) == 3
    assert "at least 20 recordings" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["adapt", str(tmp_path / "empty"), "--model", base, "--out", str(out)]) == 3
    assert "no audio files" in capsys.readouterr().err
    missing = tmp_path / "gone.wav"
    args = ["adapt", str(domain), str(missing), "--model", base, "--out", str(out)]
    assert main(args) == 3
    assert str(missing) in capsys.readouterr().err
    assert not out.exists()

    ckpt = checkpoint.load(base)
    ckpt.update(format=checkpoint.CHECKPOINT_FORMAT, optimizer={}, scheduler={})
    checkpoint.save(tmp_path / "ckpt.pt", ckpt)
    args = ["adapt", str(domain), "--model", str(tmp_path / "ckpt.pt"), "--out", str(out)]
    assert main(args) == 4
    assert "not a checkpoint" in capsys.readouterr().err

    # a domain mean that does not fit the embeddings (a damaged file) is named, not a traceback
    good = audiocl.load_model(base, min_speech=0.0).adapt([domain], tmp_path / "good.pt")
    data = checkpoint.load(good.path)
    data["domain"]["mean"] = data["domain"]["mean"][:5]
    checkpoint.save(tmp_path / "cut.pt", data)
    args = ["verify", str(_files(domain)[0]), str(_files(domain)[1])]
    assert main([*args, "--model", str(tmp_path / "cut.pt"), "--threshold", "0.5"]) == 4
    assert f"{tmp_path / 'cut.pt'}: the domain mean has 5 values" in capsys.readouterr().err

    # --skip-bad leaves an unreadable recording out and says so
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio at all")
    args = [str(a) for a in ("adapt", domain, bad, "--model", base, "--out", out)]
    assert main(args) == 3
    assert f"{bad}: cannot decode" in capsys.readouterr().err
    rc = main([*args, "--skip-bad", "--json"])
    captured = capsys.readouterr()
    assert rc == 0 and f"skipping {bad}" in captured.err
    info = json.loads(captured.out)
    assert info["files"] == 24 and info["skipped"][0]["file"] == str(bad)


@pytest.mark.skipif(not ONNX, reason="the onnx extra is not installed")
def test_exported_adapted_model_keeps_the_centring(tmp_path, make_tiny_model, domain, capsys):
    base = audiocl.load_model(make_tiny_model(tmp_path / "base.pt", seed=2), min_speech=0.0)
    adapted = base.adapt([domain], tmp_path / "a.pt")
    onnx_file = tmp_path / "a.onnx"
    assert main(["export", str(tmp_path / "a.pt"), "--onnx", str(onnx_file)]) == 0
    exported = audiocl.load_model(onnx_file, min_speech=0.0)
    assert exported.model_id == adapted.model_id
    files = _files(domain)[:4]
    cos = (exported.embed_many(files) * adapted.embed_many(files)).sum(1)
    assert cos.min() > 0.9999
    assert (
        main(["adapt", str(domain), "--model", str(onnx_file), "--out", str(tmp_path / "x")]) == 4
    )
    assert "adapt the model file (.pt)" in capsys.readouterr().err
