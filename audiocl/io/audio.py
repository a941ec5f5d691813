"""Audio input and output: decode, validate, down-mix, resample.

``load`` reads only the requested span of a file (soundfile seek), down-mixes by mean and resamples
to the target rate with soxr (faster and more exact on the CPU than ours for one file).
``resample`` is our own torch windowed-sinc polyphase resampler: it runs batched on the tensor's
device (speed perturbation of a whole training batch on the GPU), where it is also faster than
soxr for the 0.9/1.1 speed ratios (``benchmarks/bench_resample.py``). Every problem with an
input file raises ``AudioError(path, reason)``.

Shapes: a waveform is ``(S,)`` (one file) or ``(..., S)`` / ``(B, S)`` (a batch).
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F

from ..errors import AudioError
from ..fileio import atomic_path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")  # what libsndfile reads and writes
# what folder scans pick up: also the containers only FFmpeg reads (audiocl.io.av_decode)
AV_EXTENSIONS = (".m4a", ".mp4", ".webm", ".aac", ".opus")
READ_EXTENSIONS = AUDIO_EXTENSIONS + AV_EXTENSIONS

# Resampler defaults: 32 zero crossings each side, cut-off at 94.5% of the lower Nyquist rate,
# Kaiser window with beta 8.6. 48k -> 16k: error < 2e-3 up to 7 kHz, aliasing of an 8.2 kHz tone
# about -80 dB (a shorter 24-crossing filter leaks -40 dB there).
ZERO_CROSSINGS = 32
ROLLOFF = 0.945
KAISER_BETA = 8.6
# Above this many kernel coefficients the conv1d polyphase kernel (new x (orig + 2w)) is too big
# (awkward rate pairs such as 16000 -> 16001); a gather-based path computes weights per output.
_MAX_KERNEL_ELEMENTS = 4_000_000

# A header's frame count is read in blocks of this many frames, so a few hostile bytes promising
# billions of frames cost what is really decoded, not an allocation of the promise.
_READ_BLOCK = 1 << 22
# Float audio lies in [-1, 1] (int16-scaled float files reach 32768); a peak above this is not
# audio, and its squares overflow the filterbank's float32 power spectrum.
MAX_PEAK = 1e6

_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}
_SUBTYPES = {".ogg": "VORBIS", ".mp3": "MPEG_LAYER_III", ".flac": "PCM_16", ".wav": "PCM_16"}


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What a file header says: ``frames`` per channel, rate, channels, ``duration`` in seconds."""

    frames: int
    sample_rate: int
    channels: int
    duration: float


# ----------------------------------------------------------------------------- header parsing


@dataclass(frozen=True)
class _WavLayout:
    """Where a RIFF/WAVE file's samples are: ``frames`` of ``channels`` at ``rate``, in the
    data chunk from byte ``data_offset``, format ``tag`` (1 PCM, 3 float, 0xFFFE extensible)
    at ``bits`` per sample, ``align`` bytes per frame."""

    frames: int
    rate: int
    channels: int
    tag: int
    bits: int
    align: int
    data_offset: int


