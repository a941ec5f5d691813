"""WeSpeaker's published models (``config.yaml`` + ``avg_model.pt``) as audiocl models.

Architectures: ``ECAPA_TDNN_GLOB_c512`` / ``_c1024`` (attentive statistics pooling with global
context, ``ASTP``) map onto audiocl's ECAPA-TDNN, and ``ResNet34`` (statistics pooling,
``TSTP``, one embedding layer) onto audiocl's ResNet34: the same layers, renamed.

One detail is not a rename. WeSpeaker's Res2Net block convolves channel groups 0..6 and passes
group 7 through; audiocl's passes group 0 through and convolves groups 1..7. The two are the
same computation with the groups rotated by one, so the import rotates the output channels of
the 1x1 convolution before each Res2Net block and the input channels of the one after it.

Front end, as WeSpeaker computes it: Kaldi fbank (``kaldi=True``, hamming window, dither 0) on
16-bit-scale samples, then per-utterance mean subtraction (``mean_norm``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ..config import Config, to_dict
from ..errors import ModelError
from ..modelfile import checkpoint
from ..nn.encoders import build_encoder
from .common import foreign_config, load_state, load_strict, require

ECAPA = {"ECAPA_TDNN_GLOB_c512": 512, "ECAPA_TDNN_GLOB_c1024": 1024}
RESNET = {"ResNet34": (3, 4, 6, 3)}
SCALE = 8  # Res2Net groups of WeSpeaker's ECAPA


def read_config(folder: Path) -> dict:
    path = require(folder, "config.yaml")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ModelError(f"{path}: not a readable YAML config ({e})") from None
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise ModelError(f"{path}: no 'model' entry (not a WeSpeaker config)")
    return cfg


def audiocl_config(cfg: dict, folder: Path) -> Config:
    """The audiocl config of a WeSpeaker model: encoder, sizes and its Kaldi front end."""
    with foreign_config(folder / "config.yaml"):
        return _config(cfg, folder)


def _config(cfg: dict, folder: Path) -> Config:
    name, args = cfg["model"], cfg.get("model_args") or {}
    known = ", ".join([*ECAPA, *RESNET])
    if not isinstance(name, str) or (name not in ECAPA and name not in RESNET):
        raise ModelError(f"{folder}: unknown WeSpeaker architecture {name!r} (supported: {known})")
    pooling = args.get("pooling_func", "ASTP" if name in ECAPA else "TSTP")
    if pooling != ("ASTP" if name in ECAPA else "TSTP"):
        raise ModelError(f"{folder}: {name} with pooling {pooling!r} is not supported")
    if args.get("two_emb_layer") or args.get("emb_bn"):
        raise ModelError(f"{folder}: {name} with a second embedding layer is not supported")
    data = cfg.get("dataset_args") or {}
    fbank = data.get("fbank_args") or {}
    if data.get("frontend", "fbank") != "fbank":
        raise ModelError(f"{folder}: front end {data.get('frontend')!r} is not supported")
    c = Config()
    c.data.sample_rate = int(data.get("resample_rate", 16000))
    c.features.n_mels = int(args.get("feat_dim", fbank.get("num_mel_bins", 80)))
    c.features.win_ms = float(fbank.get("frame_length", 25))
    c.features.hop_ms = float(fbank.get("frame_shift", 10))
    c.features.kaldi, c.features.window, c.features.dither = True, "hamming", 0.0
    c.features.mean_norm = True
    c.model.embed_dim = int(args.get("embed_dim", 192 if name in ECAPA else 256))
    if name in ECAPA:
        c.model.encoder, c.model.channels = "ecapa_tdnn", ECAPA[name]
    else:
        c.model.encoder = "resnet34"
        c.model.base_channels = int(args.get("m_channels", 32))
    return c


def _rotate(channels: int) -> torch.Tensor:
    """audiocl channel ``k`` of a Res2Net input/output = WeSpeaker channel ``perm[k]``."""
    width = channels // SCALE
    groups = [(g - 1) % SCALE for g in range(SCALE)]
    return torch.cat([torch.arange(g * width, (g + 1) * width) for g in groups])


def ecapa_state(state: dict[str, torch.Tensor], channels: int) -> dict[str, torch.Tensor]:
    """WeSpeaker ECAPA tensors under audiocl's names, Res2Net groups rotated."""
    perm = _rotate(channels)
    out = {}
    for key, value in state.items():
        if key.startswith("projection.") or key.startswith("bn2."):
            continue  # the training head; the identity after the embedding
        parts = key.split(".")
        if parts[0] in ("layer2", "layer3", "layer4") and parts[1] == "se_res2block":
            block, rest = parts[2], parts[3:]
            if block == "0":  # 1x1 conv before the Res2Net block: rotate its outputs
                new = [parts[0], "conv1", *rest]
                if value.dim() >= 1 and value.shape[0] == channels:
                    value = value[perm]
            elif block == "1":  # convs.i / bns.i -> res2.blocks.i.conv / .bn
                kind, i = rest[0], rest[1]
                new = [
                    parts[0],
                    "res2",
                    "blocks",
                    i,
                    "conv" if kind == "convs" else "bn",
                    *rest[2:],
                ]
            elif block == "2":  # 1x1 conv after it: rotate its inputs
                new = [parts[0], "conv2", *rest]
                if rest[:2] == ["conv", "weight"] and value.shape[1] == channels:
                    value = value[:, perm]
            else:
                new = [parts[0], "se", *rest]
            out[".".join(new)] = value
        elif parts[0] == "conv":
            out[".".join(["mfa", *parts[1:]])] = value
        else:
            out[key] = value
    return out


def resnet_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """WeSpeaker ResNet tensors under audiocl's names."""
    out = {}
    for key, value in state.items():
        if key.startswith("projection.") or key.startswith("seg_bn_1") or key.startswith("seg_2"):
            continue
        parts = key.split(".")
        if parts[0].startswith("layer") and parts[0][5:].isdigit():
            out[".".join(["stages", str(int(parts[0][5:]) - 1), *parts[1:]])] = value
        elif parts[0] == "seg_1":
            out[".".join(["linear", *parts[1:]])] = value
        elif parts[0] == "pool":
            continue  # TSTP has no weights
        else:
            out[key] = value
    return out


def import_wespeaker(folder: str | Path) -> dict:
    """The audiocl model-file payload of a WeSpeaker model folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: not a folder (expected config.yaml and avg_model.pt)")
    raw = read_config(folder)
    cfg = audiocl_config(raw, folder)
    weights = require(folder, "avg_model.pt")
    state = load_state(weights)
    if cfg.model.encoder == "ecapa_tdnn":
        mapped = ecapa_state(state, cfg.model.channels)
    else:
        mapped = resnet_state(state)
    encoder = build_encoder(cfg.model, cfg.features.n_mels)
    load_strict(encoder, mapped, weights)
    payload = checkpoint.make_model_file(encoder.state_dict(), to_dict(cfg), step=0)
    payload.update(
        source="wespeaker",
        name=f"wespeaker/{raw['model']}/{folder.name}",
        license="the terms the source model was published under (see WeSpeaker's model card)",
        source_config=yaml.safe_dump(raw, sort_keys=False),
    )
    return payload
