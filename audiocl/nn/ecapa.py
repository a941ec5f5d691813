"""ECAPA-TDNN (Desplanques et al., 2020): features ``(B, T, F)`` -> embedding ``(B, D)``.

The layout follows WeSpeaker's ``ECAPA_TDNN_GLOB_c512`` / ``_c1024`` so that the parameter
counts match its published figures (6.19M at C=512, 14.65M at C=1024, 80 mels, 192-dim):

- layer 1: Conv1d(F -> C, k=5) -> ReLU -> BN
- 3 x SE-Res2Net blocks (dilation 2, 3, 4): 1x1 conv block, Res2Net (k=3, scale
  ``model.res2net_scale``: 8) conv blocks, 1x1 conv block, squeeze-excitation (bottleneck 128),
  residual connection
- multi-layer feature aggregation: concat of the 3 block outputs -> Conv1d(3C -> 1536, k=1) -> ReLU
- attentive statistics pooling with global context (attention bottleneck 128) -> (B, 3072)
- BN -> Linear(3072 -> D)

Every conv block is conv (with bias) -> ReLU -> BN, as in WeSpeaker and SpeechBrain.
Differences from SpeechBrain 1.1.2's ``ECAPA_TDNN`` (same design; 6,194,048 params at C=512,
ours 6,190,720): SpeechBrain's MFA conv and first attention conv are full conv blocks (ReLU +
BN after them: +3,328 params); its convs pad by reflection (ours with zeros, like WeSpeaker);
its global-context std is the biased one (ours unbiased + 1e-7, like WeSpeaker); its final
layer is a 1x1 Conv1d (the same parameters as our Linear) and it returns ``(B, 1, D)``.
Both pass the first Res2Net split through unchanged.

Speed (the forward runs every training step): the global context of the attention is
computed without materialising the ``(B, 3 * 1536, T)`` concatenation: the attention's first
1x1 conv is split into its x, mean and std parts, and the mean/std parts are applied to the
``(B, 1536)`` statistics once and broadcast over time (the same function and parameters,
two thirds fewer FLOPs in that conv and far less memory traffic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig


class _Moments(torch.autograd.Function):
    """``x (B, C, T)`` -> ``(mean, mean of squares)`` over T, each ``(B, C)``.

    One fused pass each way: the backward writes a single ``(B, C, T)`` tensor, where autograd
    on ``x.mean()`` / ``x.var()`` makes several.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(x)
        inv_t = 1.0 / x.shape[2]
        return x.sum(dim=2) * inv_t, torch.einsum("bct,bct->bc", x, x) * inv_t

    @staticmethod
    def backward(ctx, g_mean: Tensor | None, g_sq: Tensor | None) -> Tensor:
        (x,) = ctx.saved_tensors
        inv_t = 1.0 / x.shape[2]
        g_mean = x.new_zeros(x.shape[:2]) if g_mean is None else g_mean
        g_sq = x.new_zeros(x.shape[:2]) if g_sq is None else g_sq
        return torch.addcmul((g_mean * inv_t).unsqueeze(2), x, (g_sq * (2.0 * inv_t)).unsqueeze(2))


