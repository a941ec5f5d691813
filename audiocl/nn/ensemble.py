"""Several trained encoders of one architecture as one: ``(B, T, F) -> (B, n * D)``.

Each member's embedding is L2-normalised and the results concatenated, scaled by
``1 / sqrt(n)``: the cosine of two ensemble embeddings is then the mean of the members'
cosines (score fusion with equal weights), and everything downstream (stores, calibration,
AS-Norm, ONNX) sees one model. Independently trained members err on different trials, so the
fusion helps where averaging weights of one run does not (``docs/results.md``). Built from
model files by ``audiocl ensemble``, never trained as one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, cat, nn


class Ensemble(nn.Module):
    """``members``: encoders ``(B, T, F) -> (B, D_i)`` on the same features."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        dims = [getattr(m, "embed_dim", None) for m in members]
        self.embed_dim = None if None in dims else sum(dims)

    def forward(self, feats: Tensor) -> Tensor:
        parts = [nn.functional.normalize(m(feats).float(), dim=1) for m in self.members]
        return cat(parts, dim=1) / math.sqrt(len(parts))
