"""Shared test helpers, and a private home for every test: nothing a test runs may read or
write the user's real ``~/.local/share/audiocl`` (a test that recorded its model there once
became the user's default model)."""

import os
from pathlib import Path

import pytest
import torch

from audiocl.config import Config, to_dict
from audiocl.modelfile import checkpoint
from audiocl.nn.encoders import build_encoder


@pytest.fixture(scope="session")
def make_tiny_model():
    """``make(path, seed=0)``: a small untrained ECAPA (C=32, 40 mels, 16-dim, Res2Net scale 2:
    an ONNX export of scale 8's graph takes twice as long) as a model file."""

    def make(path, seed=0):
        cfg = Config()
        cfg.model.channels, cfg.model.embed_dim, cfg.features.n_mels = 32, 16, 40
        cfg.model.res2net_scale = 2
        torch.manual_seed(seed)
        encoder = build_encoder(cfg.model, cfg.features.n_mels)
        state = encoder.state_dict()
        checkpoint.save(path, checkpoint.make_model_file(state, to_dict(cfg), step=0))
        return path

    return make


@pytest.fixture(scope="session")
def use_everywhere():
    """``use(model, folder) -> files``: enroll, identify, verify and ``eval --calibrate`` with
    ``model`` on synthetic voices made in ``folder`` (3 speakers x 2), through the CLI;
    returns the voices' files. What an imported model must survive as a trained one does."""

    def use(model: Path, folder: Path) -> list[str]:
        from audiocl.app.cli import main
        from audiocl.data.synth import synthesize_corpus

        data = synthesize_corpus(folder / "voices", speakers=3, utterances=2, duration=(1.5, 2.0))
        files = sorted(str(p) for p in data.rglob("*.flac"))
        db, common = str(folder / "s.db"), ["--model", str(model)]
        assert main(["enroll", files[0], "--name", "a", "--db", db, *common]) == 0
        assert main(["identify", files[1], "--db", db, *common]) == 0
        assert main(["verify", files[0], files[1], "--threshold", "0.5", *common]) in (0, 1)
        args = ["--trials", str(data / "trials.txt"), "--audio-root", str(data)]
        out = ["--out", str(folder / "eval"), "--no-cache"]
        assert main(["eval", *args, *out, "--calibrate", *common]) == 0
        return files

    return use


HOME_VARS = ("HOME", "AUDIOCL_HOME", "XDG_DATA_HOME", "AUDIOCL_MODEL", "AUDIOCL_STARTER")


def real_data_dir() -> Path:
    """The user's audiocl folder as it was before any fixture changed the environment."""
    env = REAL_ENV
    if env["AUDIOCL_HOME"]:
        return Path(env["AUDIOCL_HOME"])
    base = env["XDG_DATA_HOME"] or Path(env["HOME"] or Path.home()) / ".local" / "share"
    return Path(base) / "audiocl"


REAL_ENV = {k: os.environ.get(k) for k in HOME_VARS}


def _private(mp: pytest.MonkeyPatch, home: Path) -> None:
    mp.setenv("HOME", str(home))
    mp.setenv("AUDIOCL_HOME", str(home / "audiocl"))
    mp.delenv("XDG_DATA_HOME", raising=False)
    mp.delenv("AUDIOCL_MODEL", raising=False)
    mp.setenv("AUDIOCL_STARTER", "")  # no test falls back on the shipped starter model unasked


@pytest.fixture(scope="session", autouse=True)
def private_session_home(tmp_path_factory):
    """For module- and session-scoped fixtures, which run before any per-test fixture."""
    with pytest.MonkeyPatch.context() as mp:
        _private(mp, tmp_path_factory.mktemp("session-home"))
        yield


@pytest.fixture(autouse=True)
def private_home(tmp_path_factory, monkeypatch):
    """A fresh home per test (subprocesses inherit it), so no test sees another's model."""
    _private(monkeypatch, tmp_path_factory.mktemp("home"))
