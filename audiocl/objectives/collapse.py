"""Collapse watch for self-supervised runs.

A collapsed encoder maps every input to (nearly) the same point; its loss can still look fine
(BYOL's and DINO's losses have trivial minima). ``spread`` measures it directly: the mean over
dimensions of the across-batch standard deviation of the L2-normalised embeddings, times
``sqrt(D)``, so that embeddings spread uniformly over the sphere give about 1 and identical
embeddings give 0 (as in SimSiam's collapse analysis). DINO's and SwAV's logs add the teacher's
(or codes') entropies as fractions of ``log K``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# Below this spread the embeddings of different utterances have a mean cosine above ~0.99.
MIN_SPREAD = 0.1
# A teacher whose every output is (nearly) uniform over the prototypes has collapsed too.
MAX_TEACHER_ENTROPY = 0.99


@torch.no_grad()
def spread(emb: Tensor) -> float:
    """``emb (N, D)``, N >= 2 -> per-dimension std of the normalised rows, mean, * sqrt(D)."""
    z = F.normalize(emb.detach().float(), dim=1)
    return float(z.std(dim=0).mean()) * math.sqrt(z.shape[1])


def collapse_reason(logs: dict[str, float]) -> str | None:
    """Why the logged statistics of a step say the run has collapsed, or None."""
    if logs.get("emb_spread", 1.0) < MIN_SPREAD:
        return f"embedding spread {logs['emb_spread']:.3f} < {MIN_SPREAD} (all inputs map to one point)"
    for key in ("teacher_entropy", "code_entropy"):
        if logs.get(key, 0.0) > MAX_TEACHER_ENTROPY:
            return f"{key} {logs[key]:.3f} of log K > {MAX_TEACHER_ENTROPY} (uniform outputs)"
    return None
