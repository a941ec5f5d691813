"""`audiocl import resemblyzer`: Resemblyzer's GE2E voice encoder as an audiocl model. Parity with
Resemblyzer's own ``embed_utterance`` on seeded weights (fixture made by
scripts/make_import_fixtures.py --resemblyzer; neither Resemblyzer nor its weights are needed
here), its front end, the model working everywhere, and clear errors for bad files."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import audiocl
from audiocl.app.cli import main
from audiocl.modelfile import checkpoint
from audiocl.nn.features import ResemblyzerMel, slaney_mel_matrix

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "import_resemblyzer.json").read_text())
spec = importlib.util.spec_from_file_location(
    "make_import_fixtures", ROOT / "scripts" / "make_import_fixtures.py"
)
fixtures_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures_script)


def pretrained(path: Path) -> Path:
    """Resemblyzer's ``pretrained.pt`` layout with the fixture's seeded weights."""
    state = fixtures_script.seeded_state(FIXTURE["shapes"], FIXTURE["seed"])
    torch.save({"step": 0, "model_state": state, "optimizer_state": {}}, path)
    return path


def signal(entry: dict) -> np.ndarray:
    return fixtures_script.test_signal(entry["samples"] / 16000, entry["seed"])


@pytest.fixture
def ge2e(tmp_path) -> Path:
    out = tmp_path / "ge2e.pt"
    assert main(["import", "resemblyzer", str(pretrained(tmp_path / "pretrained.pt")),
                 "--out", str(out)]) == 0  # fmt: skip
    return out


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_embeddings_match_resemblyzer(ge2e):
    """Several partial utterances (3.7 s), exactly one (1 s) and one zero-padded (0.6 s)."""
    model = audiocl.load_model(ge2e, min_speech=0.0)
    assert model.embed_dim == 256
    for entry in FIXTURE["signals"]:
        got = model.embed(signal(entry))
        assert cosine(got, entry["embedding"]) >= 0.999, entry["samples"]
    data = checkpoint.load(ge2e)
    assert data["source"] == "resemblyzer" and "Apache-2.0" in data["license"]
    assert data["config"]["model"]["encoder"] == "ge2e"
    assert data["config"]["features"]["frontend"] == "resemblyzer"


def test_front_end_partials_and_volume(ge2e):
    fe = ResemblyzerMel()
    # 1.6 s partials every 77 frames; a last partial covering under 75% of its window is dropped
    assert fe.partial_starts(16000) == [0]
    assert fe.partial_starts(3 * 16000) == [0, 77, 154]
    assert fe.partial_starts(int(2.6 * 16000)) == [0, 77]
    wave = torch.from_numpy(signal(FIXTURE["signals"][0]))[None]
    assert fe(wave).shape == (1, 4 * 160, 40)
    # quiet input is raised to -30 dBFS first, so a quieter copy embeds the same; louder is kept
    model = audiocl.load_model(ge2e, min_speech=0.0)
    entry = FIXTURE["signals"][1]
    quiet = model.embed(signal(entry) * 0.05)
    assert cosine(quiet, entry["embedding"]) >= 0.999
    x = torch.from_numpy(signal(entry))[None].double()
    at_30 = x * (10 ** (-30 / 20) / x.square().mean().sqrt())
    torch.testing.assert_close(fe(0.1 * at_30), fe(at_30), rtol=1e-4, atol=1e-9)
    louder = fe(4.0 * at_30)  # louder than -30 dBFS: left as it is (power mel: 16x)
    torch.testing.assert_close(louder, 16.0 * fe(at_30), rtol=1e-4, atol=1e-9)


@pytest.mark.skipif(importlib.util.find_spec("librosa") is None, reason="needs librosa")
def test_mel_filters_are_librosas():
    import librosa

    ours = slaney_mel_matrix(40, 400, 16000).T.numpy()
    theirs = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40).astype(np.float64)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_imported_ge2e_works_everywhere(tmp_path, ge2e, capsys, use_everywhere):
    use_everywhere(ge2e, tmp_path)
    assert audiocl.load_model(ge2e).calibration is not None


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript")),
    reason="needs the onnx extra",
)
def test_exported_ge2e_matches_pytorch_at_every_length(tmp_path, ge2e):
    """The graph embeds every window and weights the partials Resemblyzer keeps; lengths around
    the point where the last partial stops being dropped (31,519 / 31,520 samples), the
    fixture's three and a long one must all agree with the PyTorch path."""
    onnx_path = tmp_path / "ge2e.onnx"
    assert main(["export", str(ge2e), "--onnx", str(onnx_path)]) == 0
    torch_model = audiocl.load_model(ge2e, min_speech=0.0)
    onnx_model = audiocl.load_model(onnx_path, min_speech=0.0)
    assert onnx_model.model_id == torch_model.model_id
    fe = ResemblyzerMel()
    assert len(fe.partial_starts(31519)) == len(fe.partial_starts(31520)) - 1
    waves = [signal(e) for e in FIXTURE["signals"]]
    long = fixtures_script.test_signal(9.3, 11)
    for wave in [*waves, long[:31519], long[:31520], long]:
        a, b = torch_model.embed(wave), onnx_model.embed(wave)
        assert cosine(a, b) >= 0.9999, wave.size


def test_bad_resemblyzer_files_are_named(tmp_path, capsys):
    out = str(tmp_path / "m.pt")
    assert main(["import", "resemblyzer", str(tmp_path / "nothing.pt"), "--out", out]) == 4
    assert "nothing.pt: missing" in capsys.readouterr().err
    other = tmp_path / "other.pt"
    torch.save({"model_state": {"fc.weight": torch.zeros(2, 2)}}, other)
    assert main(["import", "resemblyzer", str(other), "--out", out]) == 4
    assert "not a Resemblyzer voice encoder" in capsys.readouterr().err
    bad = tmp_path / "pretrained.pt"
    state = fixtures_script.seeded_state(FIXTURE["shapes"], 0)
    state["linear.bias"] = torch.zeros(7)
    torch.save({"model_state": state}, bad)
    assert main(["import", "resemblyzer", str(tmp_path), "--out", out]) == 4  # a folder works
    assert "linear.bias" in capsys.readouterr().err
    assert not Path(out).exists()
