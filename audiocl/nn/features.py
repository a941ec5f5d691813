"""Log-mel filterbank features and SpecAugment, as ``nn.Module``s that run on the batch's device.

Front ends, waveforms ``(B, S)`` -> features ``(B, T, F)`` (``FRONTENDS``, chosen by
``features.frontend``): ``Fbank`` (audiocl's, Kaldi's with ``kaldi=True``) and
``SpeechBrainFbank`` (SpeechBrain's, for imported models). ``SpecAugment``: ``(B, T, F) -> (B, T, F)``.

Waveforms are float in [-1, 1]; they are scaled to the 16-bit integer range (``input_scale``)
before anything else, as Kaldi and the toolkits built on it expect, so ``dither`` is in
16-bit units (Kaldi's default of 1.0 means noise of one least-significant bit).

Frames follow Kaldi's ``snip_edges=True``: ``T = 1 + (S - win) // hop``, no padding.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..config import FeatureConfig

_FLT_EPSILON = 1.1920928955078125e-07  # Kaldi's log floor (std::numeric_limits<float>::epsilon())


def kaldi_mel(freq: Tensor) -> Tensor:
    """Kaldi / HTK mel scale: ``1127 * ln(1 + f / 700)``."""
    return 1127.0 * torch.log1p(freq / 700.0)


def mel_range(low_freq: float, high_freq: float, sample_rate: int) -> float:
    """The upper edge in Hz (``high_freq <= 0`` is relative to Nyquist, as in Kaldi), after
    checking that ``[low_freq, high]`` fits in ``[0, Nyquist]``."""
    nyquist = 0.5 * sample_rate
    high = high_freq if high_freq > 0.0 else nyquist + high_freq
    if not 0.0 <= low_freq < high <= nyquist:
        raise ValueError(f"mel range [{low_freq}, {high}] Hz does not fit in [0, {nyquist}] Hz")
    return high


def windowed_dft_basis(window: Tensor, n_fft: int) -> Tensor:
    """``(2F, L)`` float64, ``F = n_fft // 2 + 1``: the real and imaginary rows of the DFT of a
    frame of ``L <= n_fft`` samples times ``window`` (``(L,)``). As conv kernels they turn a
    waveform into its spectrum with no ``torch.fft`` (which has no portable ONNX form)."""
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    n = torch.arange(window.numel(), dtype=torch.float64)[None, :]
    angle = 2 * math.pi * k * n / n_fft
    return torch.cat([torch.cos(angle), -torch.sin(angle)]) * window.double()


def conv_power(x: Tensor, kernel: Tensor, hop: int) -> Tensor:
    """Power spectrum ``(B, T, F)`` of waveforms ``x (B, S)`` with ``kernel`` =
    ``windowed_dft_basis(...)`` as ``(2F, 1, L)`` float32, frames every ``hop`` samples."""
    re, im = nn.functional.conv1d(x.unsqueeze(1), kernel, stride=hop).chunk(2, dim=1)
    return (re.square() + im.square()).transpose(1, 2)


def mel_matrix(
    n_mels: int, n_fft: int, sample_rate: int, low_freq: float = 20.0, high_freq: float = 0.0
) -> Tensor:
    """Kaldi's triangular mel filters as a ``(n_fft // 2 + 1, n_mels)`` float64 matrix.

    Triangles are linear in mel, between ``low_freq`` and ``high_freq`` (<= 0 means relative to
    Nyquist, as in Kaldi). Like Kaldi, the Nyquist bin gets no weight.
    """
    high_freq = mel_range(low_freq, high_freq, sample_rate)
    n_bins = n_fft // 2
    fft_freqs = torch.arange(n_bins, dtype=torch.float64) * (sample_rate / n_fft)
    mel = kaldi_mel(fft_freqs)[:, None]  # (n_bins, 1)
    mel_low = kaldi_mel(torch.tensor(low_freq, dtype=torch.float64))
    mel_high = kaldi_mel(torch.tensor(high_freq, dtype=torch.float64))
    delta = (mel_high - mel_low) / (n_mels + 1)
    idx = torch.arange(n_mels, dtype=torch.float64)
    left = mel_low + idx * delta
    center = left + delta
    right = center + delta
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    weights = torch.where((mel > left) & (mel < right), torch.minimum(up, down), 0.0)
    return torch.cat([weights, weights.new_zeros(1, n_mels)])  # Nyquist row: zero


def povey_window(length: int) -> Tensor:
    """Kaldi's "povey" window: a Hann window (symmetric) raised to the power 0.85."""
    n = torch.arange(length, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * n / (length - 1))).pow(0.85)


