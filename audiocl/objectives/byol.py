"""BYOL: an online projector and predictor regress an EMA target network; no negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ObjectiveConfig
from ..nn.heads import ProjectionHead
from .base import ContrastiveObjective
from .common import cross_view_pairs, no_autocast
from .ema import EmaTeacher


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """Normalised MSE ``|p/|p| - z/|z||^2 = 2 - 2 cos(p, z)``, mean over rows; ``(N, D)`` each.
    ``z`` is the target and gets no gradient."""
    with no_autocast(p.device):
        p = F.normalize(p.float(), dim=1)
        z = F.normalize(z.detach().float(), dim=1)
        return (2.0 - 2.0 * (p * z).sum(dim=1)).mean()


class BYOL(ContrastiveObjective):
    """Online: ``predictor(projector(emb[s]))`` for every view ``s``. Target:
    ``projector'(encoder'(feats[t]))`` of every global crop ``t``, with ``encoder'`` and
    ``projector'`` EMA copies whose momentum rises from ``ema_momentum`` to 1 on BYOL's cosine
    schedule. The loss is ``byol_loss`` averaged over the pairs ``(t, s), s != t`` (symmetric for
    two views, as in the paper)."""

    needs_feats = True
    has_teacher = True

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module,
        predictor: nn.Module,
        momentum: float,
        final_momentum: float = 1.0,
        total_steps: int = 1,
        global_views: int = 2,
    ):
        super().__init__(global_views)
        self.projector = projector
        self.predictor = predictor
        self.teacher = EmaTeacher([encoder, projector], momentum, final_momentum, total_steps)

    @classmethod
    def from_config(cls, cfg: ObjectiveConfig, encoder, embed_dim, global_views, total_steps):
        projector = ProjectionHead(embed_dim, cfg.head_hidden, cfg.head_dim)
        predictor = ProjectionHead(cfg.head_dim, cfg.head_hidden, cfg.head_dim)
        return cls(
            encoder,
            projector,
            predictor,
            cfg.ema_momentum,
            cfg.ema_momentum_final,
            total_steps,
            global_views,
        )

    def forward(self, emb: Tensor, labels: Tensor, feats: Tensor | None = None):
        self.check(emb, feats)
        views, batch, dim = emb.shape
        g = self.global_views
        p = self.predictor(self.projector(emb.reshape(views * batch, dim)))
        p = p.reshape(views, batch, -1)
        z = self.teacher(feats.reshape(g * batch, *feats.shape[2:])).reshape(g, batch, -1)
        pairs = cross_view_pairs(g, views)
        loss = torch.stack([byol_loss(p[s], z[t]) for t, s in pairs]).mean()
        return loss, {"ema_momentum": self.teacher.momentum(self.step)}

    def on_step(self, step: int) -> None:
        super().on_step(step)
        self.teacher.update(step)