def _wav_layout(head: bytes, file_size: int) -> _WavLayout | None:
    """The layout of a RIFF/WAVE header in ``head``; None when the header is unusual
    (compressed, chunks beyond ``head``, unknown size) and soundfile should decide.
    Raises ValueError for a data chunk that runs past the end of the file (truncated)."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > len(head):
                return None
            tag, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", head, body)
            fmt = (tag, channels, rate, align, bits)
        elif cid == b"data":
            if fmt is None or fmt[0] not in (1, 3, 0xFFFE) or fmt[3] == 0 or fmt[1] == 0:
                return None
            if size in (0, 0xFFFFFFFF):  # streamed writer left the size open
                return None
            if body + size > file_size:
                raise ValueError(
                    f"truncated file: header promises {size} bytes of audio, "
                    f"only {max(file_size - body, 0)} present"
                )
            tag, channels, rate, align, bits = fmt
            return _WavLayout(size // align, rate, channels, tag, bits, align, body)
        pos = body + size + (size & 1)
    return None


def _parse_wav(head: bytes, file_size: int) -> tuple[int, int, int] | None:
    """(frames, sample_rate, channels) of a RIFF/WAVE header (see ``_wav_layout``)."""
    w = _wav_layout(head, file_size)
    return None if w is None else (w.frames, w.rate, w.channels)


# the plain PCM layouts read without libsndfile: (tag, bits) -> sample dtype
_PCM_DTYPES = {(1, 16): np.dtype("<i2"), (3, 32): np.dtype("<f4")}


def _plain_pcm(w: _WavLayout | None) -> np.dtype | None:
    """The sample type of a WAV layout ``_read_pcm`` slices, or None (libsndfile decides):
    16-bit or float samples whose header agrees with itself (a frame is channels x sample)."""
    if w is None or w.rate <= 0 or w.frames <= 0 or w.channels > 1024:  # libsndfile's limit
        return None
    dtype = _PCM_DTYPES.get((w.tag, w.bits))
    return dtype if dtype is not None and w.align == w.channels * dtype.itemsize else None


def _read_pcm(
    data: bytes,
    w: _WavLayout,
    dtype: np.dtype,
    name: str,
    start: float | None,
    duration: float | None,
) -> tuple[np.ndarray, int, int]:
    """``_read_soundfile`` for 16-bit or float WAV bytes in memory: the span is sliced out of
    the buffer, not decoded (a 2 s crop of a WAV shard member costs a copy, where libsndfile's
    virtual IO costs 20 Python callbacks). ``dtype``: ``_plain_pcm(w)``. The same samples
    libsndfile gives."""
    first = 0 if start is None else int(round(start * w.rate))
    if first >= w.frames:
        raise AudioError(
            name,
            f"start {start:.3f} s is at or beyond the end of the audio ({w.frames / w.rate:.3f} s)",
        )
    count = w.frames - first
    if duration is not None:
        count = min(count, max(1, int(round(duration * w.rate))))
    at = w.data_offset + first * w.channels * dtype.itemsize
    samples = np.frombuffer(data, dtype=dtype, count=count * w.channels, offset=at)
    out = samples.reshape(count, w.channels).astype(np.float32)
    if dtype.kind == "i":
        out *= np.float32(1 / 32768)  # libsndfile's int16 -> float scale
    return out, w.rate, count


def _parse_flac(head: bytes) -> tuple[int, int, int] | None:
    """(frames, sample_rate, channels) from the FLAC STREAMINFO block; None if absent/unknown."""
    if len(head) < 42 or head[:4] != b"fLaC" or (head[4] & 0x7F) != 0:
        return None
    (packed,) = struct.unpack_from(">Q", head, 18)
    rate = packed >> 44
    channels = ((packed >> 41) & 0x7) + 1
    frames = packed & ((1 << 36) - 1)
    if rate == 0 or frames == 0:
        return None
    return frames, rate, channels


def _check_file(path: Path) -> int:
    """Size of ``path`` in bytes, or AudioError when it is missing, a directory or empty."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioError(path, "file not found") from None
    except OSError as e:
        raise AudioError(path, f"cannot access file ({e.strerror})") from None
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if st.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    return st.st_size


def _decode_error(path: Path, err: Exception) -> AudioError:
    msg = str(err).replace(f"'{path}'", "").replace("Error opening :", "")
    msg = re.sub(r"Error opening <[^>]*>:", "", msg).strip()  # bytes in memory (load_bytes)
    return AudioError(
        path, f"cannot decode as audio, corrupt or not a {path.suffix or 'sound'} file ({msg})"
    )


