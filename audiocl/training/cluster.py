"""Spherical k-means: unit-length embeddings ``(N, D)`` -> cluster ids ``(N,)``.

Cosine is the score of the whole toolkit, so clusters are built on it: each centre is the
normalised mean of its members. Distances are taken in chunks of rows, so memory stays
``chunk x k`` whatever ``N`` is (a VoxCeleb2-sized set is a million rows), and the k-means++
seeding runs on a random sample of at most ``seed_sample`` rows.
"""

from __future__ import annotations

import math

import torch

CHUNK = 65536


def _nearest(x: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, D)``, ``(K, D)`` -> best cosine ``(N,)`` and its centre index ``(N,)``."""
    best, arg = [], []
    for part in x.split(CHUNK):
        s, a = (part @ centres.T).max(dim=1)
        best.append(s)
        arg.append(a)
    return torch.cat(best), torch.cat(arg)


def kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding on the cosine distance ``1 - cos`` (proportional to the squared
    distance of unit vectors): ``(N, D)`` -> centres ``(k, D)``. Each step draws ``2 + log k``
    candidates and keeps the one that lowers the total distance most, as scikit-learn does:
    plain k-means++ often puts two seeds in one tight group and merges two others."""
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    dist = (1 - x @ x[chosen[0]]).clamp_min(0)
    for _ in range(1, k):
        total = dist.sum()
        if total <= 0:  # fewer distinct points than k: take any
            cand = torch.randint(n, (1,), generator=generator)
        else:
            cand = torch.multinomial(dist / total, trials, replacement=True, generator=generator)
        new = torch.minimum(dist, (1 - x[cand] @ x.T).clamp_min(0))  # (trials, N)
        best = int(new.sum(dim=1).argmin())
        chosen.append(int(cand[best]))
        dist = new[best]
    return x[chosen].clone()


def spherical_kmeans(
    x: torch.Tensor,
    k: int,
    iters: int = 50,
    seed: int = 0,
    seed_sample: int = 200_000,
    tol: float = 1e-3,
) -> torch.Tensor:
    """Cluster rows of ``x`` ``(N, D)`` (normalised here) into ``k`` groups -> ids ``(N,)``.

    Lloyd iterations until fewer than ``tol * N`` rows change cluster or ``iters`` is reached.
    A cluster that empties is re-seeded with the row farthest from its own centre, so all ``k``
    ids stay in use while ``N >= k``.
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means: {k} clusters asked of {n} points")
    x = torch.nn.functional.normalize(x.float(), dim=1)
    g = torch.Generator().manual_seed(seed)
    sample = x if n <= seed_sample else x[torch.randperm(n, generator=g)[:seed_sample]]
    centres = kmeans_pp(sample, k, g)
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        sim, new = _nearest(x, centres)
        counts = torch.bincount(new, minlength=k)
        for empty in torch.nonzero(counts == 0).flatten().tolist():
            far = int(sim.argmin())
            counts[new[far]] -= 1
            new[far], sim[far], counts[empty] = empty, 1.0, 1
        changed = int((new != labels).sum())
        labels = new
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        centres = torch.nn.functional.normalize(sums, dim=1)
        if changed <= tol * n:
            break
    return labels
