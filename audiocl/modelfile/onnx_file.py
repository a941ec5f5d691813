"""Exported model files (``.onnx``): what the model-file layer knows of the format beside
``.pt``. Their metadata carries the model id, sample rate and calibration
(``audiocl.interop.export`` writes them; ``audiocl.interop.onnx_runtime`` runs them)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import ModelError
from ..fileio import atomic_path


def is_onnx_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def set_onnx_calibration(path: str | os.PathLike, calibration: dict) -> None:
    """Store thresholds in an exported model's metadata (the file is rewritten atomically)."""
    require_onnx()
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != "calibration"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = "calibration", json.dumps(dict(calibration))
    with atomic_path(path) as tmp:
        tmp.write_bytes(model.SerializeToString())


def require_onnx() -> None:
    """A ``ModelError`` unless this torch can export ONNX and the onnx extra is installed."""
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 6):
        raise ModelError(f"ONNX export needs torch >= 2.6 (this is {torch.__version__})")
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ModelError(
            f"ONNX export needs the onnx extra ({e.name} is missing): pip install 'audiocl[onnx]'"
        ) from None
