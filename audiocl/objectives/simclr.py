"""SimCLR: NT-Xent over every view of the batch, negatives from the batch itself."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import ObjectiveConfig
from ..nn.heads import ProjectionHead
from .base import ContrastiveObjective
from .common import no_autocast


def nt_xent(z: Tensor, temperature: float, labels: Tensor | None = None) -> Tensor:
    """NT-Xent (normalised temperature-scaled cross-entropy) over ``V >= 2`` views.

    ``z (V, B, D)`` projections (L2-normalised here). Every one of the ``N = V * B`` rows is an
    anchor; its positives are the other ``V - 1`` views of the same utterance, and the softmax
    runs over all other ``N - 1`` rows (so every other utterance, in every view, is a negative).
    The loss is the mean over anchors and their positives of ``-log softmax``; for ``V = 2`` it
    is exactly SimCLR's loss. Targets come from the actual shape, so a short batch is fine.

    ``labels (B,)`` (optional, -1 = unknown): other utterances of the anchor's own speaker are
    taken out of its denominator, since pushing them away would teach the wrong thing.
    """
    if z.dim() != 3 or z.shape[0] < 2:
        raise ValueError(f"nt_xent expects (V >= 2, B, D) projections, got {tuple(z.shape)}")
    views, batch, _ = z.shape
    with no_autocast(z.device):
        z = F.normalize(z.float().reshape(views * batch, -1), dim=1)
        logits = (z @ z.t()) / temperature
        n = logits.shape[0]
        # positives of row (v, b): rows (v', b) for v' != v, i.e. indices (v + k) % V * B + b
        rows = torch.arange(n, device=z.device)
        shifts = torch.arange(1, views, device=z.device) * batch
        positives = (rows[:, None] + shifts[None, :]) % n  # (N, V - 1)
        drop = torch.eye(n, dtype=torch.bool, device=z.device)
        if labels is not None:
            drop |= same_speaker_mask(labels.to(z.device).repeat(views), positives)
        logits = logits.masked_fill(drop, -math.inf)
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        return -log_prob.gather(1, positives).mean()


def same_speaker_mask(labels: Tensor, keep: Tensor | None = None) -> Tensor:
    """``(N,)`` labels -> ``(N, N)`` True where two rows share a known speaker; the entries
    named by ``keep (N, k)`` (the positives) stay False."""
    same = (labels[:, None] == labels[None, :]) & (labels[:, None] >= 0)
    if keep is not None:
        same.scatter_(1, keep, False)
    return same


class SimCLR(ContrastiveObjective):
    """NT-Xent on ``head(emb)`` of every view (global and local crops alike)."""

    def __init__(
        self,
        head: torch.nn.Module,
        temperature: float,
        global_views: int = 2,
        mask_same_speaker: bool = True,
    ):
        super().__init__(global_views)
        self.head = head
        self.temperature = float(temperature)
        self.mask_same_speaker = bool(mask_same_speaker)

    @classmethod
    def from_config(
        cls, cfg: ObjectiveConfig, encoder, embed_dim: int, global_views: int, total_steps: int
    ):
        head = ProjectionHead(embed_dim, cfg.head_hidden, cfg.head_dim)
        return cls(head, cfg.temperature, global_views, cfg.mask_same_speaker)

    def forward(self, emb: Tensor, labels: Tensor, feats: Tensor | None = None):
        self.check(emb, feats)
        views, batch, dim = emb.shape
        z = self.head(emb.reshape(views * batch, dim)).reshape(views, batch, -1)
        loss = nt_xent(z, self.temperature, labels if self.mask_same_speaker else None)
        return loss, {}