def info(path: str | os.PathLike) -> AudioInfo:
    """Read the header of ``path`` only (no decoding).

    WAV (PCM/float) and FLAC headers are parsed directly (a few microseconds), anything else
    goes through soundfile. Raises ``AudioError`` for missing, empty, truncated or garbage files
    and for a header that announces zero samples.
    """
    path = Path(path)
    size = _check_file(path)
    parsed = None
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise AudioError(path, f"cannot read file ({e.strerror})") from None
    try:
        parsed = _parse_wav(head, size) or _parse_flac(head)
    except ValueError as e:
        raise AudioError(path, str(e)) from None
    if parsed is None:
        try:
            i = sf.info(str(path))
            parsed = (i.frames, i.samplerate, i.channels)
        except (sf.SoundFileError, RuntimeError) as e:
            parsed = _probe_av(path, e)
    frames, rate, channels = parsed
    if rate <= 0 or channels <= 0:  # a damaged header (found by fuzzing: a rate of 0)
        raise AudioError(path, f"bad header: {rate} Hz, {channels} channels")
    if frames <= 0:
        raise AudioError(path, "no audio samples (0 frames)")
    return AudioInfo(frames=frames, sample_rate=rate, channels=channels, duration=frames / rate)


def _require_av(path: Path, sf_error: Exception) -> None:
    """Without PyAV, the error for a file libsndfile refused: the install hint for the
    containers only FFmpeg reads, else libsndfile's decode error."""
    from . import av_decode

    if av_decode.available():
        return
    if path.suffix.lower() in AV_EXTENSIONS:
        raise AudioError(
            path,
            f"{path.suffix} needs FFmpeg decoding, which is not installed: "
            "pip install 'audiocl[formats]'",
        )
    raise _decode_error(path, sf_error)


def _probe_av(path: Path, sf_error: Exception) -> tuple[int, int, int]:
    """Header of a file libsndfile refused, through PyAV (as ``_read_av``)."""
    from . import av_decode

    _require_av(path, sf_error)
    try:
        return av_decode.probe(path)
    except Exception as e:  # PyAV raises FFmpeg's many error types
        raise _decode_error(path, e) from None


# ----------------------------------------------------------------------------- load / save


def load(
    path: str | os.PathLike,
    sample_rate: int | None = 16000,
    start: float | None = None,
    duration: float | None = None,
    min_duration: float = 0.0,
) -> torch.Tensor:
    """Decode ``path`` into a float32 mono waveform ``(S,)`` at ``sample_rate`` (None = native).

    ``start`` / ``duration`` are seconds of the file: only that span is read from disk (soundfile
    seek), so a 2 s crop of a long file costs 2 s of decoding (mp3 excepted: libsndfile's mp3 seek
    is not sample-accurate, so an mp3 span is decoded from the start). Files libsndfile cannot
    read (m4a, mp4, webm) are decoded by FFmpeg through PyAV when it is installed. A span
    running past the end is clipped; a ``start`` at or beyond the end is an error.
    Multichannel audio is averaged.
    Raises ``AudioError`` for: missing file, directory, empty file, zero samples, garbage or
    truncated header, NaN/Inf samples, audio (the span read) shorter than ``min_duration`` s.
    """
    path = Path(path)
    _check_span(start, duration)
    size = _check_file(path)
    if path.suffix.lower() == ".wav":  # libsndfile silently shortens truncated WAVs; we refuse them
        try:
            with open(path, "rb") as f:
                _parse_wav(f.read(4096), size)
        except ValueError as e:
            raise AudioError(path, str(e)) from None
    try:
        data, rate, count = _read_soundfile(path, start, duration)
        exact = path.suffix.lower() != ".mp3"  # mp3 frame counts are estimates
    except (sf.SoundFileError, RuntimeError) as e:
        data, rate = _read_av(path, start, duration, e)
        count, exact = data.shape[0], False
    return _finish(path, data, rate, count, exact, start, min_duration, sample_rate)


