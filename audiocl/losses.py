"""Training objectives: NT-Xent (SimCLR), MoCo, AAM-softmax and their weighted sum.

Embeddings of all views are computed by the trainer: ``emb (V, B, D)``, view ``v`` of
utterance ``b`` at ``emb[v, b]``. Speaker labels ``(B,)`` are class indices, ``-1`` for
unlabelled utterances. Losses are computed in float32, also under autocast.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ObjectiveConfig
from .models.heads import ProjectionHead


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


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
    with _no_autocast(z.device):
        z = F.normalize(z.float().reshape(views * batch, -1), dim=1)
        logits = (z @ z.t()) / temperature
        n = logits.shape[0]
        # positives of row (v, b): rows (v', b) for v' != v, i.e. indices (v + k) % V * B + b
        rows = torch.arange(n, device=z.device)
        shifts = torch.arange(1, views, device=z.device) * batch
        positives = (rows[:, None] + shifts[None, :]) % n  # (N, V - 1)
        drop = torch.eye(n, dtype=torch.bool, device=z.device)
        if labels is not None:
            lab = labels.to(z.device).repeat(views)
            same = (lab[:, None] == lab[None, :]) & (lab[:, None] >= 0)
            same.scatter_(1, positives, False)
            drop |= same
        logits = logits.masked_fill(drop, -math.inf)
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        return -log_prob.gather(1, positives).mean()


@torch.no_grad()
def _gather_all(x: Tensor) -> Tensor:
    """Concatenate ``x (b, D)`` from every process (sizes may differ); identity without DDP."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    world = dist.get_world_size()
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes_int = [int(s.item()) for s in sizes]
    longest = max(sizes_int)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    chunks = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded)
    return torch.cat([c[:s] for c, s in zip(chunks, sizes_int, strict=True)])


