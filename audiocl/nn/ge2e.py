"""The GE2E speaker encoder (Wan et al. 2018) in Resemblyzer's form, for imported weights:
``(B, P * 160, n_mels)`` partial utterances laid end to end (``features.ResemblyzerMel``) ->
``(B, D)``, the mean of the partials' embeddings.

Each partial of 160 frames runs through a 3-layer LSTM; the last layer's final hidden state
goes through a linear layer and a ReLU and is L2-normalised, as ``VoiceEncoder.forward`` does.
The caller normalises the mean, which makes ``embed_utterance``'s embedding. Features whose
length is not a multiple of 160 frames are read as one partial of that length.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .features import PARTIAL_FRAMES


class Ge2eLstm(nn.Module):
    """``lstm``: LSTM(n_mels -> hidden, ``layers``); ``linear``: hidden -> ``embed_dim``."""

    def __init__(self, n_mels: int = 40, hidden: int = 256, layers: int = 3, embed_dim: int = 256):
        super().__init__()
        self.lstm = nn.LSTM(n_mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, embed_dim)
        self.embed_dim = embed_dim

    @classmethod
    def from_config(cls, cfg: ModelConfig, n_mels: int) -> Ge2eLstm:
        return cls(n_mels, cfg.channels, cfg.lstm_layers, cfg.embed_dim)

    def forward(self, feats: Tensor) -> Tensor:
        b, t, f = feats.shape
        # features not laid out in partials (another front end) are one partial of any length
        size = PARTIAL_FRAMES if t % PARTIAL_FRAMES == 0 else t
        e = self.embed_partials(feats.reshape(b * (t // size), size, f))
        return e.reshape(b, -1, e.shape[1]).mean(dim=1)

    def embed_partials(self, parts: Tensor) -> Tensor:
        """``(N, frames, n_mels)`` partial utterances -> ``(N, D)`` L2-normalised embeddings."""
        _, (hidden, _) = self.lstm(parts)
        e = torch.relu(self.linear(hidden[-1]))
        return e / torch.linalg.vector_norm(e, dim=1, keepdim=True).clamp_min(1e-12)