def load_bytes(
    data: bytes,
    name: str,
    sample_rate: int | None = 16000,
    start: float | None = None,
    duration: float | None = None,
    min_duration: float = 0.0,
) -> torch.Tensor:
    """``load`` for a file's bytes held in memory (a member of a tar shard): ``(S,)`` float32.
    ``name`` is what errors call it (``shard-000003.tar:000001234.flac``); its suffix gives the
    format, one libsndfile reads (FLAC, WAV, OGG, MP3). The same checks as ``load``."""
    _check_span(start, duration)
    if not data:
        raise AudioError(name, "empty file (0 bytes)")
    suffix = os.path.splitext(name)[1].lower()
    layout = None
    if suffix == ".wav":
        try:
            layout = _wav_layout(data[:4096], len(data))
        except ValueError as e:
            raise AudioError(name, str(e)) from None
    dtype = _plain_pcm(layout)
    if dtype is not None:
        wave, rate, count = _read_pcm(data, layout, dtype, name, start, duration)
        bounded = dtype.kind == "i"  # integer samples: finite and in [-1, 1) as read
        return _finish(name, wave, rate, count, True, start, min_duration, sample_rate, bounded)
    where = Path(name)
    try:
        wave, rate, count = _read_soundfile(io.BytesIO(data), start, duration, where)
    except (sf.SoundFileError, RuntimeError) as e:
        raise _decode_error(where, e) from None
    return _finish(where, wave, rate, count, suffix != ".mp3", start, min_duration, sample_rate)


def _check_span(start: float | None, duration: float | None) -> None:
    if start is not None and start < 0:
        raise ValueError(f"start must be >= 0 seconds, got {start}")
    if duration is not None and duration <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")


def _finish(
    path: Path | str,
    data: np.ndarray,
    rate: int,
    count: int,
    exact: bool,
    start: float | None,
    min_duration: float,
    sample_rate: int | None,
    bounded: bool = False,
) -> torch.Tensor:
    """Checks and conversion shared by ``load`` and ``load_bytes``: decoded ``data (S, C)`` ->
    validated mono ``(S,)`` at ``sample_rate``; ``bounded``: the samples cannot be NaN, Inf or
    out of range (integer PCM), so that scan is skipped."""
    if rate <= 0:
        raise AudioError(path, f"bad header: {rate} Hz")
    if data.shape[0] == 0:
        if start:
            raise AudioError(path, f"start {start:.3f} s is at or beyond the end of the audio")
        raise AudioError(path, "no audio samples could be decoded")
    if exact and data.shape[0] < count:
        raise AudioError(
            path, f"truncated file: header promises {count} frames, only {data.shape[0]} decoded"
        )
    if not bounded:
        if not np.isfinite(data).all():
            raise AudioError(path, "contains NaN or Inf samples")
        peak = float(np.abs(data).max())
        if peak > MAX_PEAK:
            raise AudioError(path, f"samples out of range (peak {peak:.3g}; audio is in [-1, 1])")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    if mono.shape[0] / rate < min_duration:
        raise AudioError(
            path,
            f"too short: {mono.shape[0] / rate:.3f} s of audio, the minimum is {min_duration:.3f} s",
        )
    if sample_rate is not None and sample_rate != rate:
        # a decoded file is resampled with soxr: 1.6x to 4.6x faster than ours on one CPU
        # thread for 8/44.1/48 -> 16 kHz, and more exact (benchmarks/bench_resample.py); ours
        # stays for batched speed perturbation on the training device
        want = math.ceil(mono.shape[0] * sample_rate / rate)  # resample()'s length
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")[:want]
        if mono.shape[0] < want:  # soxr rounds the length down (to nothing for a few samples)
            mode = "edge" if mono.shape[0] else "constant"
            mono = np.pad(mono, (0, want - mono.shape[0]), mode=mode)
    return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))


