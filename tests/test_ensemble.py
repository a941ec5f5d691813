"""``audiocl ensemble``: independently trained encoders as one model whose score is the mean of
theirs, usable everywhere a trained model is."""

import importlib.util
import json

import numpy as np
import pytest

import audiocl
from audiocl.app.cli import main
from audiocl.config import ConfigError
from audiocl.data.synth import synthesize_corpus
from audiocl.errors import ModelError
from audiocl.modelfile import checkpoint
from audiocl.training.recipe import load_config

ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript"))


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    root = synthesize_corpus(
        tmp_path_factory.mktemp("voices"), speakers=3, utterances=2, duration=(1.0, 2.0)
    )
    return sorted(root.rglob("*.flac"))


@pytest.fixture
def members(tmp_path, make_tiny_model):
    a = make_tiny_model(tmp_path / "a.pt", seed=1)
    b = make_tiny_model(tmp_path / "b.pt", seed=2)
    data = checkpoint.load(b)
    data.update(step=300, name="run b", license="CC BY 4.0", speakers=["s2", "s3"])
    checkpoint.save(b, data)
    data = checkpoint.load(a)
    data.update(step=200, license="CC BY 4.0", speakers=["s1", "s2"])
    checkpoint.save(a, data)
    return a, b


def test_ensemble_scores_the_mean_of_its_members(tmp_path, members, voices, capsys):
    a, b = members
    out = tmp_path / "ab.pt"
    assert main(["ensemble", str(a), str(b), "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    data = checkpoint.load(out)
    assert info["model_id"] == data["model_id"] == checkpoint.model_id(data["encoder"])
    assert info["embed_dim"] == 32 and data["config"]["model"]["members"] == 2
    assert data["calibration"] is None and data["step"] == 500
    assert data["speakers"] == ["s1", "s2", "s3"]
    assert data["license"] == "CC BY 4.0" and "name" not in data  # only what all share
    assert [m["name"] for m in data["ensemble_of"] if "name" in m] == ["run b"]
    assert [m["model_id"] for m in data["ensemble_of"]] == [
        checkpoint.load(p)["model_id"] for p in (a, b)
    ]

    ma, mb, mab = (audiocl.load_model(p, min_speech=0.0) for p in (a, b, out))
    ea, eb, eab = (m.embed_many(voices) for m in (ma, mb, mab))
    assert eab.shape == (len(voices), 32)
    np.testing.assert_allclose(np.linalg.norm(eab, axis=1), 1.0, atol=1e-5)
    # recordings under 30 s are one piece: the ensemble's cosine is the mean of the members'
    np.testing.assert_allclose(eab @ eab.T, (ea @ ea.T + eb @ eb.T) / 2, atol=1e-5)
    assert mab.model_id not in (ma.model_id, mb.model_id)


def test_ensemble_is_a_model_everywhere(tmp_path, members, voices, capsys):
    out = tmp_path / "ab.pt"
    assert main(["ensemble", *map(str, members), "--out", str(out)]) == 0
    db = tmp_path / "s.db"
    assert (
        main(["enroll", "--name", "x", str(voices[0]), "--model", str(out), "--db", str(db)]) == 0
    )
    capsys.readouterr()
    rc = main(["verify", str(voices[1]), "--speaker", "x", "--model", str(out), "--db", str(db),
               "--threshold", "0.5", "--json"])  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert rc in (0, 1) and result["decision"] in ("same", "different")
    # a store of one member refuses the ensemble: other embeddings
    db_a = tmp_path / "a.db"
    assert (
        main(
            ["enroll", "--name", "x", str(voices[0]), "--model", str(members[0]), "--db", str(db_a)]
        )
        == 0
    )
    assert main(["verify", str(voices[1]), "--speaker", "x", "--model", str(out),
                 "--db", str(db_a), "--threshold", "0.5"]) == 5  # fmt: skip
    # adapting the ensemble centres its concatenated embeddings
    adapted = audiocl.load_model(out, min_speech=0.0).adapt(voices * 4, tmp_path / "ad.pt")
    assert adapted.embed(voices[0]).shape == (32,)


@pytest.mark.skipif(not ONNX, reason="the onnx extra is not installed")
def test_exported_ensemble_matches_torch(tmp_path, members, voices):
    out = tmp_path / "ab.pt"
    assert main(["ensemble", *map(str, members), "--out", str(out)]) == 0
    assert main(["export", str(out), "--onnx", str(tmp_path / "ab.onnx")]) == 0
    exported = audiocl.load_model(tmp_path / "ab.onnx", min_speech=0.0)
    torch_model = audiocl.load_model(out, min_speech=0.0)
    assert exported.model_id == torch_model.model_id
    cos = (exported.embed_many(voices) * torch_model.embed_many(voices)).sum(1)
    assert cos.min() > 0.9999


def test_ensemble_refuses_what_it_cannot_combine(tmp_path, members, voices, capsys):
    a, b = members
    x = tmp_path / "x.pt"
    assert main(["ensemble", str(a), "--out", str(x)]) == 4
    assert "needs at least two" in capsys.readouterr().err
    wide = checkpoint.load(a)
    wide["config"]["model"]["channels"] = 64
    checkpoint.save(tmp_path / "wide.pt", wide)
    assert main(["ensemble", str(a), str(tmp_path / "wide.pt"), "--out", str(x)]) == 4
    assert "wide.pt: its weights do not fit its config" in capsys.readouterr().err
    slow = checkpoint.load(a)
    slow["config"]["data"]["sample_rate"] = 8000
    checkpoint.save(tmp_path / "8k.pt", slow)
    with pytest.raises(ModelError, match="8k.pt: takes 8000 Hz audio"):
        checkpoint.ensemble([a, tmp_path / "8k.pt"])
    assert main(["ensemble", str(a), str(b), "--out", str(tmp_path / "ab.pt")]) == 0
    both = str(tmp_path / "ab.pt")
    assert main(["ensemble", both, both, "--out", str(x)]) == 4
    assert "ab.pt: is an ensemble already" in capsys.readouterr().err
    audiocl.load_model(a, min_speech=0.0).adapt(voices * 4, tmp_path / "ad.pt")
    with pytest.raises(ModelError, match="ad.pt: is adapted"):
        checkpoint.ensemble([tmp_path / "ad.pt", b])
    assert not x.exists()


def test_training_refuses_an_ensemble_config(tmp_path):
    with pytest.raises(ConfigError, match="model.members: training builds one encoder"):
        load_config(None, ["model.members=2"])


def other_architecture(path, seed=5):
    """A small ResNet34 with SpeechBrain's front end (80 mels) and 24-dim embeddings: another
    architecture, front end and embedding size than ``make_tiny_model``'s ECAPA."""
    import torch

    from audiocl.config import Config, to_dict
    from audiocl.nn.encoders import build_encoder

    cfg = Config()
    cfg.model.encoder, cfg.model.base_channels, cfg.model.embed_dim = "resnet34", 4, 24
    cfg.features.frontend, cfg.features.low_freq = "speechbrain", 0.0
    torch.manual_seed(seed)
    state = build_encoder(cfg.model, cfg.features.n_mels).state_dict()
    checkpoint.save(path, checkpoint.make_model_file(state, to_dict(cfg), step=0))
    return path


def test_mixed_ensemble_fuses_other_architectures_with_weights(tmp_path, members, voices, capsys):
    a = members[0]
    c = other_architecture(tmp_path / "c.pt")
    out, even = tmp_path / "ac.pt", tmp_path / "even.pt"
    args = ["ensemble", str(a), str(c), "--out", str(out), "--weights", "0.7", "0.3", "--json"]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["embed_dim"] == 16 + 24 and info["weights"] == pytest.approx([0.7, 0.3])
    data = checkpoint.load(out)
    assert data["config"]["model"]["encoder"] == "mixed"
    assert [m["config"]["features"]["frontend"] for m in data["ensemble_of"]] == [
        "fbank",
        "speechbrain",
    ]
    ma, mc, mac = (audiocl.load_model(p, min_speech=0.0) for p in (a, c, out))
    ea, ec, eac = (m.embed_many(voices[:3]) for m in (ma, mc, mac))
    assert eac.shape == (3, 40) and mac.embed_dim == 40
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        want = 0.7 * float(ea[i] @ ea[j]) + 0.3 * float(ec[i] @ ec[j])
        assert float(eac[i] @ eac[j]) == pytest.approx(want, abs=1e-5)
    # other weights fuse other scores: another model id; equal weights are the default's
    assert main(["ensemble", str(a), str(c), "--out", str(even), "--weights", "1", "1"]) == 0
    assert checkpoint.load(even)["model_id"] != data["model_id"]
    assert main(["ensemble", str(a), str(c), "--out", str(tmp_path / "d.pt")]) == 0
    assert checkpoint.load(tmp_path / "d.pt")["model_id"] == checkpoint.load(even)["model_id"]
    capsys.readouterr()
    for bad in (["0.5"], ["1", "-1"], ["0", "0"]):
        assert main(["ensemble", str(a), str(c), "--out", str(tmp_path / "x.pt"), "--weights",
                     *bad]) == 2  # fmt: skip
        assert "ensemble weights" in capsys.readouterr().err
    # an adapted mixed ensemble centres the fused embedding
    adapted = mac.adapt(voices * 4, tmp_path / "ad.pt")
    assert adapted.embed(voices[0]).shape == (40,)
    # an ensemble of one architecture is a member with its own weights (the starter is one)
    ab, nested = tmp_path / "ab.pt", tmp_path / "nested.pt"
    assert main(["ensemble", *map(str, members), "--out", str(ab), "--weights", "3", "1"]) == 0
    assert main(["ensemble", str(ab), str(c), "--out", str(nested)]) == 0
    model = audiocl.load_model(nested, min_speech=0.0)
    assert checkpoint.load(nested)["config"]["model"]["embed_dim"] == model.embed_dim == 32 + 24
    e_ab, e_n = (audiocl.load_model(p, min_speech=0.0).embed_many(voices[:2]) for p in (ab, nested))
    want = 0.5 * float(e_ab[0] @ e_ab[1]) + 0.5 * float(ec[0] @ ec[1])
    assert float(e_n[0] @ e_n[1]) == pytest.approx(want, abs=1e-5)
    assert main(["ensemble", str(ab), str(ab), "--out", str(tmp_path / "x.pt")]) == 4


@pytest.mark.skipif(not ONNX, reason="the onnx extra is not installed")
def test_exported_mixed_ensemble_matches_torch(tmp_path, members, voices):
    """Members with their own front ends and sizes (an ECAPA, a GE2E with seeded weights),
    adapted too. One export: torch.export's symbolic shapes make each a minute here."""
    import test_import_resemblyzer as rz

    ge2e = tmp_path / "ge2e.pt"
    weights = str(rz.pretrained(tmp_path / "pretrained.pt"))
    assert main(["import", "resemblyzer", weights, "--out", str(ge2e)]) == 0
    out = tmp_path / "mixed.pt"
    assert main(["ensemble", str(members[0]), str(ge2e), "--out", str(out),
                 "--weights", "0.6", "0.4"]) == 0  # fmt: skip
    audiocl.load_model(out, min_speech=0.0).adapt(voices * 4, tmp_path / "ad.pt")
    onnx_path = tmp_path / "ad.onnx"
    assert main(["export", str(tmp_path / "ad.pt"), "--onnx", str(onnx_path)]) == 0
    exported = audiocl.load_model(onnx_path, min_speech=0.0)
    torch_model = audiocl.load_model(tmp_path / "ad.pt", min_speech=0.0)
    assert exported.model_id == torch_model.model_id and exported.embed_dim == 16 + 256
    cos = (exported.embed_many(voices) * torch_model.embed_many(voices)).sum(1)
    assert cos.min() > 0.9999
