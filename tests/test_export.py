"""ONNX export: the conv front end equals Fbank, the graph equals PyTorch under onnxruntime,
and an exported file works as a model everywhere (embed, calibration, store identity)."""

import json

import numpy as np
import pytest
import torch

from audiocl.app.cli import main
from audiocl.config import Config, to_dict
from audiocl.data.synth import synthesize_corpus
from audiocl.interop.export import ConvFbank
from audiocl.modelfile import checkpoint
from audiocl.nn.encoders import build_encoder
from audiocl.nn.features import Fbank


@pytest.mark.parametrize("kaldi", [False, True])
@pytest.mark.parametrize("samples", [100, 400, 16000, 23457])
def test_conv_fbank_equals_fbank(kaldi, samples):
    fbank = Fbank(n_mels=40, kaldi=kaldi, mean_norm=not kaldi).eval()
    wave = 0.3 * torch.randn(2, samples, generator=torch.Generator().manual_seed(samples))
    ref = fbank(wave)
    got = ConvFbank(fbank)(wave)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=2e-3, rtol=1e-4)


def _model(path, encoder="ecapa_tdnn", seed=0):
    """A small model with random weights and batch-norm statistics (an untrained net's unit
    statistics would hide front-end scaling errors). Res2Net scale 2 halves an export's time."""
    cfg = Config()
    cfg.model.encoder, cfg.model.embed_dim, cfg.features.n_mels = encoder, 16, 40
    cfg.model.channels, cfg.model.base_channels, cfg.model.res2net_scale = 32, 8, 2
    torch.manual_seed(seed)
    net = build_encoder(cfg.model, cfg.features.n_mels)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    checkpoint.save(path, checkpoint.make_model_file(net.state_dict(), to_dict(cfg), step=0))
    return path


onnx_deps = pytest.mark.skipif(
    any(
        __import__("importlib").util.find_spec(m) is None
        for m in ("onnx", "onnxruntime", "onnxscript")
    ),
    reason="the onnx extra is not installed",
)


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    root = synthesize_corpus(
        tmp_path_factory.mktemp("voices"), speakers=2, utterances=2, duration=(1.0, 3.0)
    )
    return sorted(str(p) for p in root.rglob("*.flac"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``(model.pt, its .onnx, what export --json printed)``: an export takes 15-20 s here, so
    the tests of an ECAPA export share one (one of them adds calibration metadata to it; the
    graph stays as exported)."""
    import contextlib
    import io

    folder = tmp_path_factory.mktemp("exported")
    pt, onnx_path = _model(folder / "m.pt"), folder / "m.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", str(pt), "--onnx", str(onnx_path), "--json"]) == 0
    return pt, onnx_path, json.loads(printed.getvalue())


@onnx_deps
@pytest.mark.parametrize("encoder", ["ecapa_tdnn", "resnet34"])
def test_graph_matches_torch_at_any_length(tmp_path, encoder, request):
    from audiocl.inference.embed import build_inference_model
    from audiocl.interop.export import export_onnx
    from audiocl.interop.onnx_runtime import OnnxNet

    if encoder == "ecapa_tdnn":
        model, out, info = request.getfixturevalue("exported")
        cosine = info["check_cosine"]
    else:
        model = _model(tmp_path / "m.pt", encoder)
        out, cosine = export_onnx(model, tmp_path / "m.onnx")
    assert cosine >= 0.9999
    net = OnnxNet(out)
    data = checkpoint.load(model)
    _, fbank, enc = build_inference_model(data)
    assert net.model_id == data["model_id"] and net.sample_rate == 16000 and net.embed_dim == 16
    for samples in (300, 8000, 41234):
        wave = 0.2 * torch.randn(1, samples, generator=torch.Generator().manual_seed(samples))
        with torch.inference_mode():
            ref = enc(fbank(wave))
        got = net(wave)
        assert got.shape == (1, 16)
        torch.testing.assert_close(got, ref, atol=1e-3 * ref.norm().item(), rtol=1e-3)
        assert torch.nn.functional.cosine_similarity(got, ref).item() >= 0.9999
    # batches of any size (the embedder stacks equal-length pieces)
    waves = 0.2 * torch.randn(3, 16000, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = enc(fbank(waves))
    torch.testing.assert_close(net(waves), ref, atol=1e-3 * ref.norm().item(), rtol=1e-3)


@onnx_deps
def test_exported_file_is_a_model_everywhere(tmp_path, voices, exported):
    import audiocl

    pt, onnx_path, info = exported
    assert info["onnx"] == str(onnx_path) and info["check_cosine"] >= 0.9999

    torch_emb = audiocl.load_model(pt).embed_many(voices)
    onnx_model = audiocl.load_model(onnx_path)
    assert onnx_model.model_id == audiocl.load_model(pt).model_id
    assert np.min(np.sum(onnx_model.embed_many(voices) * torch_emb, axis=1)) >= 0.9999
    # CLI embed with each backend (onnx: the .pt exported in memory): the same vectors and the
    # same model id
    for backend, model, name in (("torch", pt, "t"), ("onnx", pt, "o"), ("auto", onnx_path, "a")):
        args = ["embed", *voices, "--model", str(model), "--backend", backend]
        assert main([*args, "--out", str(tmp_path / f"{name}.npz"), "--quiet"]) == 0
    t, o, a = (np.load(tmp_path / f"{n}.npz") for n in "toa")
    assert str(t["model_id"]) == str(o["model_id"]) == str(a["model_id"])
    assert np.min(np.sum(t["embeddings"] * a["embeddings"], axis=1)) >= 0.9999
    assert np.min(np.sum(t["embeddings"] * o["embeddings"], axis=1)) >= 0.9999

    # calibration is kept in the ONNX metadata, the graph is untouched
    cal = {"eer_threshold": 0.42, "score_scale": "cosine"}
    checkpoint.set_calibration(onnx_path, cal)
    again = audiocl.load_model(onnx_path)
    assert again.calibration == cal
    assert np.allclose(again.embed_many(voices), onnx_model.embed_many(voices), atol=1e-6)
    # an LLR calibration too: an .onnx model reports LLRs and decides at a false-accept rate
    from audiocl.scoring.calibration import fit_calibration

    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.5, 0.1, 200), rng.normal(0.0, 0.1, 5000)])
    fitted = fit_calibration(scores, np.arange(5200) < 200)
    checkpoint.set_calibration(onnx_path, {"scale": "cosine", "eer_threshold": 0.25, **fitted})
    again = audiocl.load_model(onnx_path)
    r = again.verify(voices[0], voices[1], far=0.01)
    assert r.llr == pytest.approx(fitted["llr"]["a"] * r.score + fitted["llr"]["b"], rel=1e-6)
    assert "false-accept rate 0.01" in r.threshold_source


@onnx_deps
def test_export_refuses_a_disagreeing_graph_and_bad_files(tmp_path, capsys, exported):
    from audiocl.errors import ModelError
    from audiocl.interop.export import check_graph

    a = _model(tmp_path / "a.pt", seed=1)  # the exported graph is of seed 0's weights
    with pytest.raises(ModelError, match="disagrees with PyTorch"):
        check_graph(checkpoint.load(a), exported[1].read_bytes())

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    assert main(["embed", str(a), "--model", str(bad), "--out", str(tmp_path / "x.npz")]) == 4
    assert "bad.onnx: not a readable ONNX model" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pt"), "--onnx", str(tmp_path / "m.onnx")]) == 4
    assert "model file not found" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
    assert main(["embed", str(a), "--model", str(bad), "--backend", "torch", "--out", "x"]) == 4
    assert "runs with the onnx backend" in capsys.readouterr().err