def _read_soundfile(
    path: Path | io.BytesIO, start: float | None, duration: float | None, name: Path | None = None
) -> tuple[np.ndarray, int, int]:
    """``(data (S, C), rate, frames asked for)`` through libsndfile, from a file or from bytes
    in memory (then ``name`` is what errors call it)."""
    name = path if name is None else name
    with sf.SoundFile(path if isinstance(path, io.BytesIO) else str(path)) as f:
        frames, rate = f.frames, f.samplerate
        if frames <= 0:
            raise AudioError(name, "no audio samples (0 frames)")
        first = 0 if start is None else int(round(start * rate))
        if first >= frames:
            raise AudioError(
                name,
                f"start {start:.3f} s is at or beyond the end of the audio ({frames / rate:.3f} s)",
            )
        count = frames - first
        if duration is not None:
            count = min(count, max(1, int(round(duration * rate))))
        if first and name.suffix.lower() == ".mp3":
            # libsndfile's mp3 seek is not sample-accurate: decode the prefix and drop it.
            return _read_blocks(f, first + count)[first:], rate, count
        if first:
            f.seek(first)
        return _read_blocks(f, count), rate, count


def _read_blocks(f: sf.SoundFile, count: int) -> np.ndarray:
    """Up to ``count`` frames ``(S, C)`` from the current position, read in blocks, so memory
    follows the audio really there and not the header's promise."""
    parts = []
    while count > 0:
        asked = min(count, _READ_BLOCK)
        part = f.read(asked, dtype="float32", always_2d=True)
        parts.append(part)
        count -= part.shape[0]
        if part.shape[0] < asked:  # the audio ended before the header said
            break
    if not parts:
        return np.zeros((0, f.channels), dtype=np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _read_av(
    path: Path, start: float | None, duration: float | None, sf_error: Exception
) -> tuple[np.ndarray, int]:
    """What libsndfile refused, through FFmpeg (PyAV) when it is installed; else the decode
    error, with the install hint for the containers only FFmpeg reads."""
    from . import av_decode

    _require_av(path, sf_error)
    try:
        data, rate = av_decode.decode(path, start, duration)
    except Exception as e:  # PyAV raises FFmpeg's many error types
        raise _decode_error(path, sf_error if not str(e) else e) from None
    if data.shape[0] == 0 and not start:  # FFmpeg opened it but found no audio in it
        raise _decode_error(path, sf_error) from None
    return data, rate


def save(path: str | os.PathLike, wave: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write a mono waveform ``(S,)`` (float in [-1, 1]) atomically; format from the suffix
    (``.wav`` 16-bit PCM, ``.flac`` 16-bit, ``.ogg`` Vorbis, ``.mp3``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"{path}: unsupported suffix {suffix!r}; choose one of {AUDIO_EXTENSIONS}")
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().to("cpu", torch.float32).numpy()
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"save expects a mono waveform (S,), got shape {wave.shape}")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), wave, sample_rate, format=_FORMATS[suffix], subtype=_SUBTYPES[suffix])


# ----------------------------------------------------------------------------- resampling


def _window(x: torch.Tensor, window: str, beta: float) -> torch.Tensor:
    """Window over ``x`` in [-1, 1] (fraction of the half-width)."""
    if window == "kaiser":
        arg = beta * torch.sqrt((1 - x * x).clamp_min(0))
        return torch.special.i0(arg) / torch.special.i0(torch.tensor(beta, dtype=x.dtype))
    if window == "hann":
        return torch.cos(x * (math.pi / 2)) ** 2
    raise ValueError(f"unknown window {window!r}; choose one of ('kaiser', 'hann')")


def _sinc_weights(
    tau: torch.Tensor, base: float, zeros: int, window: str, beta: float
) -> torch.Tensor:
    """Low-pass interpolation weights at offsets ``tau`` (in input samples), cut-off ``base``
    (fraction of the input rate, 1 = input sample rate): base * sinc(base * tau) * window."""
    x = (tau * base).clamp(-zeros, zeros)
    sinc = torch.where(x == 0, torch.ones_like(x), torch.sin(math.pi * x) / (math.pi * x))
    return base * sinc * _window(x / zeros, window, beta)


