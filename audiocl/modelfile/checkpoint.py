"""Checkpoints and model files: one ``torch.save`` file each, written atomically, read with
``weights_only=True`` so that opening a file can never run code.

Two kinds share one layout:
- a *training checkpoint* (``checkpoints/ckpt-0000200.pt``) holds everything ``--resume`` needs:
  ``encoder``, ``objective``, ``optimizer``, ``scheduler``, ``step``, ``rng``, ``config``;
- a *model file* (``model.pt``) holds what inference needs: ``encoder``, ``config``, ``model_id``,
  ``calibration``, ``speakers``, ``step``, ``created``.
Both carry ``format`` and ``encoder`` + ``config``, so either can be loaded as a model.
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError, first_line
from ..fileio import atomic_path
from .onnx_file import is_onnx_file, set_onnx_calibration

CHECKPOINT_FORMAT = "audiocl-checkpoint-1"
MODEL_FORMAT = "audiocl-model-1"
PROVENANCE = ("source", "name", "license", "attribution", "source_config")


def save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temp file, fsync, rename)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint or model file safely; ``ModelError`` when it is missing or not ours."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model or checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise ModelError(
            f"{path}: not a readable audiocl model ({_why_unreadable(path, e)})"
        ) from None
    if not isinstance(data, dict) or data.get("format") not in (CHECKPOINT_FORMAT, MODEL_FORMAT):
        raise ModelError(f"{path}: not an audiocl model or checkpoint file")
    return data


def _why_unreadable(path: Path, error: Exception) -> str:
    """What is wrong with a file ``torch.load`` refused, without PyTorch's advice to retry with
    ``weights_only=False``: that would let an untrusted file run code."""
    if not zipfile.is_zipfile(path):
        return "not a PyTorch file" if path.stat().st_size else "empty file"
    if "weights only load failed" in str(error).lower():
        return "it holds Python objects that a safe load refuses; audiocl never unpickles them"
    return first_line(error)


def model_id(encoder_state: dict[str, torch.Tensor]) -> str:
    """A short fingerprint of the encoder weights: two files with equal weights share it."""
    h = hashlib.sha256()
    for name in sorted(encoder_state):
        t = encoder_state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def make_model_file(
    encoder_state: dict[str, torch.Tensor],
    config: dict,
    step: int,
    speakers: list[str] | None = None,
) -> dict[str, Any]:
    """The payload of ``model.pt`` for the given encoder weights (no calibration yet)."""
    state = {k: v.detach().cpu().clone() for k, v in encoder_state.items()}
    return {
        "format": MODEL_FORMAT,
        "config": config,
        "encoder": state,
        "model_id": model_id(state),
        "calibration": None,
        "speakers": list(speakers or []),
        "step": int(step),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _load_combinable(paths: list[str | os.PathLike], what: str) -> tuple[list[dict], list]:
    """The files of ``paths`` (at least two, none adapted, one sample rate) and their configs;
    ``ModelError`` names a file that does not qualify."""
    if len(paths) < 2:
        raise ModelError(f"{what} needs at least two model or checkpoint files")
    from ..config import Config, from_dict

    datas = [load(p) for p in paths]
    for path, data in zip(paths, datas, strict=True):
        if data.get("domain"):  # its mean belongs to its weights; the result would drop it
            raise ModelError(
                f"{path}: is adapted to a domain (audiocl adapt); combine the unadapted "
                "models, then adapt the result"
            )
    cfgs = [from_dict(Config, d["config"]) for d in datas]
    for path, cfg in zip(paths[1:], cfgs[1:], strict=True):
        if cfg.data.sample_rate != cfgs[0].data.sample_rate:
            raise ModelError(
                f"{path}: takes {cfg.data.sample_rate} Hz audio, {paths[0]} "
                f"{cfgs[0].data.sample_rate} Hz"
            )
    return datas, cfgs


def _architecture_mismatch(paths: list, datas: list[dict], cfgs: list) -> str | None:
    """Why the files are not one architecture (the same model and features config, defaults
    filled in, and the same encoder weight names and shapes), naming the first that differs;
    ``None`` when they are."""
    first = datas[0]
    for path, data, cfg in zip(paths[1:], datas[1:], cfgs[1:], strict=True):
        for section in ("model", "features"):
            if getattr(cfg, section) != getattr(cfgs[0], section):
                return f"{path}: its {section} config differs from {paths[0]}'s"
        if data["encoder"].keys() != first["encoder"].keys():
            return f"{path}: its encoder has other weights than {paths[0]}'s"
        for name, t in first["encoder"].items():
            if data["encoder"][name].shape != t.shape:
                return (
                    f"{path}: encoder weight {name} is {tuple(data['encoder'][name].shape)}, "
                    f"{paths[0]} has {tuple(t.shape)}"
                )
    return None


def _load_matching(paths: list[str | os.PathLike], what: str) -> list[dict[str, Any]]:
    """The files of ``paths`` (at least two), checked to be one architecture, none adapted;
    ``ModelError`` names a file that differs from the first."""
    datas, cfgs = _load_combinable(paths, what)
    why = _architecture_mismatch(paths, datas, cfgs)
    if why:
        raise ModelError(why)
    return datas


def average(paths: list[str | os.PathLike], weights: list[float] | None = None) -> dict[str, Any]:
    """The model file whose encoder weights are the mean of those of ``paths`` (model files or
    training checkpoints of one architecture), as WeSpeaker averages its last checkpoints:
    snapshots of one run, or of runs that continue one another, lie in one basin, and their mean
    often generalises better than each. ``weights`` (>= 0, scaled to sum 1; default equal) make
    it a weighted mean, e.g. a pretrained model and its fine-tuned copy interpolated (WiSE-FT,
    Wortsman et al. 2022: the fine-tuned gains with less of the pretrained breadth lost).
    Integer buffers (batch counts) come from the last file; config, speakers, step, name and
    licence too. ``ModelError`` names a file that does not match the first."""
    from ..nn.ensemble import ensemble_weights

    datas = _load_matching(paths, "averaging")
    w = ensemble_weights(weights, len(paths), "average weights")
    last = datas[-1]
    state = {}
    for name, t in last["encoder"].items():
        if t.is_floating_point():
            total = sum(wi * d["encoder"][name].double() for wi, d in zip(w, datas, strict=True))
            state[name] = total.to(t.dtype)
        else:
            state[name] = t
    out = make_model_file(state, last["config"], last.get("step", 0), last.get("speakers"))
    # an imported or packaged model's provenance and licence travel with its weights
    out.update({k: last[k] for k in PROVENANCE if k in last})
    out["averaged_from"] = [
        {"file": str(p), "step": int(d.get("step", 0)), "weight": wi}
        for p, d, wi in zip(paths, datas, w, strict=True)
    ]
    return out


def ensemble(paths: list[str | os.PathLike], weights: list[float] | None = None) -> dict[str, Any]:
    """The model file of an ensemble (``audiocl.nn.ensemble``) of the encoders of ``paths``,
    model files or training checkpoints trained independently (weights of one run are better
    averaged), fused with ``weights`` (equal by default; kept as ``ensemble_weights``).

    Files of one architecture make an ``Ensemble`` on shared features, its config the first
    file's with ``model.members`` set. Files of different architectures, front ends or
    embedding sizes (the starter and an imported GE2E) make a ``MixedEnsemble``
    (``model.encoder: mixed``): each member keeps its own front end, built from its config in
    ``ensemble_of``. ``ensemble_of`` lists each member's file, model id, step, config,
    provenance and what it was averaged from; a provenance key all members share is kept as the
    ensemble's. No calibration: the scores are new. ``ModelError`` for a file that is an
    ensemble, is adapted, or takes another sample rate."""
    from ..nn.ensemble import MIXED, ensemble_weights

    datas, cfgs = _load_combinable(paths, "an ensemble")
    mixed = _architecture_mismatch(paths, datas, cfgs) is not None
    for path, data in zip(paths, datas, strict=True):
        # an ensemble of one architecture may be a member of a mixed one (it keeps its weights)
        model = data["config"].get("model", {})
        if model.get("encoder") == MIXED or (model.get("members", 1) != 1 and not mixed):
            raise ModelError(f"{path}: is an ensemble already; name its members instead")
    if mixed:  # each member is built from its own config: its weights must fit it
        from .network import build_inference_model

        for path, data in zip(paths, datas, strict=True):
            try:
                build_inference_model(data)
            except (RuntimeError, ValueError, KeyError) as e:
                first = first_line(e)
                raise ModelError(f"{path}: its weights do not fit its config ({first})") from None
    fusion = ensemble_weights(weights, len(paths))
    state = {
        f"members.{i}.{name}": t for i, d in enumerate(datas) for name, t in d["encoder"].items()
    }
    config = dict(datas[0]["config"])
    config["model"] = {**config["model"], "members": len(datas)}
    if mixed:
        dims = sum(c.model.embed_dim * c.model.members for c in cfgs)  # a member may be one
        config["model"].update(encoder=MIXED, embed_dim=dims)
    speakers = list(dict.fromkeys(s for d in datas for s in d.get("speakers") or []))
    steps = sum(int(d.get("step", 0)) for d in datas)
    out = make_model_file(state, config, steps, speakers)
    for key in PROVENANCE:
        values = [d.get(key) for d in datas]
        if values[0] is not None and all(v == values[0] for v in values):
            out[key] = values[0]
    out["ensemble_of"] = [
        {
            "file": str(p),
            "model_id": d.get("model_id") or model_id(d["encoder"]),
            "step": int(d.get("step", 0)),
            "config": d["config"],
            **{k: d[k] for k in (*PROVENANCE, "averaged_from", "ensemble_weights") if k in d},
        }
        for p, d in zip(paths, datas, strict=True)
    ]
    out["ensemble_weights"] = fusion
    if fusion != ensemble_weights(None, len(paths)):  # other weights, other scores: another id
        out["model_id"] = model_id({**state, "ensemble_weights": torch.tensor(fusion)})
    return out


def set_calibration(path: str | os.PathLike, calibration: dict[str, Any]) -> None:
    """Store thresholds into a model file (rewritten atomically; weights untouched)."""
    if is_onnx_file(path):
        set_onnx_calibration(path, calibration)
        return
    data = load(path)
    if data["format"] != MODEL_FORMAT:
        raise ModelError(
            f"{path}: calibration is stored in a model file (model.pt), not a checkpoint"
        )
    data["calibration"] = dict(calibration)
    save(path, data)
