"""Embedding extraction: whole utterances -> L2-normalised ``(D,)`` vectors.

Long audio is cut into chunks of at most ``chunk_seconds`` whose embeddings are averaged
(weighted by length), so memory stays bounded whatever the file's length. Every sample is
used, and pieces of exactly equal length share a batch (no padding), so an embedding never
depends on which other files shared its batch. (Trimming each piece by up to 2% to a grid of
lengths, as before, batched more but moved embeddings by up to cosine 0.009.)

Batches hold about ``batch_seconds`` (20 s) of audio: on CPU, ECAPA C=512 runs about 1.3x faster
with 20 s batches than with 120 s ones (activations of a few MB stay in cache, and large
allocations are not page-faulted in afresh on every forward pass).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import AudioError, ConfigError, ModelError, first_line
from ..io import audio
from ..io.vad import SpeechGate
from ..modelfile import checkpoint
from ..modelfile.network import build_inference_model
from ..modelfile.onnx_file import is_onnx_file

BACKENDS = ("auto", "torch", "onnx")


class Embedder:
    """Turns waveforms or files into normalised embeddings with one encoder.

    ``embed_waves(list of (S,)) -> (N, D)``; ``embed_files(paths) -> (N, D)``;
    ``embed_waveform((S,)) -> (D,)``. All outputs are float32 numpy, L2-normalised.
    """

    def __init__(
        self,
        fbank: torch.nn.Module | None,
        encoder: torch.nn.Module | None,
        sample_rate: int = 16000,
        device: str | torch.device = "cpu",
        chunk_seconds: float = 30.0,
        batch_seconds: float = 20.0,
        model_id: str = "",
        min_seconds: float = 0.1,
        net: Callable[[torch.Tensor], torch.Tensor] | None = None,
        gate: SpeechGate | None = None,
    ):
        self.device = torch.device(device)
        # net: another backend's ``(B, S) -> (B, D)`` in place of fbank + encoder (onnxruntime)
        self.net = net
        self.fbank = fbank.to(self.device).eval() if fbank is not None else None
        self.encoder = encoder.to(self.device).eval() if encoder is not None else None
        self.sample_rate = sample_rate
        self.chunk = int(chunk_seconds * sample_rate)
        self.batch_samples = int(batch_seconds * sample_rate)
        self.model_id = model_id
        self.min_seconds = min_seconds
        self.calibration: dict | None = None
        self.path: Path | None = None
        # rejects recordings without speech (and trims, when asked) before they are embedded
        self.gate = gate or SpeechGate()

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, device: str = "cpu", backend: str = "auto", **kwargs
    ) -> Embedder:
        """Load a model file (``model.pt``, a training checkpoint, or an exported ``.onnx``)
        safely and wrap it. ``backend``: "torch", "onnx" (onnxruntime; a ``.pt`` is exported
        in memory) or "auto" (onnx for ``.onnx`` files)."""
        from ..interop.onnx_runtime import OnnxNet

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if is_onnx_file(path):
            if backend == "torch":
                raise ModelError(f"{path}: an exported ONNX model runs with the onnx backend")
            if not Path(path).is_file():
                raise ModelError(f"{path}: no such model file")
            net = OnnxNet(path)
            emb = cls(None, None, net.sample_rate, model_id=net.model_id, net=net, **kwargs)
            emb.calibration = net.calibration
        else:
            data = checkpoint.load(path)
            try:
                emb = cls.from_data(data, device, backend, **kwargs)
            except ModelError as e:
                raise ModelError(f"{path}: {e}") from None
            except ConfigError as e:
                raise ModelError(f"{path}: its config is invalid ({e})") from None
            except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
                # a file that loads safely but whose entries do not make a model: outside input
                why = first_line(e)
                raise ModelError(f"{path}: not a usable audiocl model ({why})") from None
        emb.path = Path(path)
        return emb

    @classmethod
    def from_data(
        cls, data: dict, device: str = "cpu", backend: str = "auto", **kwargs
    ) -> Embedder:
        """Wrap a loaded model file or checkpoint dict (``checkpoint.load``); ``backend`` "onnx"
        exports it in memory."""
        cfg, fbank, encoder = build_inference_model(data)
        mid = data.get("model_id") or checkpoint.model_id(data["encoder"])
        if not isinstance(mid, str):
            raise ModelError("its model id is not text")
        if not isinstance(data.get("calibration") or {}, dict):
            raise ModelError("its calibration is not a mapping")
        net = None
        if backend == "onnx":
            from ..interop.export import to_onnx_bytes
            from ..interop.onnx_runtime import OnnxNet

            net = OnnxNet(to_onnx_bytes(data))
            fbank = encoder = None
        emb = cls(fbank, encoder, cfg.data.sample_rate, device, model_id=mid, net=net, **kwargs)
        emb.calibration = data.get("calibration")
        return emb

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` waveforms -> ``(B, D)`` unnormalised embeddings."""
        if self.net is not None:
            return self.net(batch).float()
        batch = batch.to(self.device)
        feats = self.fbank(batch)
        return self.encoder(feats).float().cpu()

    def _pieces(self, wave: torch.Tensor) -> list[torch.Tensor]:
        """The whole recording in near-equal chunks of at most ``chunk_seconds`` (every sample
        is used: trimming pieces to shared lengths for batching moved embeddings by up to
        cosine 0.009, for 9% less time)."""
        n = wave.numel()
        count = max(1, math.ceil(n / self.chunk))
        size = math.ceil(n / count)
        return [wave[i * size : (i + 1) * size] for i in range(count)]

    def embed_waves(
        self, waves: Sequence[torch.Tensor], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """``N`` mono waveforms ``(S_i,)`` at ``sample_rate`` -> ``(N, D)`` normalised embeddings.
        Pieces of equal length share a forward pass."""
        pieces: list[tuple[int, torch.Tensor]] = []
        for i, w in enumerate(waves):
            pieces.extend((i, p) for p in self._pieces(w))
        buckets: dict[int, list[tuple[int, torch.Tensor]]] = defaultdict(list)
        for i, p in pieces:
            buckets[p.numel()].append((i, p))
        sums: dict[int, torch.Tensor] = {}
        weights = np.zeros(len(waves))
        for length, items in sorted(buckets.items()):
            per_batch = max(1, self.batch_samples // length)
            for s in range(0, len(items), per_batch):
                group = items[s : s + per_batch]
                embs = self._forward(torch.stack([p for _, p in group]))
                for (i, _), e in zip(group, embs, strict=True):
                    sums[i] = sums.get(i, 0) + e * length
                    weights[i] += length
        if not waves:
            return np.zeros((0, self.embed_dim or 0), dtype=np.float32)
        out = torch.stack([sums[i] / weights[i] for i in range(len(waves))])
        if progress:
            progress(len(waves))
        return torch.nn.functional.normalize(out, dim=1).numpy().astype(np.float32)

    @property
    def embed_dim(self) -> int | None:
        """``D``, when the encoder says it (``embed_dim`` attribute)."""
        d = getattr(self.net if self.net is not None else self.encoder, "embed_dim", None)
        return int(d) if d is not None else None

    def embed_waveform(self, wave: torch.Tensor) -> np.ndarray:
        """One waveform ``(S,)`` -> ``(D,)``."""
        return self.embed_waves([wave])[0]

    def load(self, path: str | os.PathLike) -> torch.Tensor:
        """Decode ``path`` at the model's rate, through the speech gate."""
        wave = audio.load(path, self.sample_rate, min_duration=self.min_seconds)
        return self.gate(wave, self.sample_rate, str(path))

    @property
    def cache_id(self) -> str:
        """The model id plus what the speech gate changes: the key of an embedding cache
        ("w": whole recordings; caches from before, of trimmed ones, are not reused)."""
        key = self.gate.key()
        return f"{self.model_id}-w-{key}" if key else f"{self.model_id}-w"

    def embed_files(
        self,
        paths: Sequence[str | os.PathLike],
        progress: Callable[[int], None] | None = None,
        group_seconds: float = 600.0,
        on_error: Callable[[int, AudioError], None] | None = None,
    ) -> np.ndarray:
        """Files -> ``(N, D)``; decodes about ``group_seconds`` of audio at a time.

        ``progress(n)`` is called as files are done. A file that cannot be used raises its
        ``AudioError``, unless ``on_error(index, error)`` is given: then it is reported there,
        its row is NaN, and the other files go on.
        """
        rows: list[int] = []
        out: list[np.ndarray] = []
        failed: list[int] = []
        group: list[torch.Tensor] = []
        group_rows: list[int] = []
        total = 0

        def flush():
            out.append(self.embed_waves(group))
            rows.extend(group_rows)
            if progress:
                progress(len(group))

        for i, p in enumerate(paths):
            try:
                w = self.load(p)
            except AudioError as e:
                if on_error is None:
                    raise
                on_error(i, e)
                failed.append(i)
                if progress:
                    progress(1)
                continue
            group.append(w)
            group_rows.append(i)
            total += w.numel()
            if total >= group_seconds * self.sample_rate:
                flush()
                group, group_rows, total = [], [], 0
        if group:
            flush()
        n = len(rows) + len(failed)
        dim = out[0].shape[1] if out else (self.embed_dim or 0)
        if not failed:
            return np.concatenate(out) if out else np.zeros((0, dim), dtype=np.float32)
        result = np.full((n, dim), np.nan, dtype=np.float32)
        if out:
            result[rows] = np.concatenate(out)
        return result
