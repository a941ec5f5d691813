"""AAM-softmax (ArcFace) over speaker labels and its margin schedule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import no_autocast

# objective.aam_init: Xavier, or imprinted by class_centres from the teacher or the initial model
INITS = ("random", "teacher", "init")


def class_centres(table, labels, n_speakers: int, chunk: int = 65536) -> tuple[Tensor, Tensor]:
    """Imprinted AAM weights (Qi et al. 2018): ``table (N, K, D)`` embeddings (array or tensor,
    read ``chunk`` utterances at a time) of ``N`` utterances at ``K`` speed copies, ``labels
    (N,)`` speakers (-1 = unlabelled) -> ``(n_speakers * K, D)`` unit mean of each class's finite
    rows (class ``s + k * n_speakers`` is speaker ``s`` at copy ``k``, as the batches number
    them) and ``(n_speakers * K,)`` which classes had any row (the others are zero)."""
    n, k, d = table.shape
    sums = torch.zeros(n_speakers * k, d, dtype=torch.float64)
    seen = torch.zeros(n_speakers * k, dtype=torch.bool)
    copy = torch.arange(k)[None, :] * n_speakers
    for a in range(0, n, chunk):
        rows = torch.as_tensor(table[a : a + chunk]).double().reshape(-1, d)
        lab = torch.as_tensor(labels[a : a + chunk])
        cls = (lab.clamp_min(0)[:, None] + copy).reshape(-1)
        ok = torch.isfinite(rows).all(dim=1) & (lab >= 0).repeat_interleave(k)
        sums.index_add_(0, cls[ok], rows[ok])
        seen[cls[ok]] = True
    return F.normalize(sums, dim=1).float(), seen


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (ArcFace): ``(B, D)`` embeddings, ``(B,)`` labels -> loss.

    Logits ``scale * cos(theta_y + margin)`` for the true class, ``scale * cos(theta_j)`` for
    the others. The cosine is computed in float32 (autocast off) and clamped to
    ``[-1 + 1e-7, 1 - 1e-7]`` before the square root, so neither value nor gradient can be NaN.
    Where ``theta + margin > pi`` the margined logit would stop decreasing; there, as in
    SpeechBrain's ``AdditiveAngularMargin``, ``cos(theta) - margin * sin(margin)`` is used
    instead (``easy_margin=True``: no margin where ``cos(theta) <= 0``).

    Rows with ``label == -1`` are ignored; with no labelled row the loss is a zero that still
    depends on the inputs (so backward and DDP work). ``margin`` is settable (the schedule
    changes it) and saved in ``state_dict()``.
    """

    def __init__(
        self,
        embed_dim: int,
        n_classes: int,
        scale: float = 30.0,
        margin: float = 0.2,
        easy_margin: bool = False,
    ):
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"AAMSoftmax needs at least one class, got {n_classes}")
        self.weight = nn.Parameter(torch.empty(n_classes, embed_dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale = float(scale)
        self.easy_margin = bool(easy_margin)
        self.margin = float(margin)

    def get_extra_state(self) -> dict:
        return {"margin": self.margin}

    def set_extra_state(self, state: dict) -> None:
        self.margin = float(state["margin"])

    def extra_repr(self) -> str:
        n, d = self.weight.shape
        return f"embed_dim={d}, n_classes={n}, scale={self.scale}, margin={self.margin}"

    def cosine(self, emb: Tensor) -> Tensor:
        """``(B, D)`` -> cosines to every class centre ``(B, n_classes)``, float32."""
        with no_autocast(emb.device):
            return F.normalize(emb.float(), dim=1) @ F.normalize(self.weight.float(), dim=1).t()

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        keep = labels >= 0
        if not bool(keep.any()):
            return emb.float().sum() * 0.0 + self.weight.float().sum() * 0.0
        emb, labels = emb[keep], labels[keep]
        with no_autocast(emb.device):
            eps = 1e-7
            cos = self.cosine(emb).clamp(-1.0 + eps, 1.0 - eps)
            cos_y = cos.gather(1, labels[:, None])
            m = self.margin
            if m != 0.0:
                sin_y = torch.sqrt(1.0 - cos_y * cos_y)
                phi = cos_y * math.cos(m) - sin_y * math.sin(m)
                if self.easy_margin:
                    phi = torch.where(cos_y > 0, phi, cos_y)
                else:
                    phi = torch.where(
                        cos_y > math.cos(math.pi - m), phi, cos_y - math.sin(math.pi - m) * m
                    )
                cos = cos.scatter(1, labels[:, None], phi)
            return F.cross_entropy(self.scale * cos, labels)


class MarginSchedule:
    """AAM margin at a step: 0 before ``start_step``, then a linear ramp to ``final_margin``
    over ``warmup_steps`` steps (``warmup_steps == 0``: the full margin from ``start_step``)."""

    def __init__(self, final_margin: float, start_step: int = 0, warmup_steps: int = 0):
        self.final_margin = float(final_margin)
        self.start_step = int(start_step)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: int) -> float:
        if step < self.start_step:
            return 0.0
        if self.warmup_steps <= 0:
            return self.final_margin
        return self.final_margin * min(1.0, (step - self.start_step) / self.warmup_steps)
