"""The EMA teacher shared by MoCo (key encoder), BYOL (target network) and DINO (teacher).

``EmaTeacher`` owns frozen deep copies of the online modules (``requires_grad=False``) and moves
them towards the online weights after every optimiser step with a momentum that follows BYOL's
cosine schedule from ``base`` to ``final`` over ``total_steps``: ``m(k) = final - (final - base)
* (cos(pi k / K) + 1) / 2``; ``base == final`` gives MoCo's constant momentum. Its copies and
buffers are in ``state_dict()``; the momentum is a function of the step, so resume is exact.
The online modules are referenced, not owned: they are not in this module's ``state_dict()``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn


class EmaTeacher(nn.Module):
    def __init__(
        self,
        online: list[nn.Module],
        base: float,
        final: float = 1.0,
        total_steps: int = 1,
    ):
        super().__init__()
        if not (0.0 <= base <= 1.0 and 0.0 <= final <= 1.0):
            raise ValueError(f"EMA momentum must be in [0, 1], got base={base}, final={final}")
        self._online = tuple(online)  # a tuple: not registered, not saved twice
        self.copies = nn.ModuleList(copy.deepcopy(m) for m in online)
        for p in self.copies.parameters():
            p.requires_grad_(False)
        self.base, self.final, self.total_steps = float(base), float(final), max(1, total_steps)

    def momentum(self, step: int) -> float:
        """Momentum used for the update after optimiser step ``step`` (1-based count)."""
        t = min(1.0, step / self.total_steps)
        return self.final - (self.final - self.base) * (math.cos(math.pi * t) + 1.0) / 2.0

    def forward(self, x: Tensor) -> Tensor:
        """Run the copies in order (the online chain, e.g. encoder then head) on ``x`` without
        gradients; being a submodule, the teacher follows the objective's train/eval mode."""
        with torch.no_grad():
            for twin in self.copies:
                x = twin(x)
            return x

    @torch.no_grad()
    def update(self, step: int) -> None:
        """``teacher = m * teacher + (1 - m) * online`` for every parameter; buffers (BatchNorm
        statistics) keep their own running averages, since the teacher runs in train mode."""
        m = self.momentum(step)
        online = [p.detach() for mod in self._online for p in mod.parameters()]
        teacher = list(self.copies.parameters())
        torch._foreach_lerp_(teacher, online, 1.0 - m)
