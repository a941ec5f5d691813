"""MoCo (v2-style): a momentum key encoder and a queue of negative keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ObjectiveConfig
from ..nn.heads import ProjectionHead
from .base import ContrastiveObjective
from .common import cross_view_pairs, gather_all, no_autocast
from .ema import EmaTeacher


class MoCo(ContrastiveObjective):
    """Queries ``head(emb[s])`` of every view; keys ``key_head(key_encoder(feats[t]))`` of the
    global crops under ``no_grad``. Each query is scored against the key of every *other*
    global crop (for two views: view 0 against view 1's key and vice versa) and against the
    queue, ``(K, dim)`` L2-normalised keys of past batches (only its filled part while it fills).
    After the loss, global view 1's keys (gathered from all processes under DDP) replace the
    oldest queue entries.

    The key networks are an ``EmaTeacher`` at constant momentum, in the same train/eval mode as
    this module (BatchNorm with batch statistics in training; no shuffle-BN).
    """

    needs_feats = True
    has_teacher = True

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        queue_size: int,
        momentum: float,
        temperature: float,
        dim: int,
        global_views: int = 2,
    ):
        super().__init__(global_views)
        if queue_size < 1:
            raise ValueError(f"MoCo queue_size must be >= 1, got {queue_size}")
        self.head = head
        self.teacher = EmaTeacher([encoder, head], momentum, momentum)
        self.temperature = float(temperature)
        self.register_buffer("queue", torch.zeros(queue_size, dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg: ObjectiveConfig, encoder, embed_dim, global_views, total_steps):
        head = ProjectionHead(embed_dim, cfg.head_hidden, cfg.head_dim)
        return cls(
            encoder,
            head,
            cfg.moco_queue,
            cfg.moco_momentum,
            cfg.temperature,
            cfg.head_dim,
            global_views,
        )

    @torch.no_grad()
    def keys(self, feats: Tensor) -> Tensor:
        """``feats (N, T, F)`` -> L2-normalised keys ``(N, dim)`` in float32."""
        return F.normalize(self.teacher(feats).float(), dim=1)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys (n, dim)`` (gathered from all processes) over the oldest queue entries."""
        keys = gather_all(keys.detach().float())
        size = self.queue.shape[0]
        if keys.shape[0] >= size:
            keys = keys[-size:]
        n = keys.shape[0]
        ptr = int(self.queue_ptr)
        idx = (torch.arange(n, device=self.queue.device) + ptr) % size
        self.queue.index_copy_(0, idx, keys.to(self.queue.dtype))
        self.queue_ptr.fill_((ptr + n) % size)
        self.queue_filled.fill_(min(size, int(self.queue_filled) + n))

    def forward(self, emb: Tensor, labels: Tensor, feats: Tensor | None = None):
        self.check(emb, feats)
        views, batch, dim = emb.shape
        g = self.global_views
        q = self.head(emb.reshape(views * batch, dim)).reshape(views, batch, -1)
        keys = self.keys(feats.reshape(g * batch, *feats.shape[2:])).reshape(g, batch, -1)
        negatives = self.queue[: int(self.queue_filled)].clone()  # enqueue() writes in place
        losses = []
        with no_autocast(emb.device):
            for t, s in cross_view_pairs(g, views):
                qs = F.normalize(q[s].float(), dim=1)
                pos = (qs * keys[t]).sum(dim=1, keepdim=True)
                logits = torch.cat([pos, qs @ negatives.t()], dim=1) / self.temperature
                losses.append(-torch.log_softmax(logits, dim=1)[:, 0].mean())
            loss = torch.stack(losses).mean()
        if self.training:
            self.enqueue(keys[1])
        return loss, {}

    def on_step(self, step: int) -> None:
        super().on_step(step)
        self.teacher.update(step)
