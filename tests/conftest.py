"""Shared test helpers."""

import pytest
import torch

from audiocl import checkpoint
from audiocl.config import Config, to_dict
from audiocl.models import build_encoder


@pytest.fixture(scope="session")
def make_tiny_model():
    """``make(path, seed=0)``: a small untrained ECAPA (C=32, 40 mels, 16-dim) as a model file."""

    def make(path, seed=0):
        cfg = Config()
        cfg.model.channels, cfg.model.embed_dim, cfg.features.n_mels = 32, 16, 40
        torch.manual_seed(seed)
        encoder = build_encoder(cfg.model, cfg.features.n_mels)
        state = encoder.state_dict()
        checkpoint.save(path, checkpoint.make_model_file(state, to_dict(cfg), step=0))
        return path

    return make
