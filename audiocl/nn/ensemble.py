"""Several trained encoders as one model: their L2-normalised embeddings concatenated, member
``i`` scaled by ``sqrt(w_i)`` (weights summing to 1; equal by default). The cosine of two
ensemble embeddings is then ``sum_i w_i cos_i``, the weighted mean of the members' cosines
(score fusion), and everything downstream (stores, calibration, AS-Norm, ONNX) sees one model.
Independently trained members err on different trials, so the fusion helps where averaging
weights of one run does not (``docs/results.md``). Built from model files by ``audiocl
ensemble``, never trained as one.

- ``Ensemble``: members of one architecture on the same features, ``(B, T, F) -> (B, sum D_i)``.
- ``MixedEnsemble``: members of any architectures, each with its own front end,
  ``(B, S)`` waveforms -> ``(B, sum D_i)`` (the model file's front end passes the waveform on).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, cat, nn

from ..errors import ConfigError

# model.encoder of an ensemble of different architectures (no registry entry: its members are
# described by the model file's ``ensemble_of`` configs, not by one ModelConfig)
MIXED = "mixed"


def ensemble_weights(
    weights: Sequence[float] | None, n: int, what: str = "ensemble weights"
) -> list[float]:
    """``n`` fusion weights, each >= 0, scaled to sum to 1; ``None``: equal weights."""
    if weights is None:
        return [1.0 / n] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise ConfigError(f"{what}: {len(w)} given for {n} files")
    if not all(math.isfinite(x) and x >= 0 for x in w) or sum(w) <= 0:
        raise ConfigError(f"{what} must be >= 0 and not all 0, got {w}")
    return [x / sum(w) for x in w]


def fuse(parts: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """``(B, D_i)`` member embeddings -> ``(B, sum D_i)``: normalised, scaled by ``sqrt(w_i)``."""
    scaled = zip(parts, weights, strict=True)
    return cat([nn.functional.normalize(p.float(), dim=1) * math.sqrt(w) for p, w in scaled], dim=1)


class Ensemble(nn.Module):
    """``members``: encoders ``(B, T, F) -> (B, D_i)`` on the same input (features here,
    waveforms in a ``MixedEnsemble``)."""

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.weights = ensemble_weights(weights, len(members))
        dims = [getattr(m, "embed_dim", None) for m in members]
        self.embed_dim = None if None in dims else sum(dims)

    def forward(self, x: Tensor) -> Tensor:
        return fuse([m(x) for m in self.members], self.weights)


class Member(nn.Module):
    """One member of a ``MixedEnsemble``: its own front end and encoder, ``(B, S) -> (B, D)``."""

    def __init__(self, fbank: nn.Module, encoder: nn.Module):
        super().__init__()
        self.fbank, self.encoder = fbank, encoder
        self.embed_dim = getattr(encoder, "embed_dim", None)

    def forward(self, wave: Tensor) -> Tensor:
        return self.encoder(self.fbank(wave))


class MixedEnsemble(Ensemble):
    """An ``Ensemble`` whose members are ``Member`` modules: ``(B, S)`` waveforms in, each
    member's own front end inside."""
