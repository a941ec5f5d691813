"""``audiocl average``: the mean of checkpoints' weights as a model file that works like any."""

import json

import numpy as np
import pytest
import torch

import audiocl
from audiocl.app.cli import main
from audiocl.errors import ModelError
from audiocl.inference.adapt import adapted_model
from audiocl.modelfile import checkpoint


def _as_training_checkpoint(path, step):
    """Rewrite a model file as a training checkpoint (what ``checkpoints/`` holds)."""
    data = checkpoint.load(path)
    data.update(format=checkpoint.CHECKPOINT_FORMAT, step=step, optimizer={}, scheduler={})
    checkpoint.save(path, data)
    return path


def test_average_is_the_mean_of_the_weights_and_loads_as_a_model(tmp_path, make_tiny_model, capsys):
    a = _as_training_checkpoint(make_tiny_model(tmp_path / "a.pt", seed=1), step=100)
    b = _as_training_checkpoint(make_tiny_model(tmp_path / "b.pt", seed=2), step=200)
    wa, wb = checkpoint.load(a)["encoder"], checkpoint.load(b)["encoder"]
    name = next(k for k, v in wb.items() if v.is_floating_point() and v.dim() == 3)
    counts = [k for k, v in wb.items() if not v.is_floating_point()]
    assert counts, "the tiny ECAPA has batch-norm counters"
    wb[counts[0]].fill_(7)  # the last file's counters are kept
    data = checkpoint.load(b)
    data.update(encoder=wb, name="imported/x", license="CC BY 4.0")
    checkpoint.save(b, data)

    out = tmp_path / "avg.pt"
    assert main(["average", str(a), str(b), "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    got = checkpoint.load(out)
    assert got["format"] == checkpoint.MODEL_FORMAT and got["step"] == 200
    assert info["model_id"] == got["model_id"] == checkpoint.model_id(got["encoder"])
    torch.testing.assert_close(got["encoder"][name], (wa[name] + wb[name]) / 2)
    assert int(got["encoder"][counts[0]]) == 7
    assert [f["step"] for f in got["averaged_from"]] == [100, 200]
    assert (got["name"], got["license"]) == ("imported/x", "CC BY 4.0")

    model = audiocl.load_model(out, min_speech=0.0)
    wave = 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    emb = model.embed(wave)
    assert emb.shape == (16,) and np.isclose(np.linalg.norm(emb), 1.0, atol=1e-5)


def test_weighted_average_interpolates_a_model_and_its_fine_tuned_copy(
    tmp_path, make_tiny_model, capsys
):
    a, b = make_tiny_model(tmp_path / "a.pt", seed=1), make_tiny_model(tmp_path / "b.pt", seed=2)
    out = tmp_path / "wise.pt"
    args = ["average", str(a), str(b), "--weights", "1", "3", "--out", str(out), "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == [0.25, 0.75]
    wa, wb, got = (checkpoint.load(p)["encoder"] for p in (a, b, out))
    name = next(k for k, v in wa.items() if v.is_floating_point() and v.dim() == 3)
    torch.testing.assert_close(got[name], 0.25 * wa[name] + 0.75 * wb[name])
    assert [f["weight"] for f in checkpoint.load(out)["averaged_from"]] == [0.25, 0.75]
    # the end points are the models themselves
    only_b = checkpoint.average([a, b], [0.0, 1.0])
    assert only_b["model_id"] == checkpoint.load(b)["model_id"]
    for bad in (["1"], ["-1", "2"], ["0", "0"]):
        assert main(["average", str(a), str(b), "--weights", *bad, "--out", str(out)]) == 2
        assert "average weights" in capsys.readouterr().err


def test_average_of_copies_is_the_same_model(tmp_path, make_tiny_model):
    a = make_tiny_model(tmp_path / "a.pt", seed=3)
    data = checkpoint.average([a, a, a])
    assert data["model_id"] == checkpoint.load(a)["model_id"]


def test_average_refuses_files_that_do_not_match(tmp_path, make_tiny_model, capsys):
    a = make_tiny_model(tmp_path / "a.pt")
    wide = checkpoint.load(a)
    wide["config"]["model"]["channels"] = 64
    checkpoint.save(tmp_path / "wide.pt", wide)
    assert (
        main(["average", str(a), str(tmp_path / "wide.pt"), "--out", str(tmp_path / "x.pt")]) == 4
    )
    assert "wide.pt: its model config differs" in capsys.readouterr().err

    short = checkpoint.load(a)
    key = next(iter(short["encoder"]))
    short["encoder"][key] = short["encoder"][key][:1]
    checkpoint.save(tmp_path / "short.pt", short)
    with pytest.raises(ModelError, match=f"short.pt: encoder weight {key} is"):
        checkpoint.average([a, tmp_path / "short.pt"])

    assert main(["average", str(a), "--out", str(tmp_path / "x.pt")]) == 4
    assert "at least two" in capsys.readouterr().err
    assert (
        main(["average", str(a), str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.pt")])
        == 4
    )
    assert "missing.pt: no such model" in capsys.readouterr().err
    adapted = adapted_model(checkpoint.load(a), np.zeros(16, dtype=np.float32), files=20)
    checkpoint.save(tmp_path / "adapted.pt", adapted)
    with pytest.raises(ModelError, match="adapted.pt: is adapted to a domain"):
        checkpoint.average([a, tmp_path / "adapted.pt"])
    assert not (tmp_path / "x.pt").exists()