class MoCo(nn.Module):
    """MoCo (v2-style) with a momentum key encoder and a queue of negative keys.

    Queries: ``head(emb[v])`` for every view ``v`` (the online embeddings the trainer already
    computed). Keys: ``key_head(key_encoder(feats[(v + 1) % V]))`` under ``no_grad``, so the loss is
    symmetric for ``V = 2`` (view 0 queries view 1's key and vice versa) and averaged over
    views. Negatives: the queue, ``(K, dim)`` L2-normalised keys of past batches (only the
    filled part is used while it fills). After the loss, the keys of view 1 (gathered from all
    processes under DDP) are enqueued, replacing the oldest.

    The key encoder and key head are EMA copies (``requires_grad=False``); ``momentum_update()``
    moves them towards the online weights (call it after ``optimizer.step()``). The key encoder
    runs in the same train/eval mode as this module, so its BatchNorm uses batch statistics in
    training (no shuffle-BN across processes). The online encoder is referenced, not owned:
    its parameters do not appear in this module's ``parameters()`` or ``state_dict()``; the
    queue, its pointer and fill count, and the key networks do.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        queue_size: int,
        momentum: float,
        temperature: float,
        dim: int,
    ):
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"MoCo queue_size must be >= 1, got {queue_size}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"MoCo momentum must be in [0, 1], got {momentum}")
        self._online = (encoder,)  # a tuple: not registered as a submodule
        self.head = head
        self.key_encoder = copy.deepcopy(encoder)
        self.key_head = copy.deepcopy(head)
        for p in list(self.key_encoder.parameters()) + list(self.key_head.parameters()):
            p.requires_grad_(False)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.register_buffer("queue", torch.zeros(queue_size, dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))

    @property
    def encoder(self) -> nn.Module:
        return self._online[0]

    def _online_and_key_params(self) -> tuple[list[Tensor], list[Tensor]]:
        online = list(self.encoder.parameters()) + list(self.head.parameters())
        keys = list(self.key_encoder.parameters()) + list(self.key_head.parameters())
        return online, keys

    @torch.no_grad()
    def reset_key_encoder(self) -> None:
        """Copy the online weights into the key networks (e.g. after loading new weights)."""
        self.key_encoder.load_state_dict(self.encoder.state_dict())
        self.key_head.load_state_dict(self.head.state_dict())

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``key = m * key + (1 - m) * online`` for every parameter."""
        online, keys = self._online_and_key_params()
        torch._foreach_lerp_(keys, [p.detach() for p in online], 1.0 - self.momentum)

    @torch.no_grad()
    def keys(self, feats: Tensor) -> Tensor:
        """``feats (B, T, F)`` -> L2-normalised keys ``(B, dim)`` in float32."""
        self.key_encoder.train(self.training)
        self.key_head.train(self.training)
        return F.normalize(self.key_head(self.key_encoder(feats)).float(), dim=1)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys (n, dim)`` (gathered from all processes) over the oldest queue entries."""
        keys = _gather_all(keys.detach().float())
        size = self.queue.shape[0]
        if keys.shape[0] >= size:
            keys = keys[-size:]
        n = keys.shape[0]
        ptr = int(self.queue_ptr)
        idx = (torch.arange(n, device=self.queue.device) + ptr) % size
        self.queue.index_copy_(0, idx, keys.to(self.queue.dtype))
        self.queue_ptr.fill_((ptr + n) % size)
        self.queue_filled.fill_(min(size, int(self.queue_filled) + n))

    def loss(self, emb: Tensor, feats: Tensor) -> Tensor:
        """``emb (V, B, D)`` online embeddings, ``feats (V, B, T, F)`` their features -> scalar."""
        views, batch = emb.shape[:2]
        if views < 2 or feats.shape[:2] != (views, batch):
            raise ValueError(
                f"MoCo needs >= 2 views and feats matching emb: emb {tuple(emb.shape)}, "
                f"feats {tuple(feats.shape)}"
            )
        q = self.head(emb.reshape(views * batch, -1))
        keys = self.keys(feats.reshape(views * batch, *feats.shape[2:])).reshape(views, batch, -1)
        keys_for_q = torch.roll(keys, shifts=-1, dims=0)  # view v's query -> view v+1's key
        negatives = self.queue[: int(self.queue_filled)].clone()  # enqueue() writes in place
        with _no_autocast(emb.device):
            q = F.normalize(q.float(), dim=1)
            k = keys_for_q.reshape(views * batch, -1)
            pos = (q * k).sum(dim=1, keepdim=True)
            neg = q @ negatives.t()
            logits = torch.cat([pos, neg], dim=1) / self.temperature
            loss = -torch.log_softmax(logits, dim=1)[:, 0].mean()
        if self.training:
            self.enqueue(keys[1 % views])
        return loss


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
        with _no_autocast(emb.device):
            return F.normalize(emb.float(), dim=1) @ F.normalize(self.weight.float(), dim=1).t()

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        keep = labels >= 0
        if not bool(keep.any()):
            return emb.float().sum() * 0.0 + self.weight.float().sum() * 0.0
        emb, labels = emb[keep], labels[keep]
        with _no_autocast(emb.device):
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


class Objective(nn.Module):
    """``aam_weight * AAM + contrastive_weight * contrastive`` on the embeddings of V views.

    ``contrastive``: ``"simclr"`` (NT-Xent on ``head(emb)``), ``"moco"`` or ``"none"``. The AAM
    part uses every view's embedding with the utterance's label and ignores unlabelled
    (``-1``) rows; a batch without labels contributes 0. Call ``on_step(step)`` after each
    ``optimizer.step()`` with the number of steps done: it sets the AAM margin from the
    schedule and moves MoCo's key encoder. Everything needed to resume exactly (head and AAM
    weights, MoCo's key networks and queue, the margin) is in ``state_dict()``.
    """

    def __init__(
        self,
        contrastive: str = "simclr",
        contrastive_weight: float = 1.0,
        temperature: float = 0.1,
        head: nn.Module | None = None,
        moco: MoCo | None = None,
        aam: AAMSoftmax | None = None,
        aam_weight: float = 0.0,
        margin_schedule: MarginSchedule | None = None,
        mask_same_speaker: bool = True,
    ):
        super().__init__()
        if contrastive not in ("simclr", "moco", "none"):
            raise ValueError(
                f"unknown contrastive objective {contrastive!r}; choose simclr, moco or none"
            )
        if contrastive_weight > 0 and contrastive == "simclr" and head is None:
            raise ValueError("simclr needs a projection head")
        if contrastive_weight > 0 and contrastive == "moco" and moco is None:
            raise ValueError("moco needs a MoCo module")
        if aam_weight > 0 and aam is None:
            raise ValueError("aam_weight > 0 needs an AAMSoftmax module")
        self.contrastive = contrastive if contrastive_weight > 0 else "none"
        self.contrastive_weight = float(contrastive_weight)
        self.temperature = float(temperature)
        self.head = head if self.contrastive == "simclr" else None
        self.moco = moco if self.contrastive == "moco" else None
        self.aam = aam if aam_weight > 0 else None
        self.aam_weight = float(aam_weight)
        self.margin_schedule = margin_schedule
        self.mask_same_speaker = mask_same_speaker
        if self.aam is not None and margin_schedule is not None:
            self.aam.margin = margin_schedule(0)

    @property
    def needs_labels(self) -> bool:
        return self.aam is not None

    @property
    def needs_feats(self) -> bool:
        """Whether ``forward`` needs the views' features (MoCo's key encoder runs on them)."""
        return self.moco is not None

    def forward(
        self, emb: Tensor, labels: Tensor, feats: Tensor | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """``emb (V, B, D)``, ``labels (B,)`` (-1 = unlabelled), ``feats (V, B, T, F)`` for MoCo.

        Returns the scalar loss (float32) and its parts as floats: ``loss``, and
        ``contrastive`` / ``aam`` / ``margin`` where active.
        """
        if emb.dim() != 3:
            raise ValueError(f"Objective expects embeddings (V, B, D), got {tuple(emb.shape)}")
        views, batch, dim = emb.shape
        total = emb.new_zeros((), dtype=torch.float32)
        parts: dict[str, float] = {}
        if self.contrastive == "simclr":
            z = self.head(emb.reshape(views * batch, dim)).reshape(views, batch, -1)
            c = nt_xent(z, self.temperature, labels if self.mask_same_speaker else None)
            total = total + self.contrastive_weight * c
            parts["contrastive"] = float(c.detach())
        elif self.contrastive == "moco":
            if feats is None:
                raise ValueError("the MoCo objective needs the views' features (feats)")
            c = self.moco.loss(emb, feats)
            total = total + self.contrastive_weight * c
            parts["contrastive"] = float(c.detach())
        if self.aam is not None:
            a = self.aam(emb.reshape(views * batch, dim), labels.repeat(views))
            total = total + self.aam_weight * a
            parts["aam"] = float(a.detach())
            parts["margin"] = self.aam.margin
        parts["loss"] = float(total.detach())
        return total, parts

    @torch.no_grad()
    def set_step(self, step: int) -> None:
        """Schedules only (the AAM margin) for ``step``; used on resume."""
        if self.aam is not None and self.margin_schedule is not None:
            self.aam.margin = self.margin_schedule(step)

    def on_step(self, step: int) -> None:
        """After ``optimizer.step()``; ``step`` = optimiser steps done so far."""
        self.set_step(step)
        if self.moco is not None:
            self.moco.momentum_update()


def build_objective(
    cfg: ObjectiveConfig, encoder: nn.Module, embed_dim: int, n_classes: int
) -> Objective:
    """The objective of ``cfg`` for ``encoder`` (``(B, T, F) -> (B, embed_dim)``).

    ``n_classes``: number of labelled speakers (0 when the data has none: then the AAM part is
    dropped and the contrastive part alone is trained; if that is "none" too, ``ValueError``).
    """
    use_contrastive = cfg.contrastive != "none" and cfg.contrastive_weight > 0
    use_aam = cfg.aam_weight > 0 and n_classes > 0
    if not use_contrastive and not use_aam:
        raise ValueError(
            "the objective has nothing to train: contrastive is off and there are no speaker "
            "labels for AAM (set objective.contrastive or use labelled data)"
        )
    head = moco = aam = schedule = None
    if use_contrastive:
        head = ProjectionHead(embed_dim, cfg.head_hidden, cfg.head_dim)
        if cfg.contrastive == "moco":
            moco = MoCo(
                encoder, head, cfg.moco_queue, cfg.moco_momentum, cfg.temperature, cfg.head_dim
            )
    if use_aam:
        aam = AAMSoftmax(embed_dim, n_classes, cfg.aam_scale, cfg.aam_margin)
        schedule = MarginSchedule(cfg.aam_margin, cfg.margin_warmup_start, cfg.margin_warmup_steps)
    return Objective(
        contrastive=cfg.contrastive if use_contrastive else "none",
        contrastive_weight=cfg.contrastive_weight if use_contrastive else 0.0,
        temperature=cfg.temperature,
        head=head,
        moco=moco,
        aam=aam,
        aam_weight=cfg.aam_weight if use_aam else 0.0,
        margin_schedule=schedule,
        mask_same_speaker=cfg.mask_same_speaker,
    )