@functools.lru_cache(maxsize=32)
def _polyphase_kernel(
    orig: int, new: int, zeros: int, rolloff: float, window: str, beta: float, dtype, device
) -> tuple[torch.Tensor, int]:
    """Kernels ``(new, 1, orig + 2w)``: row j produces output phase j of every block of ``orig``
    input samples; ``w`` is the one-sided filter width in input samples."""
    base = rolloff * min(orig, new) / orig  # cut-off as a fraction of the input rate
    width = math.ceil(zeros / base)
    m = torch.arange(-width, orig + width, dtype=torch.float64)  # input sample within block
    j = torch.arange(new, dtype=torch.float64)[:, None]  # output phase
    tau = m[None, :] - j * orig / new  # input offset relative to the output instant
    kernel = _sinc_weights(tau, base, zeros, window, beta)
    return kernel[:, None, :].to(dtype=dtype, device=device), width


def resample(
    wave: torch.Tensor,
    orig_sr: int,
    new_sr: int,
    zero_crossings: int = ZERO_CROSSINGS,
    rolloff: float = ROLLOFF,
    window: str = "kaiser",
    beta: float = KAISER_BETA,
) -> torch.Tensor:
    """Resample ``wave (..., S)`` from ``orig_sr`` to ``new_sr`` -> ``(..., ceil(S * new / orig))``.

    Windowed-sinc polyphase resampler: the rates are reduced by their gcd to ``orig : new``; one
    strided ``conv1d`` over blocks of ``orig`` input samples yields ``new`` output phases at once.
    Why ours: batched, runs on the tensor's device (GPU speed perturbation), no extra dependency.
    The cut-off is ``rolloff`` x the lower Nyquist rate (anti-aliasing when downsampling).
    Speed perturbation by factor ``s`` is ``resample(w, round(sr * s), sr)`` (16000 * 0.9 = 14400
    reduces to 10 : 9, a small kernel).
    """
    if orig_sr <= 0 or new_sr <= 0 or int(orig_sr) != orig_sr or int(new_sr) != new_sr:
        raise ValueError(f"sample rates must be positive integers, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return wave
    if not wave.is_floating_point():
        wave = wave.float()
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    shape, length = wave.shape, wave.shape[-1]
    out_len = math.ceil(length * new / orig)
    flat = wave.reshape(-1, 1, length)
    base = rolloff * min(orig, new) / orig
    if new * (orig + 2 * math.ceil(zero_crossings / base)) > _MAX_KERNEL_ELEMENTS:
        out = _resample_gather(
            flat[:, 0], orig, new, out_len, zero_crossings, rolloff, window, beta
        )
        return out.reshape(*shape[:-1], out_len)
    kernel, width = _polyphase_kernel(
        orig, new, zero_crossings, rolloff, window, beta, wave.dtype, wave.device
    )
    padded = F.pad(flat, (width, width + orig))
    out = F.conv1d(padded, kernel, stride=orig)  # (N, new, blocks)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)[:, :out_len]
    return out.reshape(*shape[:-1], out_len)


def _resample_gather(
    x: torch.Tensor,
    orig: int,
    new: int,
    out_len: int,
    zeros: int,
    rolloff: float,
    window: str,
    beta: float,
    chunk: int = 8192,
) -> torch.Tensor:
    """Same filter as ``resample`` for awkward rate pairs: weights computed per output sample,
    inputs gathered, in chunks of ``chunk`` outputs. ``x (N, S) -> (N, out_len)``."""
    n, length = x.shape
    base = rolloff * min(orig, new) / orig
    width = math.ceil(zeros / base)
    taps = torch.arange(-width, width + 1, device=x.device)
    padded = F.pad(x, (width, width + 1))
    out = x.new_empty(n, out_len)
    for lo in range(0, out_len, chunk):
        k = torch.arange(lo, min(lo + chunk, out_len), device=x.device, dtype=torch.int64)
        centre = (k * orig) // new  # floor of the output instant in input samples
        frac = (k * orig - centre * new).to(torch.float64) / new
        tau = taps[None, :].to(torch.float64) - frac[:, None]
        w = _sinc_weights(tau, base, zeros, window, beta).to(x.dtype)  # (K, taps)
        idx = (centre[:, None] + taps[None, :] + width).clamp_(0, padded.shape[1] - 1)
        out[:, lo : lo + k.numel()] = (padded[:, idx] * w).sum(-1)
    return out
