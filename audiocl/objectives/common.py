"""Helpers the objectives share: float32 islands under autocast and DDP collectives.

Every collective is guarded by ``dist.is_initialized()``, so one process needs no special path.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def no_autocast(device: torch.device):
    """Losses are computed in float32 even inside a bf16 autocast region."""
    return torch.autocast(device_type=device.type, enabled=False)


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if distributed() else 1


@torch.no_grad()
def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` over processes (in place, and returned); identity without DDP."""
    if distributed():
        dist.all_reduce(x)
    return x


@torch.no_grad()
def all_reduce_max(x: Tensor) -> Tensor:
    if distributed():
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


@torch.no_grad()
def gather_all(x: Tensor) -> Tensor:
    """Concatenate ``x (b, ...)`` from every process (sizes may differ); identity without DDP."""
    if not distributed():
        return x
    world = dist.get_world_size()
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes_int = [int(s.item()) for s in sizes]
    padded = x.new_zeros((max(sizes_int), *x.shape[1:]))
    padded[: x.shape[0]] = x
    chunks = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded)
    return torch.cat([c[:s] for c, s in zip(chunks, sizes_int, strict=True)])


def cross_view_pairs(n_teacher: int, n_views: int) -> list[tuple[int, int]]:
    """``(t, s)`` pairs of multi-crop losses: teacher view ``t`` (a global crop) against every
    student view ``s`` that is another crop (DINO, SwAV and BYOL all skip ``s == t``)."""
    return [(t, s) for t in range(n_teacher) for s in range(n_views) if s != t]


def soft_cross_entropy(logits: Tensor, target: Tensor, temperature: float) -> Tensor:
    """``-sum_k target_k log softmax(logits / temperature)_k``, mean over rows; ``(N, K)`` each,
    ``target`` rows summing to 1 (no gradient through them). DINO's and SwAV's loss."""
    with no_autocast(logits.device):
        logp = F.log_softmax(logits.float() / temperature, dim=-1)
        return -(target.detach().float() * logp).sum(dim=-1).mean()


def entropy(probs: Tensor) -> Tensor:
    """Entropy in nats of each row of ``probs (..., K)``."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=-1)


def frozen(p: Tensor) -> Tensor:
    """``p``'s value with a zero gradient: a parameter held still during the first steps stays
    in the graph, so DDP still sees it used (a detached one would be an unused parameter)."""
    return p.detach() + 0.0 * p
