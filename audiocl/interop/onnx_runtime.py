"""Running an exported model with onnxruntime: the ``onnx`` backend of ``Embedder``.

An ``.onnx`` file made by ``audiocl export`` is a model file like ``model.pt``: its metadata
carries the model id (so speaker stores and embedding files stay compatible with the torch
model it came from), the sample rate and any calibration. ``--backend onnx`` on a ``model.pt``
exports it in memory first.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from ..errors import ModelError, first_line


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(
            "the onnx backend needs onnxruntime: pip install 'audiocl[onnx]'"
        ) from None
    return onnxruntime


class OnnxNet:
    """``(B, S)`` waveforms -> ``(B, D)`` unnormalised embeddings through an onnxruntime session."""

    def __init__(self, model: bytes | str | os.PathLike, threads: int = 0):
        ort = _ort()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(
                source, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own types for unreadable graphs
            where = "the exported graph" if isinstance(model, bytes) else str(model)
            first = first_line(e)
            raise ModelError(f"{where}: not a readable ONNX model ({first})") from None
        self.meta = dict(self.session.get_modelmeta().custom_metadata_map)
        names = [i.name for i in self.session.get_inputs()]
        if names != ["waveform"] or "audiocl_model_id" not in self.meta:
            raise ModelError(
                f"{model if not isinstance(model, bytes) else 'graph'}: not an ONNX model "
                "exported by audiocl (expects input 'waveform' and audiocl metadata)"
            )
        self.embed_dim = int(self.meta["embed_dim"])

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        wave = batch.detach().float().cpu().numpy()
        (out,) = self.session.run(["embedding"], {"waveform": np.ascontiguousarray(wave)})
        return torch.from_numpy(out)

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    @property
    def model_id(self) -> str:
        return self.meta["audiocl_model_id"]

    @property
    def calibration(self) -> dict | None:
        raw = self.meta.get("calibration")
        return json.loads(raw) if raw else None
