"""Waveform augmentation: noise, babble, reverberation, speed, lossy codec, gain, crops.

Every augmentation is a callable object ``aug(wave (B, S), generator) -> (B, S)`` that treats each
example independently with probability ``p``; only the chosen rows are computed. All work is
batched torch on the waveform's device (FFT convolution through ``torch.fft.rfft``); random
numbers come only from the ``torch.Generator`` passed in (drawn on the generator's device and
moved), so two calls with different generators give two different views of one utterance and the
same generator state gives the same batch. Inputs are never modified in place.

``RandomCrop`` is the only augmentation that changes ``S``. ``build_augment`` makes the chain of a
training config: speed -> reverb -> babble -> noise -> codec -> gain. ``Codec`` alone runs on
the CPU, one example at a time (an MP3 encoder is not a tensor op).

Speed (``benchmarks/bench_augment.py``, one CPU core, batch 64 x 2 s at 16 kHz, every augmentation
applied to every example): the full chain crop + speed + reverb + noise + gain runs at about
2000-2600x real time (real noise/RIR files or simulated), against a target of 300x; per
augmentation 2000-9000x (babble ~1900x, excluding the cost of reading the other utterances).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..config import AugmentConfig
from ..errors import ConfigError, DataError

# Power-spectrum slope range of simulated noise: 0 = white, 1 = pink, 2 = brown (red).
NOISE_SLOPES = (0.0, 2.0)
# Direct-to-reverberant energy ratio range of simulated RIRs, dB.
DRR_DB = (-3.0, 12.0)
# RIRs (files and simulated) are cut this many seconds after the direct path.
RIR_SECONDS = 0.5

BabbleSource = Callable[[int, int, torch.Generator], torch.Tensor]


# ----------------------------------------------------------------------------- random helpers


def _rand(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _randn(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * _rand(n, generator, device)


def _randint(low: int, high: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` integers in ``[low, high)`` on the CPU (used for indexing decisions)."""
    return torch.randint(low, high, (n,), generator=generator, device=generator.device).cpu()


def _rms(x: torch.Tensor) -> torch.Tensor:
    """Root mean square per row: ``(B, S) -> (B,)``."""
    return x.pow(2).mean(-1).sqrt()


