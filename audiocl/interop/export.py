"""ONNX export: a model file -> one graph from the waveform to the embedding.

The graph takes ``waveform``, float32 ``(B, S)`` in [-1, 1] at the model's sample rate (any
``B``, any ``S``; the CLI and the tests use ``B = 1``) and returns ``embedding``, float32
``(B, D)``, before L2 normalisation (cosine scoring does not need it; an adapted model's
centring, ``audiocl.inference.adapt``, is in the graph). The filterbank front end is inside the graph,
so a runtime needs nothing else.

``torch.fft`` has no portable ONNX form, so the graph computes the filterbank as one strided
``conv1d`` whose kernels are the windowed DFT basis (``ConvFbank``): framing, Kaldi's per-frame
DC removal and pre-emphasis, the window and the real DFT are all linear in the frame, so they
fold into one ``(2F, 1, W)`` kernel computed in float64. The model file's id, name, sample rate
and calibration travel in the ONNX metadata, so an exported model keeps its store identity.
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ModelError
from ..fileio import atomic_path
from ..modelfile import checkpoint
from ..modelfile.network import Centered, build_inference_model
from ..modelfile.onnx_file import require_onnx
from ..nn.ensemble import MixedEnsemble, fuse
from ..nn.features import (
    _FLT_EPSILON,
    PARTIAL_FRAMES,
    WINDOWS,
    Fbank,
    ResemblyzerMel,
    conv_power,
    windowed_dft_basis,
)
from ..nn.ge2e import Ge2eLstm
from .onnx_runtime import OnnxNet

OPSET = 18


class ConvFbank(nn.Module):
    """``Fbank`` in inference mode (no dither) as export-friendly ops:
    ``(B, S)`` -> ``(B, T, n_mels)``, equal to ``fbank.eval()(wave)`` up to float32 rounding."""

    def __init__(self, fbank: Fbank):
        super().__init__()
        w, n_fft, c = fbank.win_length, fbank.n_fft, fbank.preemphasis
        self.win_length, self.hop_length = w, fbank.hop_length
        self.kaldi, self.preemphasis = fbank.kaldi, c
        self.mean_norm, self.input_scale = fbank.mean_norm, fbank.input_scale
        # the linear map applied to each raw frame before the DFT, (W, W) float64
        lin = torch.eye(w, dtype=torch.float64)
        if fbank.kaldi:
            lin = lin - 1.0 / w  # per-frame DC removal
            if c != 0.0:
                ones = torch.ones(w - 1, dtype=torch.float64)
                pre = torch.eye(w, dtype=torch.float64) - c * torch.diag(ones, -1)
                pre[0, 0] = 1.0 - c
                lin = pre @ lin
        basis = windowed_dft_basis(WINDOWS[fbank.window_name](w), n_fft)  # (2F, W)
        self.register_buffer("kernel", (basis @ lin).float().unsqueeze(1), persistent=False)
        self.register_buffer("mel", fbank.mel.clone(), persistent=False)

    def forward(self, wave: Tensor) -> Tensor:
        x = wave.float() * self.input_scale
        # short input is zero-padded to one window, as Fbank does
        x = torch.cat([x, x.new_zeros(x.shape[0], self.win_length)], dim=1)
        x = x[:, : max(wave.shape[1], self.win_length)]
        c = self.preemphasis
        if not self.kaldi and c != 0.0:
            x = torch.cat([x[:, :1] * (1.0 - c), x[:, 1:] - c * x[:, :-1]], dim=1)
        power = conv_power(x, self.kernel, self.hop_length)
        feats = torch.matmul(power, self.mel).clamp_min(_FLT_EPSILON).log()
        if self.mean_norm:
            feats = feats - feats.mean(dim=1, keepdim=True)
        return feats


class WaveformEncoder(nn.Module):
    """``waveform (B, S)`` -> ``embedding (B, D)``: the front end and the encoder in one module."""

    def __init__(self, fbank: nn.Module, encoder: nn.Module):
        super().__init__()
        # SpeechBrainFbank is export-friendly as it is (its DFT is already a conv)
        self.fbank = ConvFbank(fbank) if isinstance(fbank, Fbank) else fbank
        self.encoder = encoder

    def forward(self, waveform: Tensor) -> Tensor:
        return self.encoder(self.fbank(waveform))


class Ge2eGraph(nn.Module):
    """Resemblyzer's GE2E (``ResemblyzerMel`` + ``Ge2eLstm``) as
    export-friendly ops: ``waveform (B, S)`` -> ``(B, D)``, equal to the PyTorch path up to float32
    rounding.

    How many partial utterances a recording has, and whether its last one is kept, is Python
    arithmetic on the length in ``ResemblyzerMel``; a graph with a dynamic length cannot hold
    it. Here every window that fits after padding by one partial of zeros is embedded
    (``unfold``), and the same arithmetic, done on tensors, weights the ones Resemblyzer keeps by
    1 and the others by 0. The zeros give the kept windows the very frames the front end gives
    them (it pads with zeros too).
    """

    def __init__(self, fbank: ResemblyzerMel, encoder: nn.Module):
        super().__init__()
        self.fbank, self.encoder = fbank, encoder
        if not isinstance(encoder, Ge2eLstm):
            raise ModelError(
                f"the resemblyzer front end exports with the ge2e encoder only, not "
                f"{type(encoder).__name__}"
            )

    def forward(self, waveform: Tensor) -> Tensor:
        fb, frames, step = self.fbank, PARTIAL_FRAMES, self.fbank.frame_step
        hop = fb.hop_length
        wave = fb.louder(waveform.float())
        n = torch.ones(wave.shape[1], dtype=torch.int64, device=wave.device).sum()
        feats = fb.power_mel(nn.functional.pad(wave, (0, frames * hop)))
        windows = feats.unfold(1, frames, step).transpose(2, 3)  # (B, W, frames, n_mels)
        b, w = windows.shape[0], windows.shape[1]
        # ResemblyzerMel.partial_starts on tensors: how many partials, the last one kept or not
        steps = ((n + hop) // hop - frames + step + 1).clamp_min(1)
        count = (steps + step - 1) // step
        last = (count - 1) * step
        coverage = (n - last * hop).double() / (frames * hop)
        drop = (coverage < fb.min_coverage) & (count > 1)
        keep = (torch.arange(w, device=wave.device) < count - drop.long()).float()
        e = self.encoder.embed_partials(windows.reshape(b * w, frames, windows.shape[3]))
        return (e.reshape(b, w, -1) * keep[None, :, None]).sum(dim=1) / keep.sum()


class FusedGraph(nn.Module):
    """A ``MixedEnsemble`` as one graph: each member's graph on the waveform, fused."""

    def __init__(self, members: list[nn.Module], weights: list[float]):
        super().__init__()
        self.members, self.weights = nn.ModuleList(members), weights

    def forward(self, waveform: Tensor) -> Tensor:
        return fuse([m(waveform) for m in self.members], self.weights)


