"""Speaker encoders ``(B, T, F) -> (B, D)`` and heads; ``ENCODERS`` maps config names to classes."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .ecapa import EcapaTdnn
from .ecapa_speechbrain import SpeechBrainEcapa
from .ensemble import Ensemble
from .ge2e import Ge2eLstm
from .heads import ProjectionHead
from .resnet import ResNet34

ENCODERS: dict[str, type[nn.Module]] = {
    "ecapa_tdnn": EcapaTdnn,
    "ecapa_speechbrain": SpeechBrainEcapa,
    "resnet34": ResNet34,
    "ge2e": Ge2eLstm,
}

__all__ = [
    "ENCODERS",
    "EcapaTdnn",
    "Ensemble",
    "Ge2eLstm",
    "ProjectionHead",
    "ResNet34",
    "SpeechBrainEcapa",
    "build_encoder",
]


def build_encoder(cfg: ModelConfig, n_mels: int) -> nn.Module:
    """The encoder named by ``cfg.encoder``; its ``embed_dim`` attribute is ``cfg.embed_dim``
    (``cfg.members`` times that for an ensemble of ``cfg.members`` such encoders)."""
    try:
        cls = ENCODERS[cfg.encoder]
    except KeyError:
        raise ValueError(
            f"unknown encoder {cfg.encoder!r}; choose one of: {', '.join(sorted(ENCODERS))}"
        ) from None
    if cfg.members > 1:
        return Ensemble([cls.from_config(cfg, n_mels) for _ in range(cfg.members)])
    return cls.from_config(cfg, n_mels)
