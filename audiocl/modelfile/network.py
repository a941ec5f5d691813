"""The inference network of a model file: ``(config, fbank, encoder)`` built from what the file
says (its own front end, its encoder, a domain's centring), in eval mode. The embedder and the
ONNX exporter both build their networks here, so both run the same one."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import Config, from_dict
from ..errors import ModelError
from ..nn.encoders import build_encoder
from ..nn.ensemble import MIXED, Ensemble, Member, MixedEnsemble, ensemble_weights
from ..nn.features import build_frontend


class Centered(nn.Module):
    """An encoder followed by centring: ``(B, T, F)`` -> ``(B, D)``, ``normalize(e) - mean``
    (the caller L2-normalises after any averaging over pieces)."""

    def __init__(self, encoder: nn.Module, mean: Tensor):
        super().__init__()
        self.encoder = encoder
        if self.embed_dim is not None and mean.numel() != self.embed_dim:
            raise ModelError(
                f"the domain mean has {mean.numel()} values, the embeddings {self.embed_dim}"
            )
        self.register_buffer("mean", mean.float().reshape(1, -1), persistent=False)

    @property
    def embed_dim(self) -> int | None:
        return getattr(self.encoder, "embed_dim", None)

    def forward(self, feats: Tensor) -> Tensor:
        e = self.encoder(feats)
        return nn.functional.normalize(e.float(), dim=1) - self.mean


def member_file(data: dict, i: int) -> dict:
    """Member ``i`` of an ensemble's model file as a model file of its own (config, weights)."""
    prefix = f"members.{i}."
    state = {k[len(prefix) :]: v for k, v in data["encoder"].items() if k.startswith(prefix)}
    member = data["ensemble_of"][i]
    out = {"config": member["config"], "encoder": state}
    if member.get("ensemble_weights"):  # itself an ensemble of one architecture
        out["ensemble_weights"] = member["ensemble_weights"]
    return out


def build_inference_model(data: dict) -> tuple[Config, torch.nn.Module, torch.nn.Module]:
    """``(config, fbank, encoder)`` from a loaded model/checkpoint dict, in eval mode. A model
    adapted to a domain (``audiocl adapt``) gets its centring after the encoder; an ensemble of
    different architectures gets an identity front end and a ``MixedEnsemble`` of its members,
    each built from its own config."""
    cfg = from_dict(Config, data["config"])
    weights = data.get("ensemble_weights")
    if cfg.model.encoder == MIXED:
        members = [
            build_inference_model(member_file(data, i))[1:] for i in range(cfg.model.members)
        ]
        fbank = nn.Identity()  # each member runs its own front end on the waveform
        encoder = MixedEnsemble([Member(fb, enc) for fb, enc in members], weights)
    else:
        fbank = build_frontend(cfg.features, cfg.data.sample_rate)
        encoder = build_encoder(cfg.model, cfg.features.n_mels)
        encoder.load_state_dict(data["encoder"])
        if isinstance(encoder, Ensemble):
            encoder.weights = ensemble_weights(weights, cfg.model.members)
    if data.get("domain"):
        encoder = Centered(encoder, data["domain"]["mean"])
    return cfg, fbank.eval(), encoder.eval()