class _WeightedMoments(torch.autograd.Function):
    """``alpha, x (B, C, T)`` -> ``(sum_t alpha x, sum_t alpha x^2)``, each ``(B, C)``."""

    @staticmethod
    def forward(ctx, alpha: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(alpha, x)
        ax = alpha * x
        return ax.sum(dim=2), torch.einsum("bct,bct->bc", ax, x)

    @staticmethod
    def backward(ctx, g_mu: Tensor | None, g_sq: Tensor | None) -> tuple[Tensor, Tensor]:
        alpha, x = ctx.saved_tensors
        g_mu = x.new_zeros(x.shape[:2]) if g_mu is None else g_mu
        g_sq = x.new_zeros(x.shape[:2]) if g_sq is None else g_sq
        g_mu, g_sq = g_mu.unsqueeze(2), g_sq.unsqueeze(2)
        u = torch.addcmul(g_mu, x, g_sq)  # d/dalpha = x * (g_mu + g_sq x)
        grad_alpha = u * x
        grad_x = u.addcmul_(x, g_sq).mul_(alpha)  # d/dx = alpha * (g_mu + 2 g_sq x)
        return grad_alpha, grad_x


class _ScaleAdd(torch.autograd.Function):
    """``res + y * s[:, :, None]`` for ``res, y (B, C, T)``, ``s (B, C)``, fused both ways."""

    @staticmethod
    def forward(ctx, res: Tensor, y: Tensor, s: Tensor) -> Tensor:
        ctx.save_for_backward(y, s)
        return torch.addcmul(res, y, s.unsqueeze(2))

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        y, s = ctx.saved_tensors
        return g, g * s.unsqueeze(2), torch.einsum("bct,bct->bc", g, y)


class ConvBlock(nn.Module):
    """Conv1d (with bias) -> ReLU -> BatchNorm1d, ``(B, Cin, T) -> (B, Cout, T)``;
    ``padding_mode``: "zeros" (WeSpeaker's) or "reflect" (SpeechBrain's)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int = 1,
        dilation: int = 1,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(
            cin, cout, kernel_size, dilation=dilation, padding=pad, padding_mode=padding_mode
        )
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(F.relu(self.conv(x), inplace=True))


class Res2Block(nn.Module):
    """Res2Net multi-scale conv: ``scale`` channel groups; group 0 passes through, group i > 0
    is ``block_i(x_i + y_{i-1})`` (``y_0`` = nothing for i = 1). ``(B, C, T) -> (B, C, T)``."""

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        dilation: int,
        scale: int = 8,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels ({channels}) must be divisible by scale ({scale})")
        self.width = channels // scale
        self.blocks = nn.ModuleList(
            ConvBlock(self.width, self.width, kernel_size, dilation, padding_mode)
            for _ in range(scale - 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        chunks = torch.split(x, self.width, dim=1)
        out = [chunks[0]]
        y = None
        for block, xi in zip(self.blocks, chunks[1:], strict=True):
            y = block(xi if y is None else xi + y)
            out.append(y)
        return torch.cat(out, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the time-averaged input, ``(B, C, T) -> (B, C, T)``."""

    def __init__(self, channels: int, bottleneck: int = 128):
        super().__init__()
        self.linear1 = nn.Linear(channels, bottleneck)
        self.linear2 = nn.Linear(bottleneck, channels)

    def gates(self, x: Tensor) -> Tensor:
        """``(B, C, T)`` -> gates ``(B, C)`` in (0, 1)."""
        mean = x.sum(dim=2) * (1.0 / x.shape[2])
        return torch.sigmoid(self.linear2(F.relu(self.linear1(mean), inplace=True)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gates(x).unsqueeze(2)


class SERes2Block(nn.Module):
    """1x1 conv block -> Res2Net -> 1x1 conv block -> SE, plus the residual input (through a
    1x1 conv ``shortcut`` when ``in_channels`` differs), ``(B, Cin, T) -> (B, C, T)``."""

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        dilation: int,
        scale: int = 8,
        *,
        in_channels: int | None = None,
        se_channels: int = 128,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        cin = in_channels or channels
        self.conv1 = ConvBlock(cin, channels)
        self.res2 = Res2Block(channels, kernel_size, dilation, scale, padding_mode)
        self.conv2 = ConvBlock(channels, channels)
        self.se = SqueezeExcitation(channels, se_channels)
        self.shortcut = nn.Conv1d(cin, channels, kernel_size=1) if cin != channels else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.res2(self.conv1(x)))
        res = x if self.shortcut is None else self.shortcut(x)
        return _ScaleAdd.apply(res, y, self.se.gates(y))


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
        t = x.shape[2]
        mean, mean_sq = _Moments.apply(x)
        var = (mean_sq - mean.square()) * (t / max(t - 1, 1))  # unbiased, like torch.var
        std = torch.sqrt(var.clamp(min=0.0) + self.eps)
        w = self.linear1.weight  # (bottleneck, 3C, 1): the [x | mean | std] parts
        context = torch.addmm(self.linear1.bias, torch.cat([mean, std], dim=1), w[:, c:, 0].t())
        h = torch.tanh(F.conv1d(x, w[:, :c]) + context.unsqueeze(2))
        alpha = torch.softmax(self.linear2(h), dim=2)
        mu, mean_sq = _WeightedMoments.apply(alpha, x)
        var = mean_sq - mu.square()
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

    @classmethod
    def from_config(cls, cfg: ModelConfig, n_mels: int) -> EcapaTdnn:
        return cls(
            n_mels=n_mels, channels=cfg.channels, embed_dim=cfg.embed_dim, scale=cfg.res2net_scale
        )

    def forward(self, feats: Tensor) -> Tensor:
        """``(B, T, F)`` -> ``(B, embed_dim)``."""
        x = self.layer1(feats.transpose(1, 2))
        x2 = self.layer2(x)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        x = F.relu(self.mfa(torch.cat([x2, x3, x4], dim=1)), inplace=True)
        return self.linear(self.bn(self.pool(x)))
