"""audio.py: decoding of every supported format, spans, validation errors, the resampler."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import soundfile as sf
import torch

import audiocl.io.audio as audio
from audiocl.errors import AudioError
from audiocl.io.audio import AUDIO_EXTENSIONS, AudioInfo, info, load, resample, save


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def chirp(sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * (150 * t + 300 * t**2))).astype(np.float32)


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("subtype", "tol"),
    [
        ("PCM_U8", 1 / 127),
        ("PCM_16", 1 / 32767),
        ("PCM_24", 1e-6),
        ("PCM_32", 1e-7),
        ("FLOAT", 0.0),
        ("DOUBLE", 0.0),
    ],
)
def test_wav_bit_depths_load_exact_values(tmp_path, subtype, tol):
    x = chirp(16000, 0.5)
    path = tmp_path / f"a_{subtype}.wav"
    sf.write(path, x, 16000, subtype=subtype)
    y = load(path)
    assert y.dtype == torch.float32 and y.shape == (x.size,)
    assert np.abs(y.numpy() - x).max() <= tol + 1e-7


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_flac_loads_exact_values(tmp_path, subtype):
    x = chirp(16000, 0.5)
    sf.write(tmp_path / "a.flac", x, 16000, subtype=subtype)
    assert np.abs(load(tmp_path / "a.flac").numpy() - x).max() <= 1 / 32767 + 1e-7


@pytest.mark.parametrize("ext", [".ogg", ".mp3"])
def test_lossy_formats_load_close_to_original(tmp_path, ext):
    x = chirp(16000, 1.0)
    sf.write(tmp_path / f"a{ext}", x, 16000)
    y = load(tmp_path / f"a{ext}").numpy()
    assert abs(len(y) - len(x)) <= 16
    n = min(len(x), len(y)) - 200
    err = y[200:n] - x[200:n]
    # lossy codecs: the waveform matches to within a few percent of its power (aligned, no delay)
    assert np.sqrt((err**2).mean()) < 0.05 * np.sqrt((x**2).mean())


@pytest.mark.parametrize("sr", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000])
def test_any_rate_loads_and_resamples_to_16k(tmp_path, sr):
    sf.write(tmp_path / "a.wav", sine(440.0, sr, 0.5), sr, subtype="FLOAT")
    native = load(tmp_path / "a.wav", sample_rate=None)
    assert native.shape == (sr // 2,)
    y = load(tmp_path / "a.wav", sample_rate=16000).numpy()
    assert y.shape == (8000,)
    ref = sine(440.0, 16000, 0.5)
    assert np.abs(y[100:-100] - ref[100:-100]).max() < 2e-3


def test_stereo_is_downmixed_by_mean(tmp_path):
    x = sine(300.0, 16000, 0.25)
    sf.write(tmp_path / "st.wav", np.stack([x, -0.5 * x], axis=1), 16000, subtype="FLOAT")
    y = load(tmp_path / "st.wav")
    np.testing.assert_allclose(y.numpy(), 0.25 * x, atol=1e-6)
    assert info(tmp_path / "st.wav").channels == 2


def test_multichannel_flac_downmix(tmp_path):
    x = np.stack([np.full(1600, 0.1), np.full(1600, 0.3), np.full(1600, -0.1)], axis=1)
    sf.write(tmp_path / "m.flac", x, 16000, subtype="PCM_24")
    np.testing.assert_allclose(load(tmp_path / "m.flac").numpy(), 0.1, atol=1e-6)


# ----------------------------------------------------------------------------- spans


def test_span_reads_the_right_samples(tmp_path):
    x = chirp(16000, 2.0)
    sf.write(tmp_path / "a.flac", x, 16000, subtype="PCM_24")
    y = load(tmp_path / "a.flac", start=0.5, duration=0.25).numpy()
    np.testing.assert_allclose(y, x[8000:12000], atol=1e-6)
    # a span running past the end is clipped
    y = load(tmp_path / "a.flac", start=1.9, duration=1.0).numpy()
    np.testing.assert_allclose(y, x[30400:], atol=1e-6)
    # start only: to the end
    assert load(tmp_path / "a.flac", start=1.0).shape == (16000,)


@pytest.mark.parametrize("ext", [".ogg", ".mp3"])
def test_span_of_lossy_file_matches_full_decode(tmp_path, ext):
    x = chirp(16000, 3.0)
    sf.write(tmp_path / f"a{ext}", x, 16000)
    full = load(tmp_path / f"a{ext}").numpy()
    part = load(tmp_path / f"a{ext}", start=1.25, duration=0.5).numpy()
    np.testing.assert_allclose(part, full[20000:28000], atol=1e-4)


def test_span_reads_only_that_span(tmp_path, monkeypatch):
    sf.write(tmp_path / "long.wav", np.zeros(16000 * 20, np.float32) + 0.1, 16000)
    calls = []

    class Spy(sf.SoundFile):
        def seek(self, frames, *a):
            calls.append(("seek", frames))
            return super().seek(frames, *a)

        def read(self, frames=-1, *a, **k):
            calls.append(("read", frames))
            return super().read(frames, *a, **k)

    monkeypatch.setattr(audio.sf, "SoundFile", Spy)
    y = load(tmp_path / "long.wav", start=10.0, duration=2.0)
    assert y.shape == (32000,)
    assert calls[0] == ("seek", 160000)
    assert [c for c in calls if c[0] == "read"] == [("read", 32000)]


@pytest.mark.parametrize(("subtype", "channels"), [("PCM_16", 1), ("PCM_16", 2), ("FLOAT", 2)])
def test_wav_bytes_are_sliced_without_libsndfile_and_match_it(
    tmp_path, monkeypatch, subtype, channels
):
    x = np.stack([chirp(16000, 3.0, 0.5), chirp(16000, 3.0, -0.3)], axis=1)[:, :channels]
    sf.write(tmp_path / "a.wav", x, 16000, subtype=subtype)
    data = (tmp_path / "a.wav").read_bytes()
    spans = [(None, None), (0.5, 1.0), (2.5, 2.0), (1.0, None)]
    want = [load(tmp_path / "a.wav", start=s, duration=d) for s, d in spans]

    def refused(*a, **k):
        raise AssertionError("plain PCM bytes went through libsndfile")

    monkeypatch.setattr(audio.sf, "SoundFile", refused)
    for (s, d), w in zip(spans, want, strict=True):
        assert torch.equal(audio.load_bytes(data, "shard.tar:1.wav", 16000, s, d), w)
    with pytest.raises(AudioError, match=r"shard.tar:1.wav: start 3.000 s is at or beyond"):
        audio.load_bytes(data, "shard.tar:1.wav", start=3.0)
    with pytest.raises(AudioError, match="shard.tar:1.wav: truncated file"):
        audio.load_bytes(data[:-100], "shard.tar:1.wav")


@pytest.mark.parametrize(("channels", "nbytes"), [(1, 1), (2, 1), (2, 3)])
def test_wav_bytes_of_no_whole_frame_are_refused(channels, nbytes):
    fmt = struct.pack("<HHIIHH", 1, channels, 16000, 32000 * channels, 2 * channels, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", nbytes)
    data = b"RIFF" + struct.pack("<I", len(body) + nbytes) + body + b"\x01" * nbytes
    with pytest.raises(AudioError, match="m.wav: "):
        audio.load_bytes(data, "m.wav")


def test_wav_bytes_of_other_layouts_go_through_libsndfile(tmp_path):
    x = chirp(16000, 1.0)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="PCM_24")
    got = audio.load_bytes((tmp_path / "a.wav").read_bytes(), "m.wav", start=0.25, duration=0.5)
    assert torch.equal(got, load(tmp_path / "a.wav", start=0.25, duration=0.5))
    bad = x.copy()
    bad[100] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="m.wav: contains NaN"):
        audio.load_bytes((tmp_path / "nan.wav").read_bytes(), "m.wav")


def test_span_resampled(tmp_path):
    sf.write(tmp_path / "a.wav", sine(440.0, 48000, 2.0), 48000, subtype="FLOAT")
    y = load(tmp_path / "a.wav", start=1.0, duration=0.5).numpy()
    assert y.shape == (8000,)
    ref = sine(440.0, 16000, 1.5)[16000:]
    assert np.abs(y[100:-100] - ref[100:-100]).max() < 2e-3


def test_start_beyond_end_is_an_error(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(AudioError, match="beyond the end"):
        load(tmp_path / "a.wav", start=0.1)
    with pytest.raises(ValueError):
        load(tmp_path / "a.wav", start=-1.0)
    with pytest.raises(ValueError):
        load(tmp_path / "a.wav", duration=0.0)


# ----------------------------------------------------------------------------- bad inputs


def _one_line_error(exc: pytest.ExceptionInfo, path, reason: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert reason in msg
    assert exc.value.path == str(path)


def _bad_files(tmp_path):
    """(name, path, expected reason) for every kind of unusable input."""
    cases = []
    cases.append(("missing", tmp_path / "nope.wav", "not found"))
    d = tmp_path / "adir.wav"
    d.mkdir()
    cases.append(("directory", d, "directory"))
    (tmp_path / "empty.wav").write_bytes(b"")
    cases.append(("empty", tmp_path / "empty.wav", "empty file"))
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    cases.append(("zero samples wav", tmp_path / "zero.wav", "0 frames"))
    (tmp_path / "text.wav").write_text("this is a text file, not a RIFF header\n" * 5)
    cases.append(("garbage header", tmp_path / "text.wav", "cannot decode"))
    (tmp_path / "text.flac").write_text("not flac at all\n" * 5)
    cases.append(("garbage flac", tmp_path / "text.flac", "cannot decode"))
    sf.write(tmp_path / "full.wav", chirp(16000, 1.0), 16000)
    raw = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "trunc.wav").write_bytes(raw[: len(raw) // 2])
    cases.append(("truncated wav", tmp_path / "trunc.wav", "truncated"))
    (tmp_path / "hdr.wav").write_bytes(raw[:30])
    cases.append(("truncated header", tmp_path / "hdr.wav", "cannot decode"))
    return cases


def test_bad_files_raise_audio_error_naming_file_and_reason(tmp_path):
    for name, path, reason in _bad_files(tmp_path):
        with pytest.raises(AudioError) as exc:
            load(path)
        _one_line_error(exc, path, reason)
        if name != "truncated header":
            with pytest.raises(AudioError) as exc:
                info(path)
            _one_line_error(exc, path, reason)


def test_truncated_flac_raises(tmp_path):
    sf.write(tmp_path / "full.flac", np.random.default_rng(0).normal(0, 0.1, 32000), 16000)
    raw = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "t.flac").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AudioError) as exc:
        load(tmp_path / "t.flac")
    assert str(tmp_path / "t.flac") in str(exc.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_raise(tmp_path, bad):
    x = sine(300.0, 16000, 0.1)
    x[500] = bad
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError) as exc:
        load(tmp_path / "nan.wav")
    _one_line_error(exc, tmp_path / "nan.wav", "NaN or Inf")


def test_shorter_than_min_duration_raises(tmp_path):
    sf.write(tmp_path / "short.flac", sine(300.0, 16000, 0.3), 16000)
    assert load(tmp_path / "short.flac", min_duration=0.25).shape == (4800,)
    with pytest.raises(AudioError) as exc:
        load(tmp_path / "short.flac", min_duration=0.5)
    _one_line_error(exc, tmp_path / "short.flac", "too short")


# ----------------------------------------------------------------------------- info / save


@pytest.mark.parametrize(
    ("ext", "subtype", "channels", "sr"),
    [
        (".wav", "PCM_16", 1, 16000),
        (".wav", "PCM_24", 2, 44100),
        (".wav", "FLOAT", 1, 8000),
        (".wav", "PCM_U8", 1, 22050),
        (".flac", "PCM_16", 1, 96000),
        (".flac", "PCM_24", 2, 48000),
        (".ogg", None, 1, 16000),
        (".mp3", None, 1, 16000),
    ],
)
def test_info_matches_soundfile(tmp_path, ext, subtype, channels, sr):
    x = np.zeros((int(sr * 0.7), channels), np.float32) + 0.1
    path = tmp_path / f"a{ext}"
    sf.write(path, x, sr, subtype=subtype)
    ref = sf.info(str(path))
    got = info(path)
    assert got == AudioInfo(ref.frames, sr, channels, ref.frames / sr)


def test_info_wav_extensible_and_extra_chunks(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, np.zeros((1234, 3), np.float32), 32000, format="WAVEX", subtype="PCM_24")
    assert info(path) == AudioInfo(1234, 32000, 3, 1234 / 32000)
    # a LIST chunk before the data chunk (metadata)
    sf.write(path, np.zeros(999, np.float32), 16000)
    with sf.SoundFile(path, "r+") as f:
        f.title = "hello"
    assert info(path).frames == 999


@pytest.mark.parametrize("ext", AUDIO_EXTENSIONS)
def test_save_roundtrip_is_atomic(tmp_path, ext):
    x = chirp(16000, 1.0)
    save(tmp_path / f"out{ext}", torch.from_numpy(x), 16000)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{ext}"]
    y = load(tmp_path / f"out{ext}").numpy()
    n = min(len(x), len(y)) - 200
    tol = 1e-4 if ext in (".wav", ".flac") else 0.05
    assert np.sqrt(((y[200:n] - x[200:n]) ** 2).mean()) < tol
    with pytest.raises(ValueError):
        save(tmp_path / "out.xyz", x, 16000)
    with pytest.raises(ValueError):
        save(tmp_path / "out.wav", np.zeros((2, 10)), 16000)


# ----------------------------------------------------------------------------- resampler


def test_resample_sine_matches_analytic_and_soxr():
    soxr = pytest.importorskip("soxr")
    x = sine(1000.0, 44100, 1.0)
    y = resample(torch.from_numpy(x), 44100, 16000).numpy()
    assert y.shape == (16000,)
    ref = sine(1000.0, 16000, 1.0)
    assert np.abs(y[100:-100] - ref[100:-100]).max() < 1e-4
    s = soxr.resample(x, 44100, 16000, "VHQ")
    assert np.abs(y[100:-100] - s[100:-100]).max() < 1e-4
    # broadband: 30 tones between 50 Hz and 6.5 kHz, random phases; both agree to about -60 dB
    rng = np.random.default_rng(0)
    t = np.arange(44100) / 44100
    freqs, phases = rng.uniform(50, 6500, 30), rng.uniform(0, 2 * np.pi, 30)
    multi = (0.03 * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None]).sum(0)).astype(
        np.float32
    )
    a = resample(torch.from_numpy(multi), 44100, 16000).numpy()[200:-200]
    b = soxr.resample(multi, 44100, 16000, "VHQ")[200:-200]
    assert np.sqrt(((a - b) ** 2).mean() / (b**2).mean()) < 1e-3


@pytest.mark.parametrize(
    ("orig", "new"), [(8000, 16000), (16000, 8000), (16000, 14400), (16000, 17600)]
)
def test_resample_passband_and_length(orig, new):
    x = sine(1234.0, orig, 0.5)
    y = resample(torch.from_numpy(x), orig, new).numpy()
    assert y.shape == (math.ceil(len(x) * new / orig),)
    ref = sine(1234.0, new, len(y) / new)
    assert np.abs(y[100:-100] - ref[100 : len(y) - 100]).max() < 1e-3


def test_resample_rejects_aliasing():
    x = sine(9000.0, 48000, 0.5)  # above the 8 kHz Nyquist of the target
    y = resample(torch.from_numpy(x), 48000, 16000).numpy()
    assert np.sqrt((y[100:-100] ** 2).mean()) < 1e-3


def test_resample_batched_equals_per_row():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5000, generator=g)
    y = resample(x, 22050, 16000)
    assert y.shape == (2, 3, math.ceil(5000 * 16000 / 22050))
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(y[i, j], resample(x[i, j], 22050, 16000))


def test_resample_awkward_ratio_uses_gather_path_and_matches(monkeypatch):
    x = torch.randn(2, 4410, generator=torch.Generator().manual_seed(1))
    conv = resample(x, 44100, 16000)
    monkeypatch.setattr(audio, "_MAX_KERNEL_ELEMENTS", 0)
    gather = resample(x, 44100, 16000)
    torch.testing.assert_close(conv, gather, atol=1e-5, rtol=0)
    # 16000 -> 16001 would need a 16001-phase kernel: the gather path handles it
    y = resample(torch.from_numpy(sine(500.0, 16000, 0.25)), 16000, 16001).numpy()
    ref = sine(500.0, 16001, len(y) / 16001)
    assert np.abs(y[100:-100] - ref[100 : len(y) - 100]).max() < 1e-3


def test_resample_identity_hann_and_errors():
    x = torch.randn(100)
    assert resample(x, 16000, 16000) is x
    y = resample(torch.from_numpy(sine(500.0, 32000, 0.2)), 32000, 16000, window="hann").numpy()
    assert np.abs(y[100:-100] - sine(500.0, 16000, 0.2)[100:-100]).max() < 1e-2
    assert resample(torch.ones(10, dtype=torch.int16), 16000, 8000).dtype == torch.float32
    with pytest.raises(ValueError):
        resample(x, 0, 16000)
    with pytest.raises(ValueError):
        resample(x, 16000, 8000, window="boxcar")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resample_on_gpu_matches_cpu():
    x = torch.randn(4, 32000, generator=torch.Generator().manual_seed(0))
    for orig, new in [(16000, 14400), (44100, 16000)]:
        gpu = resample(x.cuda(), orig, new)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), resample(x, orig, new), atol=1e-4, rtol=0)
