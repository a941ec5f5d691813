"""`audiocl import speechbrain|wespeaker`: parity with each toolkit's own inference (fixtures made
by scripts/make_import_fixtures.py with the real toolkits; neither is needed here), an imported
model working everywhere, and clear errors for bad folders."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import audiocl
from audiocl.app.cli import main
from audiocl.modelfile import checkpoint

ROOT = Path(__file__).resolve().parents[1]
TOOLKITS = ("speechbrain", "wespeaker")
FIXTURES = {
    t: json.loads((ROOT / "tests" / "fixtures" / f"import_{t}.json").read_text()) for t in TOOLKITS
}
spec = importlib.util.spec_from_file_location(
    "make_import_fixtures", ROOT / "scripts" / "make_import_fixtures.py"
)
fixtures_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures_script)


def wespeaker_dir(folder: Path, fixture: dict, model: str | None = None, shapes=None) -> Path:
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
    if shapes is None:
        state.update({k: torch.tensor(v) for k, v in fixture["batch_norm"].items()})
    state["projection.weight"] = torch.randn(5994 * 3, fixture["model_args"]["embed_dim"])
    torch.save(state, folder / "avg_model.pt")
    return folder


def speechbrain_dir(folder: Path, fixture: dict, hyperparams: str | None = None) -> Path:
    """A SpeechBrain model folder: hyperparams.yaml + embedding_model.ckpt."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hyperparams.yaml").write_text(hyperparams or fixture["hyperparams"])
    state = fixtures_script.seeded_state(fixture["shapes"], fixture["seed"])
    state.update({k: torch.tensor(v) for k, v in fixture["batch_norm"].items()})
    torch.save(state, folder / "embedding_model.ckpt")
    return folder


MODEL_DIRS = {"speechbrain": speechbrain_dir, "wespeaker": wespeaker_dir}
CASES = [(t, f) for t in TOOLKITS for f in FIXTURES[t]["models"]]


def signal(fixture: dict) -> np.ndarray:
    s = fixture["signal"]
    return fixtures_script.test_signal(s["samples"] / 16000, s["seed"])


def cosine_with_reference(model_path: Path, fixture: dict) -> float:
    ref = np.asarray(fixture["embedding"], dtype=np.float64)
    got = audiocl.load_model(model_path).embed(signal(fixture)).astype(np.float64)
    return float(got @ ref / np.linalg.norm(ref))