class CentredGraph(nn.Module):
    """A graph followed by an adapted model's centring (``Centered``, after any pooling)."""

    def __init__(self, net: nn.Module, mean: Tensor):
        super().__init__()
        self.net = net  # not "graph": torch.fx's name for a traced module's graph
        self.register_buffer("mean", mean, persistent=False)

    def forward(self, waveform: Tensor) -> Tensor:
        return nn.functional.normalize(self.net(waveform).float(), dim=1) - self.mean


def inference_graph(fbank: nn.Module, encoder: nn.Module) -> nn.Module:
    """The export-friendly ``waveform (B, S) -> (B, D)`` module of a built inference network."""
    if isinstance(encoder, Centered):
        return CentredGraph(inference_graph(fbank, encoder.encoder), encoder.mean)
    if isinstance(encoder, MixedEnsemble):
        members = [inference_graph(m.fbank, m.encoder) for m in encoder.members]
        return FusedGraph(members, encoder.weights)
    if isinstance(fbank, ResemblyzerMel):
        return Ge2eGraph(fbank, encoder)
    return WaveformEncoder(fbank, encoder)


def metadata(data: dict, embed_dim: int | None = None) -> dict[str, str]:
    """What the ONNX file keeps of a model file: its identity, sample rate and calibration."""
    from ..config import Config, from_dict

    cfg = from_dict(Config, data["config"])
    meta = {
        "audiocl_model_id": data.get("model_id") or checkpoint.model_id(data["encoder"]),
        "sample_rate": str(cfg.data.sample_rate),
        # an ensemble's embedding is its members' together: the built network says how wide
        "embed_dim": str(embed_dim or cfg.model.embed_dim),
    }
    for key in ("name", "source", "license", "attribution"):
        if data.get(key):
            meta[key] = str(data[key])
    if data.get("calibration"):
        meta["calibration"] = json.dumps(data["calibration"])
    return meta


def to_onnx_bytes(data: dict) -> bytes:
    """The ONNX graph of a loaded model file, serialised."""
    require_onnx()
    cfg, fbank, encoder = build_inference_model(data)
    net = inference_graph(fbank, encoder).eval()
    # a batch of 2: an example dimension of size 1 would be fixed to 1 in the graph
    example = torch.zeros(2, 2 * cfg.data.sample_rate)
    buf = io.BytesIO()
    batch, samples = torch.export.Dim("batch"), torch.export.Dim("samples", min=2)
    quiet = logging.getLogger("torch.onnx")  # it logs each optional op set it skips
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        program = _export(net, example, batch, samples)
    finally:
        quiet.setLevel(level)
    program.save(buf)
    import onnx

    model = onnx.load_from_string(buf.getvalue())
    for key, value in metadata(data, getattr(encoder, "embed_dim", None)).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def _export(net: nn.Module, example: Tensor, batch, samples):
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            input_names=["waveform"],
            output_names=["embedding"],
            dynamic_shapes={"waveform": {0: batch, 1: samples}},
            opset_version=OPSET,
            verbose=False,
        )
    return program


def export_onnx(
    model_path: str | os.PathLike, out: str | os.PathLike, check: bool = True
) -> tuple[Path, float | None]:
    """Write the ONNX graph of ``model_path`` to ``out`` (atomically). With ``check``, the graph
    first runs once under onnxruntime against PyTorch (``check_graph``), and nothing is written
    when they disagree. Returns ``(out, cosine or None)``."""
    data = checkpoint.load(model_path)
    blob = to_onnx_bytes(data)
    cosine = check_graph(data, blob) if check else None
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_bytes(blob)
    return out, cosine


def check_graph(data: dict, blob: bytes, min_cosine: float = 0.9999) -> float:
    """Cosine between onnxruntime's embedding of 3 s of seeded noise and PyTorch's; a
    ``ModelError`` below ``min_cosine``."""
    cfg, fbank, encoder = build_inference_model(data)
    wave = 0.1 * torch.randn(
        1, 3 * cfg.data.sample_rate, generator=torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        ref = encoder(fbank(wave))
    got = OnnxNet(blob)(wave)
    cosine = float(torch.nn.functional.cosine_similarity(ref, got).item())
    if not cosine >= min_cosine:
        raise ModelError(
            f"the exported graph disagrees with PyTorch (cosine {cosine:.6f} < {min_cosine}); "
            "nothing was written"
        )
    return cosine
