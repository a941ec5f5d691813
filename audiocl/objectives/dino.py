"""DINO: self-distillation with no labels (Caron et al., 2021), as WeSpeaker uses it for
speakers (Chen et al., 2023): a student and an EMA teacher over K prototypes, teacher centering
and sharpening, multi-crop with the teacher on the global crops only."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ObjectiveConfig
from .base import ContrastiveObjective
from .common import (
    all_reduce_sum,
    cross_view_pairs,
    entropy,
    frozen,
    no_autocast,
    soft_cross_entropy,
    world_size,
)
from .ema import EmaTeacher


class DinoHead(nn.Module):
    """``(N, in_dim) -> (N, K)``: an MLP (``layers`` linear layers, GELU, optional BatchNorm) to a
    ``bottleneck``, L2 normalisation, then a weight-normalised linear layer with its norm fixed
    at 1 (DINO's ``norm_last_layer``): each output is the cosine with one of ``K`` prototypes.

    ``forward(x, freeze_last=True)`` gives the prototypes a zero gradient (DINO freezes them
    during the first steps, when they would otherwise move the most and destabilise training).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        bottleneck: int,
        prototypes: int,
        layers: int = 3,
        batchnorm: bool = True,
    ):
        super().__init__()
        if layers < 1 or prototypes < 2:
            raise ValueError(
                f"DinoHead needs layers >= 1 and prototypes >= 2, got {layers}, {prototypes}"
            )
        dims = [in_dim] + [hidden] * (layers - 1) + [bottleneck]
        mlp: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            mlp.append(nn.Linear(a, b))
            if i < layers - 1:
                if batchnorm:
                    mlp.append(nn.BatchNorm1d(b))
                mlp.append(nn.GELU())
        self.mlp = nn.Sequential(*mlp)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.prototypes = nn.Parameter(torch.empty(prototypes, bottleneck))
        nn.init.kaiming_uniform_(self.prototypes, a=math.sqrt(5))

    def forward(self, x: Tensor, freeze_last: bool = False) -> Tensor:
        h = F.normalize(self.mlp(x), dim=-1)
        w = frozen(self.prototypes) if freeze_last else self.prototypes
        return h @ F.normalize(w, dim=-1).t()


class DINO(ContrastiveObjective):
    """Student: ``head(emb[s])`` for every crop. Teacher: EMA copies of the encoder and head on
    the global crops' features, centred by ``center`` and sharpened by the teacher temperature
    (linear warm-up from ``teacher_temp_warmup`` to ``teacher_temp`` over ``warmup_steps``).
    Loss: ``soft_cross_entropy`` averaged over the pairs (global crop ``t``, other crop ``s``). The centre
    is an EMA (``center_momentum``) of the teacher outputs' batch mean, all-reduced over
    processes, so every replica centres alike.

    Logs: the teacher's mean per-example entropy and the entropy of its batch-mean
    distribution, each as a fraction of ``log K``: a per-example entropy near 1 is the uniform
    collapse, a marginal entropy near 0 the one-prototype collapse that centering prevents.
    """

    needs_feats = True
    has_teacher = True

    def __init__(
        self,
        encoder: nn.Module,
        head: DinoHead,
        student_temp: float = 0.1,
        teacher_temp: float = 0.07,
        teacher_temp_warmup: float = 0.04,
        warmup_steps: int = 0,
        center_momentum: float = 0.9,
        momentum: float = 0.996,
        final_momentum: float = 1.0,
        total_steps: int = 1,
        freeze_last_steps: int = 0,
        global_views: int = 2,
    ):
        super().__init__(global_views)
        self.head = head
        self.teacher = EmaTeacher([encoder, head], momentum, final_momentum, total_steps)
        self.student_temp = float(student_temp)
        self.teacher_temp, self.teacher_temp_warmup = (
            float(teacher_temp),
            float(teacher_temp_warmup),
        )
        self.warmup_steps = int(warmup_steps)
        self.center_momentum = float(center_momentum)
        self.freeze_last_steps = int(freeze_last_steps)
        self.register_buffer("center", torch.zeros(1, head.prototypes.shape[0]))

    @classmethod
    def from_config(cls, cfg: ObjectiveConfig, encoder, embed_dim, global_views, total_steps):
        head = DinoHead(
            embed_dim, cfg.head_hidden, cfg.head_dim, cfg.prototypes, cfg.head_layers, cfg.head_bn
        )
        return cls(
            encoder,
            head,
            student_temp=cfg.temperature,
            teacher_temp=cfg.teacher_temp,
            teacher_temp_warmup=cfg.teacher_temp_warmup,
            warmup_steps=round(cfg.teacher_temp_warmup_fraction * total_steps),
            center_momentum=cfg.center_momentum,
            momentum=cfg.ema_momentum,
            final_momentum=cfg.ema_momentum_final,
            total_steps=total_steps,
            freeze_last_steps=cfg.freeze_prototypes_steps,
            global_views=global_views,
        )

    def temperature_at(self, step: int) -> float:
        if step >= self.warmup_steps:
            return self.teacher_temp
        return self.teacher_temp_warmup + (self.teacher_temp - self.teacher_temp_warmup) * (
            step / self.warmup_steps
        )

    def forward(self, emb: Tensor, labels: Tensor, feats: Tensor | None = None):
        self.check(emb, feats)
        views, batch, dim = emb.shape
        g = self.global_views
        freeze = self.step < self.freeze_last_steps
        student = self.head(emb.reshape(views * batch, dim), freeze_last=freeze)
        student = student.reshape(views, batch, -1)
        with torch.no_grad(), no_autocast(emb.device):
            flat = feats.reshape(g * batch, *feats.shape[2:])
            teacher = self.teacher(flat).float().reshape(g, batch, -1)
            temp = self.temperature_at(self.step)
            probs = F.softmax((teacher - self.center) / temp, dim=-1)
        pairs = cross_view_pairs(g, views)
        loss = torch.stack(
            [soft_cross_entropy(student[s], probs[t], self.student_temp) for t, s in pairs]
        )
        log_k = math.log(probs.shape[-1])
        logs = {
            "teacher_entropy": float(entropy(probs).mean()) / log_k,
            "teacher_marginal_entropy": float(entropy(probs.mean(dim=(0, 1)))) / log_k,
            "teacher_temp": temp,
        }
        if self.training:
            self.update_center(teacher)
        return loss.mean(), logs

    @torch.no_grad()
    def update_center(self, teacher: Tensor) -> None:
        """``center = m * center + (1 - m) * mean`` of ``teacher (G, B, K)`` over all processes."""
        total = all_reduce_sum(teacher.reshape(-1, teacher.shape[-1]).sum(dim=0, keepdim=True))
        count = teacher.shape[0] * teacher.shape[1] * world_size()
        m = self.center_momentum
        self.center.mul_(m).add_(total / count, alpha=1.0 - m)

    def on_step(self, step: int) -> None:
        super().on_step(step)
        self.teacher.update(step)
