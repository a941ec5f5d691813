"""CLIP-style objective: symmetric cross-entropy over the cross-view similarity matrix with a
learnable logit scale (Radford et al., 2021), the two "modalities" being two differently
augmented crops of each utterance.

How it differs from SimCLR's NT-Xent: (1) only *cross-view* pairs are compared, so the B x B
matrix of crop-a against crop-b holds one positive per row and column and no same-view
negatives (NT-Xent's softmax runs over all 2B - 1 other crops); (2) the loss is the mean of the
row-wise and the column-wise cross-entropy, CLIP's two directions; (3) the temperature is
learned: ``logit_scale`` starts at ``log(1 / 0.07)`` and the scale is clamped at 100, as in CLIP.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ObjectiveConfig
from ..nn.heads import ProjectionHead
from .base import ContrastiveObjective
from .common import no_autocast
from .simclr import same_speaker_mask

MAX_LOGIT_SCALE = math.log(100.0)


def clip_loss(a: Tensor, b: Tensor, logit_scale: Tensor, labels: Tensor | None = None) -> Tensor:
    """``a, b (B, D)`` projections of two crops of the same ``B`` utterances (row ``i`` of each is
    a positive pair) -> ``(CE(S, I) + CE(S^T, I)) / 2`` with ``S = exp(logit_scale) * cos(a, b)``.

    ``labels (B,)`` (optional, -1 = unknown): off-diagonal pairs of one known speaker are no
    negatives (masked out of both softmaxes)."""
    with no_autocast(a.device):
        a, b = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
        scale = logit_scale.float().clamp(max=MAX_LOGIT_SCALE).exp()
        logits = scale * (a @ b.t())
        if labels is not None:
            diag = torch.arange(a.shape[0], device=a.device)[:, None]
            logits = logits.masked_fill(same_speaker_mask(labels.to(a.device), diag), -math.inf)
        target = torch.arange(a.shape[0], device=a.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


class CLIP(ContrastiveObjective):
    """``clip_loss`` on ``head(emb)`` for every pair of global crops (one pair for two views);
    local crops, if any, are not used."""

    def __init__(
        self,
        head: nn.Module,
        init_temperature: float = 0.07,
        global_views: int = 2,
        mask_same_speaker: bool = True,
    ):
        super().__init__(global_views)
        self.head = head
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.mask_same_speaker = bool(mask_same_speaker)

    @classmethod
    def from_config(cls, cfg: ObjectiveConfig, encoder, embed_dim, global_views, total_steps):
        head = ProjectionHead(embed_dim, cfg.head_hidden, cfg.head_dim)
        return cls(head, cfg.clip_init_temperature, global_views, cfg.mask_same_speaker)

    def forward(self, emb: Tensor, labels: Tensor, feats: Tensor | None = None):
        self.check(emb, feats)
        g, batch, dim = self.global_views, emb.shape[1], emb.shape[2]
        z = self.head(emb[:g].reshape(g * batch, dim)).reshape(g, batch, -1)
        lab = labels if self.mask_same_speaker else None
        pairs = [(i, j) for i in range(g) for j in range(i + 1, g)]
        loss = torch.stack([clip_loss(z[i], z[j], self.logit_scale, lab) for i, j in pairs])
        scale = float(self.logit_scale.detach().clamp(max=MAX_LOGIT_SCALE).exp())
        return loss.mean(), {"logit_scale": scale}