def fast_fft_len(n: int) -> int:
    """Smallest ``2^a``, ``3 * 2^a`` or ``5 * 2^a`` that is ``>= n``: FFT sizes that are fast
    (measured on CPU: 32768 beats 32000 by 1.5x, 40960 beats 40000 and 40500)."""
    best = []
    for m in (1, 3, 5):
        k = max(0, -(-n // m) - 1).bit_length()
        best.append(m << k)
    return min(best)


def _mix_at_snr(
    wave: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor, eps: float = 1e-10
) -> torch.Tensor:
    """``wave + g * noise`` with ``g`` per row such that ``10 log10(P_wave / P_(g noise)) = snr_db``."""
    ps = wave.pow(2).mean(-1)
    pn = noise.pow(2).mean(-1).clamp_min(eps)
    gain = torch.sqrt(ps / (pn * torch.pow(10.0, snr_db / 10.0)))
    return wave + gain[:, None] * noise


def _check_batch(wave: torch.Tensor) -> None:
    if wave.dim() != 2:
        raise ValueError(
            f"augmentations expect a waveform batch (B, S), got shape {tuple(wave.shape)}"
        )


def _pair(values: Sequence[float], name: str) -> tuple[float, float]:
    if len(values) != 2 or values[0] > values[1]:
        raise ConfigError(f"{name}: expected [low, high] with low <= high, got {list(values)}")
    return float(values[0]), float(values[1])


# ----------------------------------------------------------------------------- banks of files


_BANKS: dict[tuple, object] = {}


def _audio_files(folder: Path, what: str, part: str = "all") -> list[Path]:
    """Audio files under ``folder``; ``part`` "train" or "heldout" keeps that part of
    ``noise_split.split_names`` (held-out files corrupt the noisy dev set, never training)."""
    from ..io.audio import READ_EXTENSIONS

    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in READ_EXTENSIONS)
    if not files:
        raise DataError(
            f"{folder}: no audio files ({', '.join(READ_EXTENSIONS)}) in the {what} folder"
        )
    if part == "all":
        return files
    from .noise_split import split_names

    split = split_names([p.relative_to(folder).as_posix() for p in files])
    keep = set(getattr(split, part))
    return [p for p in files if p.relative_to(folder).as_posix() in keep]


def load_noise_bank(
    folder: str | Path, sample_rate: int, part: str = "all"
) -> tuple[torch.Tensor, torch.Tensor]:
    """All noise files of ``folder`` (recursively) at ``sample_rate``, concatenated into one tensor.

    Returns ``(samples (N,), spans (F, 2))`` with ``spans[i] = (offset, length)`` of file ``i``.
    Loaded once per process and folder (cached in memory).
    """
    from ..io.audio import load

    folder = Path(folder).expanduser().resolve()
    key = ("noise", str(folder), sample_rate, part)
    if key not in _BANKS:
        waves = [load(p, sample_rate) for p in _audio_files(folder, "noise", part)]
        lengths = torch.tensor([w.numel() for w in waves], dtype=torch.int64)
        offsets = torch.cumsum(lengths, 0) - lengths
        _BANKS[key] = (torch.cat(waves), torch.stack([offsets, lengths], 1))
    return _BANKS[key]


def prepare_rir(
    rir: torch.Tensor, sample_rate: int, max_seconds: float = RIR_SECONDS
) -> torch.Tensor:
    """Align an RIR ``(L,)`` to its direct path (the largest peak becomes sample 0 with value 1),
    cut it ``max_seconds`` after the direct path and fade out its last 10 %."""
    peak = int(rir.abs().argmax())
    h = rir[peak : peak + max(1, int(round(max_seconds * sample_rate)))]
    h = h / h[0]
    fade = max(1, h.numel() // 10)
    ramp = torch.linspace(1.0, 0.0, fade + 1, dtype=h.dtype)[1:]
    return torch.cat([h[:-fade], h[-fade:] * ramp]) if h.numel() > fade else h


def load_rir_bank(
    folder: str | Path, sample_rate: int, max_seconds: float = RIR_SECONDS, part: str = "all"
) -> torch.Tensor:
    """All RIR files of ``folder`` prepared by ``prepare_rir``, zero-padded into ``(R, L)``.
    Loaded once per process and folder (cached in memory)."""
    from ..io.audio import load

    folder = Path(folder).expanduser().resolve()
    key = ("rir", str(folder), sample_rate, max_seconds, part)
    if key not in _BANKS:
        rirs = []
        for p in _audio_files(folder, "RIR", part):
            w = load(p, sample_rate)
            if not w.abs().max() > 0:
                raise DataError(f"{p}: RIR is silent")
            rirs.append(prepare_rir(w, sample_rate, max_seconds))
        length = max(r.numel() for r in rirs)
        _BANKS[key] = torch.stack(
            [torch.nn.functional.pad(r, (0, length - r.numel())) for r in rirs]
        )
    return _BANKS[key]


# ----------------------------------------------------------------------------- augmentations


class Augmentation:
    """Base class: ``__call__`` picks the rows to change (each with probability ``p``) and calls
    ``apply`` on those rows only. Subclasses implement ``apply(wave (b, S), generator) -> (b, S)``."""

    p: float = 1.0

    def __call__(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(wave)
        b = wave.shape[0]
        if self.p <= 0 or b == 0:
            return wave
        chosen = (torch.rand(b, generator=generator, device=generator.device) < self.p).cpu()
        idx = chosen.nonzero().squeeze(1)
        if idx.numel() == 0:
            return wave
        if idx.numel() == b:
            return self.apply(wave, generator)
        idx = idx.to(wave.device)
        out = wave.clone()
        out[idx] = self.apply(wave[idx], generator)
        return out

    def apply(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        shown = {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_")
            and isinstance(v, (int, float, str, tuple))
            and not _has_tensor(v)
        }
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in shown.items())})"


def _has_tensor(v) -> bool:
    return isinstance(v, torch.Tensor) or (isinstance(v, tuple) and any(map(_has_tensor, v)))


class Gain(Augmentation):
    """Scale each chosen example by a gain drawn uniformly in ``gain_db`` (dB)."""

    def __init__(self, gain_db: Sequence[float] = (-6.0, 6.0), p: float = 0.5):
        self.gain_db, self.p = _pair(gain_db, "gain_db"), p

    def apply(self, wave, generator):
        db = _uniform(wave.shape[0], *self.gain_db, generator, wave.device)
        return wave * torch.pow(10.0, db / 20.0)[:, None].to(wave.dtype)


# libsndfile refuses a compression level of 1.0 for MP3, and MPEG audio has these rates only
MAX_CODEC_LEVEL = 0.99
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


class Codec(Augmentation):
    """An MP3 round trip (libsndfile's LAME encoder and mpg123 decoder, through soundfile) of
    each chosen example at a VBR compression level drawn uniformly in ``levels`` (0 best .. 0.99
    smallest; 56 .. 18 kbit/s for 16 kHz speech): the band limit near 7.5 kHz and the smeared
    highs of Common Voice or browser recordings. The decoded signal is aligned with the input
    (no encoder delay left) and keeps its length. About 12 ms of one core per 2 s example."""

    def __init__(self, levels: Sequence[float] = (0.3, 0.95), p: float = 0.5, sample_rate=16000):
        import soundfile as sf

        self.levels, self.p, self.sample_rate = _pair(levels, "codec_levels"), p, sample_rate
        if self.levels[0] < 0.0 or self.levels[1] > MAX_CODEC_LEVEL:  # _pair checked the order
            raise ConfigError(f"augment.codec_levels must lie in [0, {MAX_CODEC_LEVEL}]")
        if sample_rate not in MP3_RATES:
            raise ConfigError(f"augment.codec_p: MP3 has no {sample_rate} Hz mode")
        if "MP3" not in sf.available_formats():
            raise ConfigError(
                "augment.codec_p > 0 needs MP3 support in libsndfile (soundfile >= 0.12 with "
                "libsndfile >= 1.1)"
            )

    def apply(self, wave, generator):
        import soundfile as sf

        levels = _uniform(wave.shape[0], *self.levels, generator, wave.device).tolist()
        rows = wave.detach().cpu().float().clamp(-1.0, 1.0).numpy()
        out = torch.empty_like(wave, device="cpu")
        for i, (row, level) in enumerate(zip(rows, levels, strict=True)):
            buf = io.BytesIO()
            sf.write(buf, row, self.sample_rate, format="MP3", compression_level=level)
            buf.seek(0)
            decoded = torch.from_numpy(sf.read(buf, dtype="float32")[0][: len(row)])
            out[i, : len(decoded)] = decoded
            out[i, len(decoded) :] = 0.0
        return out.to(device=wave.device, dtype=wave.dtype)


def coloured_noise(
    n: int,
    num_samples: int,
    generator: torch.Generator,
    slopes: Sequence[float] = NOISE_SLOPES,
    sample_rate: int = 16000,
    device=None,
) -> torch.Tensor:
    """``(n, num_samples)`` Gaussian noise with power spectrum ``~ 1 / f^a``, ``a`` drawn per row
    uniformly in ``slopes`` (0 white, 1 pink, 2 brown); synthesised in the frequency domain
    (one inverse FFT), flat below 20 Hz, zero mean, unit variance."""
    device = device if device is not None else generator.device
    nfft = fast_fft_len(num_samples)
    bins = nfft // 2 + 1
    a = _uniform(n, slopes[0], slopes[1], generator, device)
    spec = torch.complex(*_randn((2, n, bins), generator, device).unbind(0))
    f = torch.linspace(0.0, sample_rate / 2, bins, device=device).clamp_min(20.0)
    spec = spec * torch.pow(f[None, :] / 1000.0, -a[:, None] / 2)
    spec[:, 0] = 0
    x = torch.fft.irfft(spec, nfft)[:, :num_samples]
    x = x - x.mean(-1, keepdim=True)
    return x / _rms(x).clamp_min(1e-12)[:, None]


class AddNoise(Augmentation):
    """Additive noise at an SNR drawn uniformly in ``snr_db``.

    ``bank``: ``(samples (N,), spans (F, 2))`` from ``load_noise_bank``; each chosen example gets a
    random segment of a random file (uniform over files; a file shorter than the batch's ``S`` is
    repeated). Without a bank: coloured noise with a random spectral slope in ``slopes``.
    """

    def __init__(
        self,
        bank: tuple[torch.Tensor, torch.Tensor] | None = None,
        snr_db: Sequence[float] = (0.0, 15.0),
        p: float = 0.6,
        slopes: Sequence[float] = NOISE_SLOPES,
        sample_rate: int = 16000,
    ):
        self.bank, self.p = bank, p
        self.snr_db, self.slopes = _pair(snr_db, "snr_db"), _pair(slopes, "slopes")
        self.sample_rate = sample_rate

    @classmethod
    def from_folder(
        cls, folder, sample_rate: int, snr_db=(0.0, 15.0), p: float = 0.6, part: str = "all"
    ) -> AddNoise:
        bank = load_noise_bank(folder, sample_rate, part)
        return cls(bank, snr_db, p, sample_rate=sample_rate)

    def segments(self, n: int, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """``(n, num_samples)`` random noise segments from the bank (CPU)."""
        samples, spans = self.bank
        files = _randint(0, spans.shape[0], n, generator)
        pos = _rand(n, generator, "cpu").tolist()
        out = torch.empty(n, num_samples, dtype=samples.dtype)
        for i, f in enumerate(files.tolist()):
            off, length = spans[f].tolist()
            if length >= num_samples:
                start = off + int(pos[i] * (length - num_samples + 1))
                out[i] = samples[start : start + num_samples]
            else:
                src = samples[off : off + length]
                rep = src.repeat(num_samples // length + 2)
                start = int(pos[i] * length)
                out[i] = rep[start : start + num_samples]
        return out

    def apply(self, wave, generator):
        b, s = wave.shape
        if self.bank is None:
            noise = coloured_noise(b, s, generator, self.slopes, self.sample_rate, wave.device)
        else:
            noise = self.segments(b, s, generator).to(wave.device)
        snr = _uniform(b, *self.snr_db, generator, wave.device)
        return _mix_at_snr(wave, noise.to(wave.dtype), snr)


class Babble(Augmentation):
    """Babble: the sum of ``speakers`` (uniform integer in the range, inclusive) other utterances,
    each scaled to unit RMS, added at an SNR drawn in ``snr_db``.

    ``source(n, num_samples, generator) -> (n, num_samples)`` supplies the other utterances (the
    training data provides crops of random utterances of the corpus).
    """

    def __init__(
        self,
        source: BabbleSource,
        speakers: Sequence[int] = (3, 6),
        snr_db: Sequence[float] = (13.0, 20.0),
        p: float = 0.0,
    ):
        lo, hi = _pair(speakers, "babble_speakers")
        if lo < 1:
            raise ConfigError(f"babble_speakers must be >= 1, got {list(speakers)}")
        self.source, self.speakers, self.p = source, (int(lo), int(hi)), p
        self.snr_db = _pair(snr_db, "babble_snr_db")

    def apply(self, wave, generator):
        b, s = wave.shape
        counts = _randint(self.speakers[0], self.speakers[1] + 1, b, generator)
        others = self.source(int(counts.sum()), s, generator).to(wave.device, wave.dtype)
        if others.shape != (int(counts.sum()), s):
            raise ValueError(
                f"babble source returned {tuple(others.shape)}, expected {(int(counts.sum()), s)}"
            )
        others = others / _rms(others).clamp_min(1e-8)[:, None]
        group = torch.repeat_interleave(torch.arange(b), counts).to(wave.device)
        babble = torch.zeros_like(wave).index_add_(0, group, others)
        snr = _uniform(b, *self.snr_db, generator, wave.device)
        return _mix_at_snr(wave, babble, snr)


def simulate_rir(
    n: int,
    rt60: torch.Tensor,
    sample_rate: int,
    generator: torch.Generator,
    max_seconds: float = RIR_SECONDS,
    drr_db: Sequence[float] = DRR_DB,
    device=None,
) -> torch.Tensor:
    """``(n, L)`` synthetic room impulse responses: a unit direct impulse at sample 0, then after a
    1-5 ms gap a tail of Gaussian noise whose energy decays by 60 dB in ``rt60 (n,)`` seconds,
    scaled to a direct-to-reverberant ratio drawn uniformly in ``drr_db``.
    ``L = round(max_seconds * sample_rate)`` (or less when every RT60 is shorter)."""
    device = device if device is not None else generator.device
    rt60 = rt60.to(device)
    length = int(round(min(max_seconds, float(rt60.max()) * 1.2) * sample_rate))
    length = max(length, 2)
    t = torch.arange(length, device=device) / sample_rate
    gap = _uniform(n, 0.001, 0.005, generator, device)
    drr = _uniform(n, drr_db[0], drr_db[1], generator, device)
    tail = _randn((n, length), generator, device)
    tail = tail * torch.exp(-3.0 * math.log(10.0) * t[None, :] / rt60[:, None])
    tail = tail * (t[None, :] >= gap[:, None])
    energy = tail.pow(2).sum(-1).clamp_min(1e-12)
    tail = tail * torch.sqrt(torch.pow(10.0, -drr / 10.0) / energy)[:, None]
    tail[:, 0] = 1.0
    return tail


class Reverb(Augmentation):
    """Reverberation by FFT convolution with an RIR: a random one of ``rirs (R, L)`` (from
    ``load_rir_bank``: aligned to the direct path) or, without a bank, a simulated one with RT60
    drawn uniformly in ``rt60`` seconds. The output stays aligned to the direct path (same
    timing as the input) and keeps each example's RMS level."""

    def __init__(
        self,
        rirs: torch.Tensor | None = None,
        rt60: Sequence[float] = (0.2, 0.8),
        p: float = 0.4,
        sample_rate: int = 16000,
        max_seconds: float = RIR_SECONDS,
    ):
        self.rirs, self.p = rirs, p
        self.rt60 = _pair(rt60, "rt60")
        if self.rt60[0] <= 0:
            raise ConfigError(f"rt60 must be > 0 seconds, got {list(rt60)}")
        self.sample_rate, self.max_seconds = sample_rate, max_seconds
        self._spectra: dict[tuple, torch.Tensor] = {}

    @classmethod
    def from_folder(
        cls,
        folder,
        sample_rate: int,
        p: float = 0.4,
        max_seconds: float = RIR_SECONDS,
        part: str = "all",
    ) -> Reverb:
        bank = load_rir_bank(folder, sample_rate, max_seconds, part)
        return cls(bank, p=p, sample_rate=sample_rate)

    def _bank_spectra(self, nfft: int, device) -> torch.Tensor:
        key = (nfft, str(device))
        if key not in self._spectra:
            self._spectra[key] = torch.fft.rfft(self.rirs.to(device), nfft)
        return self._spectra[key]

    def apply(self, wave, generator):
        b, s = wave.shape
        if self.rirs is None:
            rt60 = _uniform(b, *self.rt60, generator, wave.device)
            h = simulate_rir(
                b, rt60, self.sample_rate, generator, self.max_seconds, device=wave.device
            )
            nfft = fast_fft_len(s + h.shape[1] - 1)
            spec_h = torch.fft.rfft(h.to(wave.dtype), nfft)
        else:
            nfft = fast_fft_len(s + self.rirs.shape[1] - 1)
            pick = _randint(0, self.rirs.shape[0], b, generator).to(wave.device)
            spec_h = self._bank_spectra(nfft, wave.device)[pick]
        y = torch.fft.irfft(torch.fft.rfft(wave, nfft) * spec_h, nfft)[:, :s]
        scale = _rms(wave) / _rms(y).clamp_min(1e-10)
        return y * scale[:, None]


def _wrap_to(x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Repeat rows ``(B, s)`` end to end and cut to ``(B, num_samples)``."""
    s = x.shape[-1]
    if s >= num_samples:
        return x[..., :num_samples]
    return x.repeat(1, num_samples // s + 1)[..., :num_samples]


class SpeedPerturb(Augmentation):
    """Speed perturbation (tempo and pitch together, like ``sox speed``) by resampling with
    ``audiocl.io.audio.resample(w, round(sr * speed), sr)``; the factor is chosen per example from
    ``speeds``, and examples with the same factor are resampled together in one batched call.
    Slower audio (factor < 1) is longer: a random span of the input that yields exactly ``S``
    samples is resampled; faster audio is shorter and is wrap-padded back to ``S``."""

    def __init__(
        self, speeds: Sequence[float] = (0.9, 1.1), p: float = 0.3, sample_rate: int = 16000
    ):
        if not speeds or min(speeds) <= 0:
            raise ConfigError(f"speeds must be positive factors, got {list(speeds)}")
        self.speeds, self.p, self.sample_rate = tuple(float(s) for s in speeds), p, sample_rate

    def draw(self, b: int, generator: torch.Generator) -> torch.Tensor:
        """``(b,)`` speed index per example: ``-1`` (unchanged, probability ``1 - p``) or an
        index into ``speeds``, uniform."""
        chosen = torch.rand(b, generator=generator, device=generator.device).cpu() < self.p
        return torch.where(chosen, _randint(0, len(self.speeds), b, generator), -1)

    def apply(self, wave, generator):
        return self.perturb(
            wave, _randint(0, len(self.speeds), wave.shape[0], generator), generator
        )

    def perturb(
        self, wave: torch.Tensor, choice: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """``wave (b, S)`` with row ``i`` at speed ``speeds[choice[i]]`` (``-1``: unchanged)."""
        from ..io.audio import resample

        b, s = wave.shape
        pos = _rand(b, generator, "cpu")
        out = wave.clone()
        for k, speed in enumerate(self.speeds):
            rows = (choice == k).nonzero().squeeze(1)
            orig = int(round(self.sample_rate * speed))
            if rows.numel() == 0 or orig == self.sample_rate:
                continue
            x = wave[rows.to(wave.device)]
            need = min(s, math.ceil(s * orig / self.sample_rate) + 1)
            if need < s:  # slower: only a random span of the input is needed
                starts = (pos[rows] * (s - need + 1)).long().tolist()
                x = torch.stack([x[i, st : st + need] for i, st in enumerate(starts)])
            y = resample(x, orig, self.sample_rate)
            out[rows.to(wave.device)] = _wrap_to(y, s)
        return out


def random_crop(wave: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``(num_samples,)`` span of ``wave (S,)``. Audio shorter than ``num_samples`` is
    wrap-padded: repeated end to end from a random starting point."""
    s = wave.shape[-1]
    if s == 0:
        raise ValueError("cannot crop an empty waveform")
    if s >= num_samples:
        start = int(_randint(0, s - num_samples + 1, 1, generator))
        return wave[start : start + num_samples]
    start = int(_randint(0, s, 1, generator))
    return wave.roll(-start).repeat(num_samples // s + 1)[:num_samples]


class RandomCrop:
    """``(B, S) -> (B, num_samples)``: an independent random span per example (wrap-padding
    when ``S < num_samples``). Applies to every example (it changes the shape)."""

    def __init__(self, num_samples: int):
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = int(num_samples)

    def __call__(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(wave)
        b, s = wave.shape
        n = self.num_samples
        if s < n:
            return torch.stack([random_crop(w, n, generator) for w in wave]) if b else wave[:, :0]
        starts = _randint(0, s - n + 1, b, generator).to(wave.device)
        idx = starts[:, None] + torch.arange(n, device=wave.device)[None, :]
        return torch.gather(wave, 1, idx)

    def __repr__(self) -> str:
        return f"RandomCrop(num_samples={self.num_samples})"


class Compose:
    """Apply augmentations in order with one generator. An empty ``Compose`` is the identity."""

    def __init__(
        self, augmentations: Sequence[Callable[[torch.Tensor, torch.Generator], torch.Tensor]]
    ):
        self.augmentations = list(augmentations)

    def __call__(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for aug in self.augmentations:
            wave = aug(wave, generator)
        return wave

    def __len__(self) -> int:
        return len(self.augmentations)

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(map(repr, self.augmentations)) + "])"


def build_augment(
    cfg: AugmentConfig,
    root: str | Path,
    sample_rate: int,
    babble_source: BabbleSource | None = None,
) -> Compose:
    """The augmentation chain of a config: speed -> reverb -> babble -> noise -> codec -> gain.

    ``cfg.noise_dir`` / ``cfg.rir_dir`` are relative to ``root`` unless absolute; empty means
    simulated (coloured noise, synthetic RIRs). Augmentations with probability 0 are left out;
    ``cfg.enabled = False`` gives the identity. Babble needs ``babble_source`` when
    ``cfg.babble_p > 0``.
    """
    if not cfg.enabled:
        return Compose([])

    def resolve(path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(root).expanduser() / p

    augs: list = []
    if cfg.speed_p > 0 and not cfg.speed_as_new_speaker:  # else the batch maker applies it
        augs.append(SpeedPerturb(cfg.speeds, cfg.speed_p, sample_rate))
    if cfg.reverb_p > 0:
        if cfg.rir_dir:
            augs.append(
                Reverb.from_folder(resolve(cfg.rir_dir), sample_rate, cfg.reverb_p, part=cfg.files)
            )
        else:
            augs.append(Reverb(None, cfg.rt60, cfg.reverb_p, sample_rate))
    if cfg.babble_p > 0:
        if babble_source is None:
            raise ConfigError("augment.babble_p > 0 needs a source of other utterances for babble")
        augs.append(Babble(babble_source, cfg.babble_speakers, cfg.babble_snr_db, cfg.babble_p))
    if cfg.noise_p > 0:
        if cfg.noise_dir:
            augs.append(
                AddNoise.from_folder(
                    resolve(cfg.noise_dir), sample_rate, cfg.snr_db, cfg.noise_p, part=cfg.files
                )
            )
        else:
            augs.append(AddNoise(None, cfg.snr_db, cfg.noise_p, sample_rate=sample_rate))
    if cfg.codec_p > 0:
        augs.append(Codec(cfg.codec_levels, cfg.codec_p, sample_rate))
    if cfg.gain_p > 0:
        augs.append(Gain(cfg.gain_db, cfg.gain_p))
    return Compose(augs)
