"""ECAPA-TDNN (Desplanques et al., 2020): features ``(B, T, F)`` -> embedding ``(B, D)``.

The layout follows WeSpeaker's ``ECAPA_TDNN_GLOB_c512`` / ``_c1024`` so that the parameter
counts match its published figures (6.19M at C=512, 14.65M at C=1024, 80 mels, 192-dim):

- layer 1: Conv1d(F -> C, k=5) -> ReLU -> BN
- 3 x SE-Res2Net blocks (dilation 2, 3, 4): 1x1 conv block, Res2Net (scale 8, k=3) conv
  blocks, 1x1 conv block, squeeze-excitation (bottleneck 128), residual connection
- multi-layer feature aggregation: concat of the 3 block outputs -> Conv1d(3C -> 1536, k=1) -> ReLU
- attentive statistics pooling with global context (attention bottleneck 128) -> (B, 3072)
- BN -> Linear(3072 -> D)

Every conv block is conv (with bias) -> ReLU -> BN, as in WeSpeaker and SpeechBrain.
Differences from SpeechBrain 1.1.2's ``ECAPA_TDNN`` (same design, C=512: 6.194M params):
SpeechBrain's MFA and attention convs are full conv blocks (ReLU + BN after them, +3,328
params), its convs pad by reflection (ours pad with zeros), its Res2Net passes the first
split through (ours too) and its final layer is a 1x1 Conv1d instead of a Linear.

Speed (the forward runs every training step): the global context of the attention is
computed without materialising the ``(B, 3 * 1536, T)`` concatenation: the attention's first
1x1 conv is split into its x, mean and std parts, and the mean/std parts are applied to the
``(B, 1536)`` statistics once and broadcast over time (the same function and parameters,
about a third of the attention's FLOPs and far less memory traffic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvBlock(nn.Module):
    """Conv1d (with bias) -> ReLU -> BatchNorm1d, ``(B, Cin, T) -> (B, Cout, T)``."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(cin, cout, kernel_size, dilation=dilation, padding=pad)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(F.relu(self.conv(x), inplace=True))


class Res2Block(nn.Module):
    """Res2Net multi-scale conv: ``scale`` channel groups; group 0 passes through, group i > 0
    is ``block_i(x_i + y_{i-1})`` (``y_0`` = nothing for i = 1). ``(B, C, T) -> (B, C, T)``."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int = 8):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels ({channels}) must be divisible by scale ({scale})")
        self.width = channels // scale
        self.blocks = nn.ModuleList(
            ConvBlock(self.width, self.width, kernel_size, dilation) for _ in range(scale - 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        chunks = torch.split(x, self.width, dim=1)
        out = [chunks[0]]
        y = None
        for block, xi in zip(self.blocks, chunks[1:]):
            y = block(xi if y is None else xi + y)
            out.append(y)
        return torch.cat(out, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the time-averaged input, ``(B, C, T) -> (B, C, T)``."""

    def __init__(self, channels: int, bottleneck: int = 128):
        super().__init__()
        self.linear1 = nn.Linear(channels, bottleneck)
        self.linear2 = nn.Linear(bottleneck, channels)

    def forward(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)), inplace=True)))
        return x * s.unsqueeze(2)


class SERes2Block(nn.Module):
    """1x1 conv block -> Res2Net -> 1x1 conv block -> SE, plus the residual input."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int = 8):
        super().__init__()
        self.conv1 = ConvBlock(channels, channels)
        self.res2 = Res2Block(channels, kernel_size, dilation, scale)
        self.conv2 = ConvBlock(channels, channels)
        self.se = SqueezeExcitation(channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.se(self.conv2(self.res2(self.conv1(x))))


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling with global context, ``(B, C, T) -> (B, 2C)``.

    Attention logits per channel and frame: ``W2 tanh(W1 [x_t; mean; std] + b1) + b2``, softmax
    over time; output the attention-weighted mean and standard deviation.
    """

    def __init__(self, channels: int, bottleneck: int = 128, eps: float = 1e-7):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.linear1 = nn.Conv1d(3 * channels, bottleneck, kernel_size=1)
        self.linear2 = nn.Conv1d(bottleneck, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        c = self.channels
        mean = x.mean(dim=2)
        std = torch.sqrt(x.var(dim=2) + self.eps)
        w = self.linear1.weight.squeeze(2)  # (bottleneck, 3C): [x | mean | std] parts
        context = torch.addmm(self.linear1.bias, torch.cat([mean, std], dim=1), w[:, c:].t())
        h = torch.tanh(torch.matmul(w[:, :c], x) + context.unsqueeze(2))
        alpha = torch.softmax(self.linear2(h), dim=2)
        ax = alpha * x
        mu = ax.sum(dim=2)
        var = (ax * x).sum(dim=2) - mu.square()
        return torch.cat([mu, torch.sqrt(var.clamp(min=self.eps))], dim=1)


class EcapaTdnn(nn.Module):
    """ECAPA-TDNN speaker encoder, ``(B, T, F) -> (B, embed_dim)``."""

    def __init__(
        self,
        n_mels: int = 80,
        channels: int = 512,
        embed_dim: int = 192,
        mfa_channels: int = 1536,
        scale: int = 8,
        attention_dim: int = 128,
    ):
        super().__init__()
        self.n_mels = n_mels
        self.embed_dim = embed_dim
        self.layer1 = ConvBlock(n_mels, channels, kernel_size=5)
        self.layer2 = SERes2Block(channels, 3, dilation=2, scale=scale)
        self.layer3 = SERes2Block(channels, 3, dilation=3, scale=scale)
        self.layer4 = SERes2Block(channels, 3, dilation=4, scale=scale)
        self.mfa = nn.Conv1d(3 * channels, mfa_channels, kernel_size=1)
        self.pool = AttentiveStatsPool(mfa_channels, attention_dim)
        self.bn = nn.BatchNorm1d(2 * mfa_channels)
        self.linear = nn.Linear(2 * mfa_channels, embed_dim)

    def forward(self, feats: Tensor) -> Tensor:
        """``(B, T, F)`` -> ``(B, embed_dim)``."""
        x = self.layer1(feats.transpose(1, 2))
        x2 = self.layer2(x)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        x = F.relu(self.mfa(torch.cat([x2, x3, x4], dim=1)), inplace=True)
        return self.linear(self.bn(self.pool(x)))
