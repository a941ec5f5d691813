"""Domain adaptation without labels: centre embeddings on the mean of the user's own speech.

A model trained on one kind of recording puts every embedding of another kind (language,
microphone, room) in a shared offset direction, so different speakers of that domain score
high against each other. Subtracting the mean embedding of unlabelled in-domain recordings
(many speakers) removes the offset; WeSpeaker centres on its training set's mean in the same
way. Measured on the starter model: dev EER 7.35% -> 7.01% with the mean of other dev
speakers' recordings, and its threshold then transfers across domains (``docs/models.md``).

The mean lives in the model file (``domain``), applied after the encoder as ``Centered``
(``audiocl.modelfile.network``):
``(B, D)`` raw embeddings -> ``normalize(e) - mean``. Every backend applies it (the ONNX
export bakes it into the graph), and the adapted model has an id of its own, so stores and
embedding caches of the unadapted model are not mixed with it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

# fewer recordings than this make a mean that is one speaker's voice rather than the domain's
MIN_FILES = 20


def domain_mean(embeddings: np.ndarray) -> np.ndarray:
    """``(N, D)`` L2-normalised embeddings -> ``(D,)`` float32, their mean."""
    return np.asarray(embeddings, dtype=np.float64).mean(axis=0).astype(np.float32)


def base_model(data: dict) -> dict:
    """The model file without its domain mean (the encoder's own embeddings)."""
    out = {k: v for k, v in data.items() if k != "domain"}
    if data.get("domain"):
        out["model_id"] = data["domain"]["base_model_id"]
    return out


def adapted_model(data: dict, mean: np.ndarray, files: int) -> dict:
    """A copy of model file ``data`` centred on ``mean`` (``(D,)``, from :func:`domain_mean`).

    Its calibration becomes the model's ``adapted_calibration`` when it has one (thresholds
    measured on held-out speakers centred on their own domain's mean, which transfer to other
    domains so centred), else none: scores moved, so old thresholds would mislead.
    """
    from ..modelfile.checkpoint import model_id

    base = base_model(data)
    base["model_id"] = base.get("model_id") or model_id(base["encoder"])
    mean = np.asarray(mean, dtype=np.float32).reshape(-1)
    h = hashlib.sha256(base["model_id"].encode())
    h.update(mean.tobytes())
    out = dict(base)
    out["domain"] = {
        "mean": torch.from_numpy(mean.copy()),
        "files": int(files),
        "base_model_id": base["model_id"],
    }
    out["model_id"] = h.hexdigest()[:16]
    cal = data.get("adapted_calibration")
    out["calibration"] = dict(cal) if cal else None
    return out


def audio_files(items: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, and the audio files under each folder (sorted, recursively)."""
    from ..io.audio import READ_EXTENSIONS

    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in READ_EXTENSIONS)
            if not found:
                raise DataError(f"{p}: no audio files in this folder")
            out.extend(found)
        else:
            out.append(p)
    return out


def check_count(n: int) -> None:
    if n < MIN_FILES:
        raise DataError(
            f"adapting needs at least {MIN_FILES} recordings of many speakers, got {n}: "
            "a mean of few recordings is one voice, not the domain"
        )
