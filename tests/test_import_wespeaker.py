"""`audiocl import wespeaker`: parity with WeSpeaker's own inference (fixtures made by
scripts/make_import_fixtures.py from WeSpeaker's source; no WeSpeaker needed here), an imported
model working everywhere, and clear errors for bad folders."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import audiocl
from audiocl import checkpoint
from audiocl.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = json.loads((ROOT / "tests" / "fixtures" / "import_wespeaker.json").read_text())
spec = importlib.util.spec_from_file_location(
    "make_import_fixtures", ROOT / "scripts" / "make_import_fixtures.py"
)
fixtures_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures_script)


def model_dir(folder: Path, fixture: dict, model: str | None = None, shapes=None) -> Path:
    """A WeSpeaker model folder: config.yaml + avg_model.pt (with the AAM head it trained
    with, which the import leaves out)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model": model or fixture["model"],
        "model_args": fixture["model_args"],
        "dataset_args": {
            "resample_rate": 16000,
            "fbank_args": {"num_mel_bins": 80, "frame_shift": 10, "frame_length": 25},
        },
        "projection_args": {"project_type": "arc_margin", "scale": 32.0},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    state = fixtures_script.seeded_state(shapes or fixture["shapes"], fixture["seed"])
    state["projection.weight"] = torch.randn(5994 * 3, fixture["model_args"]["embed_dim"])
    torch.save(state, folder / "avg_model.pt")
    return folder


def signal(fixture: dict) -> np.ndarray:
    s = fixture["signal"]
    return fixtures_script.test_signal(s["samples"] / 16000, s["seed"])


@pytest.mark.parametrize("fixture", FIXTURES["models"], ids=lambda f: f["model"])
def test_embeddings_match_wespeaker(tmp_path, fixture):
    folder = model_dir(tmp_path / fixture["model"], fixture)
    out = tmp_path / "model.pt"
    assert main(["import", "wespeaker", str(folder), "--out", str(out)]) == 0
    model = audiocl.load_model(out)
    ref = np.asarray(fixture["embedding"], dtype=np.float64)
    got = model.embed(signal(fixture)).astype(np.float64)
    cosine = float(got @ ref / np.linalg.norm(ref))
    assert cosine >= 0.999, f"{fixture['model']}: cosine {cosine:.6f} with WeSpeaker"
    data = checkpoint.load(out)
    assert data["source"] == "wespeaker" and fixture["model"] in data["name"]
    assert "terms" in data["license"] and fixture["model"] in data["source_config"]
    # the Res2Net group rotation matters: without it the ECAPA import disagrees
    if fixture["model"].startswith("ECAPA"):
        from audiocl.importers import wespeaker as ws

        rotate = ws._rotate
        try:
            ws._rotate = lambda c: torch.arange(c)
            assert main(["import", "wespeaker", str(folder), "--out", str(tmp_path / "x.pt")]) == 0
        finally:
            ws._rotate = rotate
        wrong = audiocl.load_model(tmp_path / "x.pt").embed(signal(fixture)).astype(np.float64)
        assert float(wrong @ ref / np.linalg.norm(ref)) < 0.99


def test_imported_model_works_everywhere(tmp_path, capsys):
    from audiocl.synth import synthesize_corpus

    fixture = FIXTURES["models"][0]
    folder = model_dir(tmp_path / "ecapa", fixture)
    out = tmp_path / "model.pt"
    assert main(["import", "wespeaker", str(folder), "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["encoder"] == "ecapa_tdnn" and info["embed_dim"] == 192
    data = synthesize_corpus(tmp_path / "voices", speakers=3, utterances=2, duration=(1.5, 2.0))
    files = sorted(str(p) for p in data.rglob("*.flac"))
    db, common = str(tmp_path / "s.db"), ["--model", str(out)]
    assert main(["enroll", files[0], "--name", "a", "--db", db, *common]) == 0
    assert main(["identify", files[1], "--db", db, *common]) == 0
    assert main(["verify", files[0], files[1], "--threshold", "0.5", *common]) in (0, 1)
    report = tmp_path / "eval"
    args = ["--trials", str(data / "trials.txt"), "--audio-root", str(data), "--out", str(report)]
    assert main(["eval", *args, "--calibrate", "--no-cache", *common]) == 0
    assert audiocl.load_model(out).calibration is not None
    assert audiocl.load_model(out).model_id == info["model_id"]
    # and out to ONNX: export refuses to write a graph below cosine 0.9999 with PyTorch
    if all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript")):
        onnx_path = tmp_path / "model.onnx"
        assert main(["export", str(out), "--onnx", str(onnx_path)]) == 0
        a = audiocl.load_model(onnx_path).embed(files[2])
        b = audiocl.load_model(out).embed(files[2])
        assert float(a @ b) >= 0.9999


def test_bad_folders_are_named(tmp_path, capsys):
    fixture = FIXTURES["models"][0]

    def run(folder):
        code = main(["import", "wespeaker", str(folder), "--out", str(tmp_path / "m.pt")])
        return code, capsys.readouterr().err

    code, err = run(tmp_path / "nowhere")
    assert code == 4 and "not a folder" in err
    folder = model_dir(tmp_path / "unknown", fixture, model="CAMPPlus")
    code, err = run(folder)
    assert code == 4 and "unknown WeSpeaker architecture 'CAMPPlus'" in err
    folder = model_dir(tmp_path / "nomodel", fixture)
    (folder / "avg_model.pt").unlink()
    code, err = run(folder)
    assert code == 4 and "avg_model.pt: missing" in err
    # c512 weights under a c1024 config
    folder = model_dir(tmp_path / "mismatch", fixture, model="ECAPA_TDNN_GLOB_c1024")
    code, err = run(folder)
    assert code == 4 and "shape mismatch" in err and "layer1.conv.weight" in err
    assert not (tmp_path / "m.pt").exists()
