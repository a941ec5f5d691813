"""Training objectives: the contrastive family, AAM-softmax, and their weighted sum.

The trainer computes the embeddings of every view: ``emb (V, B, D)``, view ``v`` of utterance
``b`` at ``emb[v, b]``, the ``G`` global crops first, then the local crops (multi-crop). Labels
``(B,)`` are class indices, ``-1`` for unlabelled utterances. Each contrastive objective is one
module in this package behind ``CONTRASTIVE``; those with an EMA teacher share ``EmaTeacher``.
Losses are computed in float32, also under autocast.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ObjectiveConfig
from .aam import AAMSoftmax, MarginSchedule
from .base import ContrastiveObjective
from .byol import BYOL
from .clip import CLIP
from .collapse import spread
from .dino import DINO
from .distill import Distill
from .moco import MoCo
from .simclr import SimCLR, nt_xent
from .swav import SwAV

CONTRASTIVE: dict[str, type[ContrastiveObjective]] = {
    "simclr": SimCLR,
    "moco": MoCo,
    "byol": BYOL,
    "dino": DINO,
    "swav": SwAV,
    "clip": CLIP,
}

__all__ = [
    "AAMSoftmax",
    "BYOL",
    "CLIP",
    "CONTRASTIVE",
    "DINO",
    "Distill",
    "MarginSchedule",
    "MoCo",
    "Objective",
    "SimCLR",
    "SwAV",
    "build_objective",
    "nt_xent",
]


class Objective(nn.Module):
    """``aam_weight * AAM + contrastive_weight * contrastive`` on the embeddings of V views.

    The AAM part uses the global crops' embeddings with the utterance's label and ignores
    unlabelled (``-1``) rows; a batch without labels contributes 0. Call ``on_step(step)`` after
    each ``optimizer.step()`` with the number of steps done: it sets the schedules (AAM margin,
    teacher temperature) and moves the EMA teachers. Everything needed to resume exactly (heads,
    prototypes, teachers, queues, centres, the margin) is in ``state_dict()``.
    """

    def __init__(
        self,
        contrastive: ContrastiveObjective | None = None,
        contrastive_weight: float = 1.0,
        aam: AAMSoftmax | None = None,
        aam_weight: float = 0.0,
        margin_schedule: MarginSchedule | None = None,
        global_views: int = 2,
        distill: Distill | None = None,
        distill_weight: float = 0.0,
    ):
        super().__init__()
        if contrastive is None and aam is None and distill is None:
            raise ValueError("an objective needs a contrastive, an AAM or a distillation part")
        self.contrastive = contrastive
        self.contrastive_weight = float(contrastive_weight)
        self.aam = aam
        self.aam_weight = float(aam_weight)
        self.margin_schedule = margin_schedule
        self.global_views = int(global_views)
        self.distill = distill
        self.distill_weight = float(distill_weight)
        self.set_step(0)

    @property
    def needs_labels(self) -> bool:
        return self.aam is not None

    @property
    def needs_feats(self) -> bool:
        """Whether ``forward`` needs the global crops' features (a teacher runs on them)."""
        return self.contrastive is not None and self.contrastive.needs_feats

    @property
    def needs_teacher(self) -> bool:
        """Whether ``forward`` needs the teacher's embeddings of the batch (distillation)."""
        return self.distill is not None

    def forward(
        self,
        emb: Tensor,
        labels: Tensor,
        feats: Tensor | None = None,
        teacher: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """``emb (V, B, D)``, ``labels (B,)`` (-1 = unlabelled), ``feats (G, B, T, F)``,
        ``teacher (B, Dt)`` (a frozen teacher's embeddings of the clean utterances).

        Returns the scalar loss (float32) and its parts as floats: ``loss``, ``emb_spread``
        (``collapse.spread`` of the first crop's embeddings), and ``contrastive`` with the
        objective's own logs, ``aam`` / ``margin`` / ``distill`` where active.
        """
        if emb.dim() != 3:
            raise ValueError(f"Objective expects embeddings (V, B, D), got {tuple(emb.shape)}")
        total = emb.new_zeros((), dtype=torch.float32)
        parts: dict[str, float] = {}
        if self.contrastive is not None:
            c, logs = self.contrastive(emb, labels, feats)
            total = total + self.contrastive_weight * c
            parts["contrastive"] = float(c.detach())
            parts.update(logs)
        if self.aam is not None:
            g, batch, dim = min(self.global_views, emb.shape[0]), emb.shape[1], emb.shape[2]
            a = self.aam(emb[:g].reshape(g * batch, dim), labels.repeat(g))
            total = total + self.aam_weight * a
            parts["aam"] = float(a.detach())
            parts["margin"] = self.aam.margin
        if self.distill is not None:
            if teacher is None:
                raise ValueError("the distillation objective needs the teacher's embeddings")
            d, logs = self.distill(emb, teacher.to(emb.device), labels)
            total = total + self.distill_weight * d
            parts["distill"] = float(d.detach())
            parts.update(logs)
        parts["emb_spread"] = spread(emb[0])
        parts["loss"] = float(total.detach())
        return total, parts

    @torch.no_grad()
    def set_step(self, step: int) -> None:
        """Step-dependent schedules for ``step`` (AAM margin, teacher temperature, frozen
        prototypes); used on resume."""
        if self.aam is not None and self.margin_schedule is not None:
            self.aam.margin = self.margin_schedule(step)
        if self.contrastive is not None:
            self.contrastive.set_step(step)

    def on_step(self, step: int) -> None:
        """After ``optimizer.step()``; ``step`` = optimiser steps done so far."""
        self.set_step(step)
        if self.contrastive is not None:
            self.contrastive.on_step(step)


def build_objective(
    cfg: ObjectiveConfig,
    encoder: nn.Module,
    embed_dim: int,
    n_classes: int,
    global_views: int = 2,
    total_steps: int = 1,
    teacher_dim: int = 0,
) -> Objective:
    """The objective of ``cfg`` for ``encoder`` (``(B, T, F) -> (B, embed_dim)``).

    ``n_classes``: number of labelled speakers (0 when the data has none: then the AAM part is
    dropped and the other parts alone are trained; if there are none, ``ValueError``).
    ``total_steps`` sets the length of the EMA momentum and temperature schedules.
    ``teacher_dim``: the distillation teacher's embedding size (0: no distillation).
    """
    use_contrastive = cfg.contrastive != "none" and cfg.contrastive_weight > 0
    use_aam = cfg.aam_weight > 0 and n_classes > 0
    use_distill = cfg.distill.weight > 0 and teacher_dim > 0
    if not use_contrastive and not use_aam and not use_distill:
        raise ValueError(
            "the objective has nothing to train: contrastive is off, distillation is off and "
            "there are no speaker labels for AAM (set objective.contrastive, "
            "objective.distill or use labelled data)"
        )
    contrastive = aam = schedule = None
    if use_contrastive:
        try:
            cls = CONTRASTIVE[cfg.contrastive]
        except KeyError:
            raise ValueError(
                f"unknown contrastive objective {cfg.contrastive!r}; choose one of: "
                f"{', '.join(CONTRASTIVE)}, none"
            ) from None
        contrastive = cls.from_config(cfg, encoder, embed_dim, global_views, total_steps)
    if use_aam:
        aam = AAMSoftmax(embed_dim, n_classes, cfg.aam_scale, cfg.aam_margin)
        schedule = MarginSchedule(cfg.aam_margin, cfg.margin_warmup_start, cfg.margin_warmup_steps)
    distill = (
        Distill(
            embed_dim, teacher_dim, cfg.distill.loss, cfg.distill.temperature, cfg.distill.head_init
        )
        if use_distill
        else None
    )
    return Objective(
        contrastive=contrastive,
        contrastive_weight=cfg.contrastive_weight if use_contrastive else 0.0,
        aam=aam,
        aam_weight=cfg.aam_weight if use_aam else 0.0,
        margin_schedule=schedule,
        global_views=global_views,
        distill=distill,
        distill_weight=cfg.distill.weight if use_distill else 0.0,
    )
