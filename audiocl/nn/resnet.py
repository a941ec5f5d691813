"""Thin ResNet34 speaker encoder (as in WeSpeaker / VoxCeleb ResNet recipes).

Features ``(B, T, F)`` are treated as a 1-channel image ``(B, 1, F, T)``: a 3x3 stem conv,
four stages of BasicBlocks ``[3, 4, 6, 3]`` with ``base, 2 base, 4 base, 8 base`` channels
(stride 2 in frequency and time from stage 2 on), then temporal statistics pooling (mean and
standard deviation over time of the flattened ``channels x frequency`` map) and a Linear layer
to the embedding. With ``base_channels=32`` and 80 mels: 6.63M parameters at ``embed_dim=256``
(WeSpeaker's ResNet34 figure), 6.31M at 192.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a (projected when the shape changes) shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x), inplace=True)


class ResNet34(nn.Module):
    """ResNet34 (thin) speaker encoder, ``(B, T, F) -> (B, embed_dim)``."""

    def __init__(
        self,
        n_mels: int = 80,
        base_channels: int = 32,
        embed_dim: int = 192,
        blocks: tuple[int, ...] = (3, 4, 6, 3),
        eps: float = 1e-7,
    ):
        super().__init__()
        self.n_mels = n_mels
        self.embed_dim = embed_dim
        self.eps = eps
        self.conv1 = nn.Conv2d(1, base_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        stages = []
        cin, freq = base_channels, n_mels
        for i, n in enumerate(blocks):
            cout, stride = base_channels * 2**i, 1 if i == 0 else 2
            layers = [BasicBlock(cin, cout, stride)]
            layers += [BasicBlock(cout, cout) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin, freq = cout, (freq + stride - 1) // stride
        self.stages = nn.Sequential(*stages)
        self.stats_dim = cin * freq
        self.linear = nn.Linear(2 * self.stats_dim, embed_dim)

    @classmethod
    def from_config(cls, cfg: ModelConfig, n_mels: int) -> ResNet34:
        return cls(n_mels=n_mels, base_channels=cfg.base_channels, embed_dim=cfg.embed_dim)

    def forward(self, feats: Tensor) -> Tensor:
        """``(B, T, F)`` -> ``(B, embed_dim)``."""
        x = feats.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)
        x = self.stages(F.relu(self.bn1(self.conv1(x)), inplace=True))
        x = x.flatten(1, 2)  # (B, C * F', T')
        mean = x.mean(dim=2)
        # unbiased variance without a branch on T (one frame: 0), so an exported graph keeps it
        var = (x - mean.unsqueeze(2)).square().sum(dim=2) / max(x.shape[2] - 1, 1)
        std = torch.sqrt(var + self.eps)
        return self.linear(torch.cat([mean, std], dim=1))
