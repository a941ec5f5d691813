"""SpeechBrain's ECAPA-TDNN layout (``speechbrain.lobes.models.ECAPA_TDNN`` in 1.1.2), for models
imported from SpeechBrain: features ``(B, T, F)`` -> embedding ``(B, D)``.

Built from audiocl's ECAPA parts (``ecapa.ConvBlock``, ``ecapa.SERes2Block``), with what
SpeechBrain does differently (see ``ecapa``'s docstring): any number of SE-Res2Net blocks with
their own widths, kernels and dilations; convolutions pad by reflection; the aggregation conv
and the attention's first conv are full conv blocks (conv -> ReLU -> BN); standard deviations
are the biased ones, floored at 1e-12 under the square root. Inference batches are full length,
so every frame counts (SpeechBrain's relative lengths are all 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from .ecapa import ConvBlock, SERes2Block

REFLECT = "reflect"


def _stats(x: Tensor, weights: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """Weighted mean and std over time: ``x (B, C, T)``, ``weights`` summing to 1 over T."""
    mean = (weights * x).sum(dim=2)
    var = (weights * (x - mean.unsqueeze(2)).square()).sum(dim=2)
    return mean, var.clamp_min(eps).sqrt()


class AttentivePool(nn.Module):
    """SpeechBrain's attentive statistics pooling, ``(B, C, T) -> (B, 2C)``: attention
    ``conv(tanh(tdnn([x; mean; std])))`` (global context) or ``conv(tanh(tdnn(x)))``, softmax
    over time, weighted mean and std."""

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True):
        super().__init__()
        self.global_context = global_context
        self.tdnn = ConvBlock(channels * (3 if global_context else 1), attention_channels)
        self.conv = nn.Conv1d(attention_channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if self.global_context:
            t = x.shape[2]
            mean, std = _stats(x, x.new_full((1, 1, t), 1.0 / t))
            h = torch.cat([x, mean.unsqueeze(2).expand_as(x), std.unsqueeze(2).expand_as(x)], 1)
        alpha = torch.softmax(self.conv(torch.tanh(self.tdnn(h))), dim=2)
        return torch.cat(_stats(x, alpha), dim=1)


class SpeechBrainEcapa(nn.Module):
    """``layer_channels[0]``: the first conv block; ``[1:-1]``: SE-Res2Net blocks; ``[-1]``: the
    aggregation conv over the concatenated block outputs. ``(B, T, F) -> (B, embed_dim)``."""

    def __init__(
        self,
        n_mels: int,
        layer_channels: list[int],
        kernel_sizes: list[int],
        dilations: list[int],
        embed_dim: int = 192,
        attention_channels: int = 128,
        res2net_scale: int = 8,
        se_channels: int = 128,
        global_context: bool = True,
    ):
        super().__init__()
        c, k, d = layer_channels, kernel_sizes, dilations
        self.n_mels, self.embed_dim = n_mels, embed_dim
        blocks: list[nn.Module] = [ConvBlock(n_mels, c[0], k[0], d[0], REFLECT)]
        for i in range(1, len(c) - 1):
            blocks.append(
                SERes2Block(
                    c[i],
                    k[i],
                    d[i],
                    res2net_scale,
                    in_channels=c[i - 1],
                    se_channels=se_channels,
                    padding_mode=REFLECT,
                )
            )
        self.blocks = nn.ModuleList(blocks)
        # reflection pads by less than the input length: SpeechBrain fails on shorter input,
        # here its last frame is repeated up to this many frames
        self.min_frames = 1 + max(dd * (kk - 1) // 2 for kk, dd in zip(k, d, strict=True))
        self.mfa = ConvBlock(sum(c[1:-1]), c[-1], k[-1], d[-1], REFLECT)
        self.asp = AttentivePool(c[-1], attention_channels, global_context)
        self.asp_bn = nn.BatchNorm1d(2 * c[-1])
        self.fc = nn.Linear(2 * c[-1], embed_dim)

    @classmethod
    def from_config(cls, cfg: ModelConfig, n_mels: int) -> SpeechBrainEcapa:
        return cls(
            n_mels,
            cfg.layer_channels,
            cfg.kernel_sizes,
            cfg.dilations,
            embed_dim=cfg.embed_dim,
            attention_channels=cfg.attention_channels,
            res2net_scale=cfg.res2net_scale,
            se_channels=cfg.se_channels,
            global_context=cfg.global_context,
        )

    def forward(self, feats: Tensor) -> Tensor:
        """``(B, T, F)`` -> ``(B, embed_dim)``."""
        x = feats.transpose(1, 2)
        t = x.shape[2]  # (sym_max, not an if: one ONNX graph for every length)
        x = F.pad(x, (0, torch.sym_max(t, self.min_frames) - t), mode="replicate")
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        x = self.mfa(torch.cat(outs[1:], dim=1))
        return self.fc(self.asp_bn(self.asp(x)))
