"""Resemblyzer's GE2E voice encoder (its wheel's ``pretrained.pt``) -> an audiocl model file.

``pretrained.pt`` holds ``{"step", "model_state", "optimizer_state"}``; ``model_state`` is a
3-layer LSTM(40 -> 256), a linear layer 256 -> 256, and GE2E's similarity scale and bias,
which only its training loss used. The model file runs it with Resemblyzer's front end
(``nn.features.ResemblyzerMel``) and encoder (``nn.ge2e.Ge2eLstm``). Resemblyzer is
Apache-2.0; its weights ship in the wheel (``pip download resemblyzer==0.1.4 --no-deps``).
"""

from __future__ import annotations

from pathlib import Path

from ..config import Config, check, to_dict
from ..errors import ModelError
from ..modelfile import checkpoint
from ..nn.encoders import build_encoder
from .common import load_state, load_strict

LICENSE = "Apache-2.0 (Resemblyzer 0.1.4, Resemble AI; weights from its wheel's pretrained.pt)"
UNUSED = ("similarity_weight", "similarity_bias")  # GE2E's loss, not the encoder


def audiocl_config(state: dict, source: Path) -> Config:
    """The config of the encoder ``state`` describes: sizes read from its tensors."""
    c = Config()
    try:
        n_mels = state["lstm.weight_ih_l0"].shape[1]
        hidden = state["lstm.weight_hh_l0"].shape[1]
        embed_dim = state["linear.weight"].shape[0]
    except KeyError as e:
        raise ModelError(f"{source}: not a Resemblyzer voice encoder (no {e.args[0]})") from None
    layers = sum(1 for k in state if k.startswith("lstm.weight_ih_l"))
    c.features.frontend, c.features.n_mels = "resemblyzer", int(n_mels)
    c.features.win_ms, c.features.hop_ms = 25.0, 10.0
    c.features.mean_norm, c.features.dither, c.features.preemphasis = False, 0.0, 0.0
    c.features.specaug_p = 0.0
    c.model.encoder, c.model.channels = "ge2e", int(hidden)
    c.model.lstm_layers, c.model.embed_dim = layers, int(embed_dim)
    check(c)
    return c


def import_resemblyzer(path: str | Path) -> dict:
    """The audiocl model-file payload of Resemblyzer's ``pretrained.pt`` (or a folder with it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "pretrained.pt"
    if not path.is_file():
        raise ModelError(f"{path}: missing (Resemblyzer's pretrained.pt, from its wheel)")
    state = {k: v for k, v in load_state(path).items() if k not in UNUSED}
    cfg = audiocl_config(state, path)
    encoder = build_encoder(cfg.model, cfg.features.n_mels)
    load_strict(encoder, state, path)
    payload = checkpoint.make_model_file(encoder.state_dict(), to_dict(cfg), step=0)
    payload.update(
        source="resemblyzer",
        name="resemblyzer/ge2e-voice-encoder-0.1.4",
        license=LICENSE,
        attribution="Resemblyzer by Resemble AI (GE2E: Wan et al., 2018)",
    )
    return payload