def hamming_window(length: int) -> Tensor:
    """Symmetric Hamming window, as Kaldi computes it."""
    n = torch.arange(length, dtype=torch.float64)
    return 0.54 - 0.46 * torch.cos(2 * math.pi * n / (length - 1))


# name -> window function (plain registry; "default" is povey in Kaldi mode, else hamming)
WINDOWS = {"povey": povey_window, "hamming": hamming_window}


class FrontEnd(nn.Module):
    """What the front ends share: ``from_config`` passes the ``FeatureConfig`` fields named in
    ``config_fields`` (the constructor's argument names) and the sample rate; ``forward``
    checks the shape and runs ``_compute`` in float32 whatever autocast is on."""

    config_fields: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: FeatureConfig, sample_rate: int) -> FrontEnd:
        return cls(sample_rate=sample_rate, **{k: getattr(cfg, k) for k in cls.config_fields})

    def forward(self, wave: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``(B, S)`` -> ``(B, T, n_mels)`` float32. ``generator`` drives the dither, if any."""
        if wave.dim() != 2:
            raise ValueError(f"Fbank expects waveforms (B, S), got shape {tuple(wave.shape)}")
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return self._compute(wave.float(), generator)

    def _compute(self, wave: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError


class Fbank(FrontEnd):
    """Log-mel filterbank: ``(B, S)`` float waveforms in [-1, 1] -> ``(B, T, n_mels)``.

    Two modes share one pipeline (frame -> window -> |rfft|^2 -> mel -> log):

    - ``kaldi=True`` reproduces Kaldi's ``compute-fbank`` (and ``kaldi-native-fbank``) with
      ``snip_edges=True``: per-frame DC removal, per-frame pre-emphasis (the first sample is
      scaled by ``1 - coeff``), povey window (``window="hamming"``: WeSpeaker's setting), power
      spectrum, ``log(max(x, FLT_EPSILON))``.
    - ``kaldi=False`` (default, faster): pre-emphasis on the whole waveform, no DC removal,
      Hamming window; otherwise the same.

    ``dither`` (in 16-bit units) is added in training mode only. ``mean_norm`` subtracts each
    utterance's mean over time from every bin (do not use it when matching Kaldi).
    """

    config_fields = (
        *("n_mels", "win_ms", "hop_ms", "preemphasis", "dither", "kaldi", "mean_norm"),
        *("window", "n_fft", "low_freq", "high_freq"),
    )

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        preemphasis: float = 0.97,
        dither: float = 1.0,
        kaldi: bool = False,
        mean_norm: bool = True,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        input_scale: float = 32768.0,
        window: str = "default",
        n_fft: int = 0,
    ):
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.n_mels = int(n_mels)
        self.win_length = int(round(sample_rate * win_ms / 1000.0))
        self.hop_length = int(round(sample_rate * hop_ms / 1000.0))
        if self.win_length < 2 or self.hop_length < 1:
            raise ValueError(
                f"window {win_ms} ms / hop {hop_ms} ms are too short at {sample_rate} Hz"
            )
        # 0: Kaldi's round_to_power_of_two
        self.n_fft = int(n_fft) or 1 << (self.win_length - 1).bit_length()
        if self.n_fft < self.win_length:
            raise ValueError(f"n_fft {self.n_fft} is shorter than the window ({self.win_length})")
        self.preemphasis = float(preemphasis)
        self.dither = float(dither)
        self.kaldi = bool(kaldi)
        self.mean_norm = bool(mean_norm)
        self.input_scale = float(input_scale)
        if window == "default":
            window = "povey" if kaldi else "hamming"
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
        self.window_name = window
        self.register_buffer("window", WINDOWS[window](self.win_length).float(), persistent=False)
        mel = mel_matrix(self.n_mels, self.n_fft, self.sample_rate, low_freq, high_freq)
        self.register_buffer("mel", mel.float(), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples (at least 1: short input is zero-padded)."""
        return 1 + max(0, num_samples - self.win_length) // self.hop_length

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_mels={self.n_mels}, win={self.win_length}, "
            f"hop={self.hop_length}, n_fft={self.n_fft}, kaldi={self.kaldi}, "
            f"window={self.window_name}, "
            f"dither={self.dither}, mean_norm={self.mean_norm}"
        )

    def _compute(self, wave: Tensor, generator: torch.Generator | None) -> Tensor:
        x = wave * self.input_scale
        if x.shape[1] < self.win_length:
            x = nn.functional.pad(x, (0, self.win_length - x.shape[1]))
        if self.training and self.dither > 0:
            x = x + self.dither * torch.randn(
                x.shape, generator=generator, device=x.device, dtype=x.dtype
            )
        c = self.preemphasis
        if not self.kaldi and c != 0.0:
            x = torch.cat([x[:, :1] * (1.0 - c), x[:, 1:] - c * x[:, :-1]], dim=1)
        frames = x.unfold(1, self.win_length, self.hop_length)  # (B, T, W), a view
        if self.kaldi:
            frames = frames - frames.mean(dim=-1, keepdim=True)
            if c != 0.0:
                frames = torch.cat(
                    [frames[..., :1] * (1.0 - c), frames[..., 1:] - c * frames[..., :-1]], dim=-1
                )
        spec = torch.fft.rfft(frames * self.window, n=self.n_fft)  # (B, T, n_fft // 2 + 1)
        power = torch.view_as_real(spec).square().sum(-1)
        feats = torch.matmul(power, self.mel).clamp_min(_FLT_EPSILON).log()
        if self.mean_norm:
            feats = feats - feats.mean(dim=1, keepdim=True)
        return feats


def htk_mel(freq: Tensor) -> Tensor:
    """HTK mel scale in SpeechBrain's form: ``2595 * log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + freq / 700.0)


def speechbrain_mel_matrix(
    n_mels: int, n_fft: int, sample_rate: int, low_freq: float, high_freq: float
) -> Tensor:
    """SpeechBrain's triangular filters as a ``(n_fft // 2 + 1, n_mels)`` float64 matrix.

    Centres equally spaced in HTK mel; each triangle is symmetric in Hz with its left width
    on both sides (SpeechBrain's ``Filterbank``), over bins at ``linspace(0, sr // 2)``.
    """
    edges = torch.linspace(
        float(htk_mel(torch.tensor(float(low_freq)))),
        float(htk_mel(torch.tensor(float(high_freq)))),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz = 700.0 * (10.0 ** (edges / 2595.0) - 1.0)
    centre, width = hz[1:-1], hz[1:-1] - hz[:-2]
    freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1, dtype=torch.float64)
    return (1.0 - ((freqs[:, None] - centre) / width).abs()).clamp_min(0.0)


class SpeechBrainFbank(FrontEnd):
    """SpeechBrain's ``Fbank`` as its speaker models use it: ``(B, S)`` float waveforms in
    [-1, 1] -> ``(B, T, n_mels)`` with ``T = 1 + S // hop``.

    Centred STFT (``n_fft // 2`` zeros each side; periodic Hamming window centred in ``n_fft``),
    power spectrum, ``speechbrain_mel_matrix``, ``10 log10(max(x, 1e-10))`` floored 80 dB under
    each utterance's peak, then (``mean_norm``) SpeechBrain's sentence mean normalisation. No
    dither, no pre-emphasis. The DFT is one strided conv over the windowed basis, so the same
    module runs under PyTorch and in an exported ONNX graph.
    """

    config_fields = ("n_mels", "win_ms", "hop_ms", "n_fft", "low_freq", "high_freq", "mean_norm")
    top_db = 80.0
    amin = 1e-10

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_fft: int = 0,
        low_freq: float = 0.0,
        high_freq: float = 0.0,
        mean_norm: bool = True,
    ):
        super().__init__()
        self.sample_rate, self.n_mels, self.mean_norm = int(sample_rate), int(n_mels), mean_norm
        self.win_length = int(round(sample_rate * win_ms / 1000.0))
        self.hop_length = int(round(sample_rate * hop_ms / 1000.0))
        self.n_fft = int(n_fft) or self.win_length  # SpeechBrain: n_fft 400 = 25 ms at 16 kHz
        if self.hop_length < 1 or not 2 <= self.win_length <= self.n_fft:
            raise ValueError(
                f"window {self.win_length} / hop {self.hop_length} / n_fft {self.n_fft} samples "
                "do not make an STFT"
            )
        high = mel_range(low_freq, high_freq, sample_rate)
        n = torch.arange(self.win_length, dtype=torch.float64)
        window = torch.zeros(self.n_fft, dtype=torch.float64)
        left = (self.n_fft - self.win_length) // 2
        window[left : left + self.win_length] = 0.54 - 0.46 * torch.cos(
            2 * math.pi * n / self.win_length
        )
        basis = windowed_dft_basis(window, self.n_fft)  # (2F, n_fft)
        self.register_buffer("kernel", basis.float().unsqueeze(1), persistent=False)
        mel = speechbrain_mel_matrix(n_mels, self.n_fft, sample_rate, low_freq, high)
        self.register_buffer("mel", mel.float(), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_mels={self.n_mels}, win={self.win_length}, "
            f"hop={self.hop_length}, n_fft={self.n_fft}, mean_norm={self.mean_norm}"
        )

    def _compute(self, wave: Tensor, generator: torch.Generator | None) -> Tensor:
        half = self.n_fft // 2
        power = conv_power(nn.functional.pad(wave, (half, half)), self.kernel, self.hop_length)
        db = 10.0 * torch.log10(torch.matmul(power, self.mel).clamp_min(self.amin))
        db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - self.top_db)
        if self.mean_norm:
            db = db - db.mean(dim=1, keepdim=True)
        return db


def slaney_mel(freq: Tensor) -> Tensor:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    linear = freq / (200.0 / 3.0)
    log = 15.0 + torch.log(freq.clamp_min(1000.0) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(freq >= 1000.0, log, linear)


def slaney_mel_to_hz(mel: Tensor) -> Tensor:
    linear = mel * (200.0 / 3.0)
    log = 1000.0 * torch.exp((math.log(6.4) / 27.0) * (mel - 15.0))
    return torch.where(mel >= 15.0, log, linear)


def slaney_mel_matrix(n_mels: int, n_fft: int, sample_rate: int) -> Tensor:
    """librosa's default mel filters (``librosa.filters.mel``: Slaney scale, Slaney area
    normalisation, 0 Hz to Nyquist) as a ``(n_fft // 2 + 1, n_mels)`` float64 matrix."""
    freqs = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    top = slaney_mel(torch.tensor(sample_rate / 2.0, dtype=torch.float64))
    edges = slaney_mel_to_hz(torch.linspace(0.0, float(top), n_mels + 2, dtype=torch.float64))
    width = edges.diff()
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    weights = torch.minimum(lower, upper).clamp_min(0.0)
    weights = weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T.contiguous()


# Resemblyzer's GE2E encoder reads partial utterances of this many frames (1.6 s)
PARTIAL_FRAMES = 160


class ResemblyzerMel(FrontEnd):
    """Resemblyzer's front end for its GE2E encoder, as ``VoiceEncoder.embed_utterance`` runs
    it: ``(B, S)`` float waveforms in [-1, 1] -> ``(B, P * 160, n_mels)``, ``P`` partial
    utterances of 160 frames laid end to end (``audiocl.nn.ge2e`` embeds each).

    Each waveform is first raised to -30 dBFS when quieter (``preprocess_wav``'s volume
    normalisation; its webrtcvad trimming of long pauses is left to audiocl's ``--vad``). The
    partials start every ``round(sample_rate / 1.3 / hop)`` frames; the last one is kept when it
    covers at least 75% of its window, and the waveform is zero-padded to its end. The features
    are librosa's ``melspectrogram`` defaults: a centred STFT (zero-padded, periodic Hann window
    of ``n_fft`` = the window), power, Slaney mel filters; no log. The DFT is one strided conv
    (``windowed_dft_basis``), as in the other front ends.
    """

    config_fields = ("n_mels", "win_ms", "hop_ms")
    target_dbfs = -30.0
    rate = 1.3  # partial utterances per second
    min_coverage = 0.75

    def __init__(
        self, sample_rate: int = 16000, n_mels: int = 40, win_ms: float = 25.0, hop_ms: float = 10.0
    ):
        super().__init__()
        self.sample_rate, self.n_mels = int(sample_rate), int(n_mels)
        self.n_fft = int(sample_rate * win_ms / 1000)  # Resemblyzer's int(), not round()
        self.hop_length = int(sample_rate * hop_ms / 1000)
        self.frame_step = int(round(sample_rate / self.rate / self.hop_length))
        if not 0 < self.frame_step <= PARTIAL_FRAMES or self.n_fft < 2:
            raise ValueError(
                f"window {self.n_fft} / hop {self.hop_length} samples do not make GE2E partials"
            )
        n = torch.arange(self.n_fft, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / self.n_fft)  # periodic Hann
        basis = windowed_dft_basis(window, self.n_fft)
        self.register_buffer("kernel", basis.float().unsqueeze(1), persistent=False)
        mel = slaney_mel_matrix(n_mels, self.n_fft, sample_rate)
        self.register_buffer("mel", mel.float(), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_mels={self.n_mels}, n_fft={self.n_fft}, "
            f"hop={self.hop_length}, partials={PARTIAL_FRAMES} frames every {self.frame_step}"
        )

    def partial_starts(self, num_samples: int) -> list[int]:
        """First frame of each partial utterance of a ``num_samples`` waveform (Resemblyzer's
        ``compute_partial_slices``)."""
        n_frames = -(-(num_samples + 1) // self.hop_length)
        steps = max(1, n_frames - PARTIAL_FRAMES + self.frame_step + 1)
        starts = list(range(0, steps, self.frame_step))
        span = PARTIAL_FRAMES * self.hop_length
        coverage = (num_samples - starts[-1] * self.hop_length) / span
        if coverage < self.min_coverage and len(starts) > 1:
            starts.pop()
        return starts

    def louder(self, wave: Tensor) -> Tensor:
        """``(B, S)`` with each row raised to ``target_dbfs`` when quieter (never lowered)."""
        rms = wave.double().square().mean(dim=1, keepdim=True).sqrt()
        gain = (10.0 ** (self.target_dbfs / 20.0)) / rms.clamp_min(1e-12)
        return wave * torch.where((gain > 1.0) & (rms > 0), gain, 1.0).float()

    def power_mel(self, wave: Tensor) -> Tensor:
        """``(B, S)`` -> ``(B, 1 + S // hop, n_mels)``: librosa's centred power mel."""
        half = self.n_fft // 2
        power = conv_power(nn.functional.pad(wave, (half, half)), self.kernel, self.hop_length)
        return torch.matmul(power, self.mel)

    def _compute(self, wave: Tensor, generator: torch.Generator | None) -> Tensor:
        wave = self.louder(wave)
        starts = self.partial_starts(wave.shape[1])
        end = (starts[-1] + PARTIAL_FRAMES) * self.hop_length
        feats = self.power_mel(nn.functional.pad(wave, (0, max(0, end - wave.shape[1]))))
        return torch.cat([feats[:, s : s + PARTIAL_FRAMES] for s in starts], dim=1)


# features.frontend -> class (plain registry)
FRONTENDS: dict[str, type[FrontEnd]] = {
    "fbank": Fbank,
    "speechbrain": SpeechBrainFbank,
    "resemblyzer": ResemblyzerMel,
}


def build_frontend(cfg: FeatureConfig, sample_rate: int) -> FrontEnd:
    """The front end ``cfg.frontend`` names, ``(B, S) -> (B, T, n_mels)``."""
    return FRONTENDS[cfg.frontend].from_config(cfg, sample_rate)


class SpecAugment(nn.Module):
    """Time and frequency masks, ``(B, T, F) -> (B, T, F)``, in training mode only.

    Each example is masked with probability ``p``: ``time_masks`` bands of up to
    ``time_mask_max`` frames and ``freq_masks`` bands of up to ``freq_mask_max`` bins are set
    to 0 (the mean after mean normalisation). Vectorised over the batch. Randomness comes
    from ``generator`` when given, else from torch's global RNG.
    """

    def __init__(
        self,
        p: float = 0.5,
        time_masks: int = 1,
        time_mask_max: int = 10,
        freq_masks: int = 1,
        freq_mask_max: int = 8,
    ):
        super().__init__()
        self.p = float(p)
        self.time_masks = int(time_masks)
        self.time_mask_max = int(time_mask_max)
        self.freq_masks = int(freq_masks)
        self.freq_mask_max = int(freq_mask_max)

    @classmethod
    def from_config(cls, cfg: FeatureConfig) -> SpecAugment:
        return cls(
            p=cfg.specaug_p,
            time_masks=cfg.time_masks,
            time_mask_max=cfg.time_mask_max,
            freq_masks=cfg.freq_masks,
            freq_mask_max=cfg.freq_mask_max,
        )

    def extra_repr(self) -> str:
        return (
            f"p={self.p}, time_masks={self.time_masks}x{self.time_mask_max}, "
            f"freq_masks={self.freq_masks}x{self.freq_mask_max}"
        )

    @staticmethod
    def _bands(batch: int, length: int, count: int, max_width: int, generator, device) -> Tensor:
        """``(batch, length)`` bool: union of ``count`` random bands of width 0..max_width."""
        r = torch.rand(2, batch, count, 1, generator=generator, device=device)
        width = (r[0] * (min(max_width, length) + 1)).floor()
        start = (r[1] * (length - width + 1)).floor()
        pos = torch.arange(length, device=device, dtype=r.dtype)
        return ((pos >= start) & (pos < start + width)).any(dim=1)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if not self.training or self.p <= 0.0:
            return x
        batch, frames, bins = x.shape
        device = generator.device if generator is not None else x.device
        mask = torch.zeros(batch, frames, bins, dtype=torch.bool, device=device)
        if self.time_masks > 0 and self.time_mask_max > 0:
            mask |= self._bands(
                batch, frames, self.time_masks, self.time_mask_max, generator, device
            )[:, :, None]
        if self.freq_masks > 0 and self.freq_mask_max > 0:
            mask |= self._bands(
                batch, bins, self.freq_masks, self.freq_mask_max, generator, device
            )[:, None, :]
        chosen = torch.rand(batch, generator=generator, device=device) < self.p
        mask &= chosen[:, None, None]
        return x.masked_fill(mask.to(x.device), 0.0)