def imported(tmp_path: Path, toolkit: str, fixture: dict, name: str = "model.pt") -> Path:
    folder = MODEL_DIRS[toolkit](tmp_path / fixture["model"], fixture)
    out = tmp_path / name
    assert main(["import", toolkit, str(folder), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(("toolkit", "fixture"), CASES, ids=[f"{t}-{f['model']}" for t, f in CASES])
def test_embeddings_match_the_toolkit(tmp_path, toolkit, fixture):
    out = imported(tmp_path, toolkit, fixture)
    cosine = cosine_with_reference(out, fixture)
    assert cosine >= 0.999, f"{fixture['model']}: cosine {cosine:.6f} with {toolkit}"
    data = checkpoint.load(out)
    assert data["source"] == toolkit and fixture["model"] in data["name"]
    assert "terms" in data["license"] and data["source_config"]


def test_wespeaker_res2net_rotation_matters(tmp_path):
    """Without the group rotation the ECAPA import disagrees with WeSpeaker."""
    from audiocl.interop import wespeaker as ws

    fixture = FIXTURES["wespeaker"]["models"][0]
    rotate = ws._rotate
    try:
        ws._rotate = lambda c: torch.arange(c)
        out = imported(tmp_path, "wespeaker", fixture)
    finally:
        ws._rotate = rotate
    assert cosine_with_reference(out, fixture) < 0.99


# another front end in the imported model file: audiocl's own filterbank
OTHER_FRONT_END = {
    "speechbrain": {"frontend": "fbank", "low_freq": 20.0, "high_freq": 0.0, "n_fft": 0},
    "wespeaker": {"kaldi": False, "window": "default"},
}


@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_front_end_matters(tmp_path, toolkit):
    """Another filterbank breaks parity: the fixtures check the front end, not only the
    network (their batch-norm statistics make the embedding depend on the input)."""
    fixture = FIXTURES[toolkit]["models"][0]
    data = checkpoint.load(imported(tmp_path, toolkit, fixture))
    data["config"]["features"].update(OTHER_FRONT_END[toolkit])
    checkpoint.save(tmp_path / "other.pt", data)
    assert cosine_with_reference(tmp_path / "other.pt", fixture) < 0.99


@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_imported_model_works_everywhere(tmp_path, capsys, toolkit, use_everywhere):
    fixture = FIXTURES[toolkit]["models"][0]
    folder = MODEL_DIRS[toolkit](tmp_path / "source", fixture)
    out = tmp_path / "model.pt"
    assert main(["import", toolkit, str(folder), "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    encoder = {"speechbrain": "ecapa_speechbrain", "wespeaker": "ecapa_tdnn"}[toolkit]
    assert info["encoder"] == encoder and info["embed_dim"] == len(fixture["embedding"])
    files = use_everywhere(out, tmp_path)
    assert audiocl.load_model(out).calibration is not None
    assert audiocl.load_model(out).model_id == info["model_id"]
    # and out to ONNX: export refuses to write a graph below cosine 0.9999 with PyTorch
    if all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript")):
        onnx_path = tmp_path / "model.onnx"
        assert main(["export", str(out), "--onnx", str(onnx_path)]) == 0
        a = audiocl.load_model(onnx_path).embed(files[2])
        b = audiocl.load_model(out).embed(files[2])
        assert float(a @ b) >= 0.9999


def run_import(toolkit: str, folder: Path, out: Path, capsys) -> tuple[int, str]:
    code = main(["import", toolkit, str(folder), "--out", str(out)])
    return code, capsys.readouterr().err


def test_bad_wespeaker_folders_are_named(tmp_path, capsys):
    fixture = FIXTURES["wespeaker"]["models"][0]
    out = tmp_path / "m.pt"

    code, err = run_import("wespeaker", tmp_path / "nowhere", out, capsys)
    assert code == 4 and "not a folder" in err
    folder = wespeaker_dir(tmp_path / "unknown", fixture, model="CAMPPlus")
    code, err = run_import("wespeaker", folder, out, capsys)
    assert code == 4 and "unknown WeSpeaker architecture 'CAMPPlus'" in err
    folder = wespeaker_dir(tmp_path / "nomodel", fixture)
    (folder / "avg_model.pt").unlink()
    code, err = run_import("wespeaker", folder, out, capsys)
    assert code == 4 and "avg_model.pt: missing" in err
    # c512 weights under a c1024 config
    folder = wespeaker_dir(tmp_path / "mismatch", fixture, model="ECAPA_TDNN_GLOB_c1024")
    code, err = run_import("wespeaker", folder, out, capsys)
    assert code == 4 and "shape mismatch" in err and "layer1.conv.weight" in err
    assert not out.exists()


def test_bad_speechbrain_folders_are_named(tmp_path, capsys):
    fixture = FIXTURES["speechbrain"]["models"][0]
    text = fixture["hyperparams"]
    out = tmp_path / "m.pt"

    def edited(name: str, old: str, new: str) -> Path:
        assert old in text
        return speechbrain_dir(tmp_path / name, fixture, text.replace(old, new))

    code, err = run_import("speechbrain", tmp_path / "nowhere", out, capsys)
    assert code == 4 and "not a folder" in err
    xvector = "speechbrain.lobes.models.Xvector.Xvector"
    folder = edited("xvector", "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN", xvector)
    code, err = run_import("speechbrain", folder, out, capsys)
    assert code == 4 and f"unknown SpeechBrain architecture '{xvector}'" in err
    folder = speechbrain_dir(tmp_path / "noweights", fixture)
    (folder / "embedding_model.ckpt").unlink()
    code, err = run_import("speechbrain", folder, out, capsys)
    assert code == 4 and "embedding_model.ckpt: missing" in err
    folder = edited("stdnorm", "std_norm: False", "std_norm: True")
    code, err = run_import("speechbrain", folder, out, capsys)
    assert code == 4 and "mean_var_norm: std_norm: true is not supported" in err
    folder = edited("wider", "[64, 64, 64, 64, 192]", "[128, 128, 128, 128, 192]")
    code, err = run_import("speechbrain", folder, out, capsys)
    assert code == 4 and "shape mismatch" in err and "blocks.0.conv.weight" in err
    folder = edited("broken", "n_mels: 80", "n_mels: [80")
    code, err = run_import("speechbrain", folder, out, capsys)
    assert code == 4 and "not a readable HyperPyYAML file" in err
    folder = edited(
        "deltas", "    n_mels: !ref <n_mels>\n", "    n_mels: !ref <n_mels>\n    deltas: true\n"
    )
    code, err = run_import("speechbrain", folder, out, capsys)
    assert code == 4 and "compute_features: deltas: true is not supported" in err
    assert not out.exists()


def test_hyperpyyaml_references(tmp_path):
    from audiocl.errors import ModelError
    from audiocl.interop.speechbrain import HyperParams, Tagged

    path = tmp_path / "h.yaml"
    path.write_text(
        "n: 40\nroot: /models\nsub: {k: 3}\n"
        "twice: !ref <n> * 2\nfile: !ref <root>/x.ckpt\nnested: !ref <sub.k>\n"
        "loop: !ref <loop>\nact: !name:torch.nn.ReLU\n"
        "obj: !new:a.B\n    size: !ref <twice>\n    act: !ref <act>\n"
        "modules:\n    obj: !ref <obj>\n"
    )
    hp = HyperParams(path)
    assert hp.lookup("twice") == 80 and hp.lookup("file") == "/models/x.ckpt"
    assert hp.lookup("nested") == 3
    obj = hp.entry("obj")
    assert obj == Tagged("new", "a.B", {"size": 80, "act": Tagged("name", "torch.nn.ReLU", {})})
    assert hp.entry("missing") is None
    with pytest.raises(ModelError, match="refers to itself"):
        hp.lookup("loop")
