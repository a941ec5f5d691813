"""SwAV: online clustering onto learnable prototypes with equal-partition codes (Caron et al.,
2020), with swapped prediction across crops and multi-crop."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ObjectiveConfig
from ..nn.heads import ProjectionHead
from .base import ContrastiveObjective
from .common import (
    all_reduce_max,
    all_reduce_sum,
    cross_view_pairs,
    entropy,
    frozen,
    no_autocast,
    soft_cross_entropy,
)


@torch.no_grad()
def sinkhorn(scores: Tensor, eps: float = 0.05, iters: int = 3) -> Tensor:
    """Sinkhorn-Knopp codes ``(N, K)`` for ``scores (N, K)`` (cosines to the prototypes).

    ``Q = exp(scores / eps)`` is alternately rescaled so that every prototype receives an equal
    share of the batch (columns sum to ``N_total / K``) and every example one unit of mass
    (rows sum to 1), the rows last. Under DDP the sums run over the global batch of all
    processes, so the partition is equal over all of it. Computed in float32, stabilised by the
    global maximum (which cancels in the normalisation)."""
    with no_autocast(scores.device):
        logits = scores.float() / eps
        top = all_reduce_max(logits.max().clone())
        q = torch.exp(logits - top).t()  # (K, N)
        k = q.shape[0]
        n_total = all_reduce_sum(torch.tensor(float(q.shape[1]), device=q.device))
        q /= all_reduce_sum(q.sum())
        for _ in range(iters):
            q /= all_reduce_sum(q.sum(dim=1, keepdim=True))
            q /= k
            q /= q.sum(dim=0, keepdim=True)
            q /= n_total
        return (q * n_total).t()


class SwAV(ContrastiveObjective):
    """``z = normalize(projector(emb))`` for every crop, scores ``z @ normalize(prototypes)^T``.
    For each global crop ``t`` the codes ``q_t = sinkhorn(scores[t])`` (no gradient) are
    predicted from every other crop ``s`` by ``softmax(scores[s] / temperature)``; the loss is the
    cross-entropy averaged over those pairs.

    Small batches cannot be split equally over many prototypes, so, as in SwAV, a queue of the
    last ``queue_size`` global-crop projections (per global crop) is scored with the current
    prototypes and joins the Sinkhorn batch once it is full; only the batch's own codes are used.
    The prototypes are frozen for the first ``freeze_steps`` steps.
    """

    def __init__(
        self,
        projector: nn.Module,
        dim: int,
        prototypes: int,
        temperature: float = 0.1,
        eps: float = 0.05,
        iters: int = 3,
        queue_size: int = 0,
        freeze_steps: int = 0,
        global_views: int = 2,
    ):
        super().__init__(global_views)
        self.projector = projector
        self.prototypes = nn.Parameter(F.normalize(torch.randn(prototypes, dim), dim=1))
        self.temperature, self.eps, self.iters = float(temperature), float(eps), int(iters)
        self.freeze_steps = int(freeze_steps)
        self.register_buffer("queue", torch.zeros(global_views, queue_size, dim))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg: ObjectiveConfig, encoder, embed_dim, global_views, total_steps):
        return cls(
            ProjectionHead(embed_dim, cfg.head_hidden, cfg.head_dim),
            cfg.head_dim,
            cfg.prototypes,
            temperature=cfg.temperature,
            eps=cfg.sinkhorn_eps,
            iters=cfg.sinkhorn_iters,
            queue_size=cfg.swav_queue,
            freeze_steps=cfg.freeze_prototypes_steps,
            global_views=global_views,
        )

    def codes(self, t: int, scores: Tensor, protos: Tensor) -> Tensor:
        """Codes ``(B, K)`` of global crop ``t`` from its ``scores (B, K)``, queue included."""
        batch = scores.shape[0]
        scores = scores.detach()
        if self.queue.shape[1] and int(self.queue_filled) >= self.queue.shape[1]:
            scores = torch.cat([scores, self.queue[t] @ protos.detach().t()])
        return sinkhorn(scores, self.eps, self.iters)[:batch]

    def forward(self, emb: Tensor, labels: Tensor, feats: Tensor | None = None):
        self.check(emb, feats)
        views, batch, dim = emb.shape
        g = self.global_views
        protos = frozen(self.prototypes) if self.step < self.freeze_steps else self.prototypes
        with no_autocast(emb.device):
            z = F.normalize(self.projector(emb.reshape(views * batch, dim)).float(), dim=1)
            protos = F.normalize(protos.float(), dim=1)
            scores = (z @ protos.t()).reshape(views, batch, -1)
        z = z.reshape(views, batch, -1)
        codes = [self.codes(t, scores[t], protos) for t in range(g)]
        pairs = cross_view_pairs(g, views)
        loss = torch.stack(
            [soft_cross_entropy(scores[s], codes[t], self.temperature) for t, s in pairs]
        )
        log_k = math.log(scores.shape[-1])
        probs = torch.stack(codes)
        logs = {
            "code_entropy": float(entropy(probs).mean()) / log_k,
            "code_marginal_entropy": float(entropy(probs.mean(dim=(0, 1)))) / log_k,
        }
        if self.training and self.queue.shape[1]:
            self.enqueue(z[:g].detach())
        return loss.mean(), logs

    @torch.no_grad()
    def enqueue(self, z: Tensor) -> None:
        """Shift ``z (G, B, dim)`` into the front of the queue; the oldest entries fall off."""
        size = self.queue.shape[1]
        b = min(z.shape[1], size)
        self.queue.copy_(torch.cat([z[:, -b:].to(self.queue.dtype), self.queue[:, : size - b]], 1))
        self.queue_filled.fill_(min(size, int(self.queue_filled) + b))
