"""The suite never touches the user's own audiocl folder (``~/.local/share/audiocl``)."""

from pathlib import Path

from conftest import real_data_dir

from audiocl import paths
from audiocl.data.synth import synthesize_corpus
from audiocl.training.recipe import load_config
from audiocl.training.stages import fit


def snapshot(folder: Path) -> dict:
    if not folder.exists():
        return {}
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_training_records_its_model_in_the_private_home_only(tmp_path):
    real = real_data_dir()
    before = snapshot(real)
    assert not str(paths.data_dir()).startswith(str(real))
    synthesize_corpus(tmp_path / "train", speakers=2, utterances=2, duration=(0.6, 0.8))
    cfg = load_config(
        None,
        [
            f"data.root={tmp_path}",
            "data.sources=[{path: train, labelled: true}]",
            "data.crop_seconds=0.5",
            "data.batch_size=2",
            "model.channels=16",
            "model.embed_dim=8",
            "objective.contrastive=none",
            "objective.contrastive_weight=0",
            "objective.aam_weight=1",
            "train.steps=1",
        ],
    )
    run = fit(cfg, tmp_path / "run", quiet=True)
    assert paths.resolve_model()[0] == run / "model.pt"
    assert (paths.data_dir() / "last_model").is_file()
    assert snapshot(real) == before


def test_starter_model_is_the_default_until_a_model_is_trained(
    tmp_path, monkeypatch, make_tiny_model
):
    import pytest

    from audiocl.errors import ModelError

    with pytest.raises(ModelError, match="no model given"):
        paths.resolve_model()
    starter = make_tiny_model(tmp_path / "starter.pt")
    monkeypatch.setenv("AUDIOCL_STARTER", str(starter))
    assert paths.resolve_model() == (starter, "starter model (docs/models.md)")
    trained = make_tiny_model(tmp_path / "trained.pt", seed=1)
    paths.record_last_model(trained)
    assert paths.resolve_model() == (trained, "last trained model")
    assert paths.resolve_model(starter)[1] == "--model"
