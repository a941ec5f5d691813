"""Audio that libsndfile cannot read (m4a/AAC, webm/opus, mp4) decodes through PyAV: whole
files, spans, headers, corpora and the commands; without PyAV the error says what to install."""

import math

import numpy as np
import pytest

from audiocl.errors import AudioError
from audiocl.io import audio

av = pytest.importorskip("av")
SR = 16000


def tone_voice(seconds: float, sr: int = 48000) -> np.ndarray:
    """A voiced, syllable-modulated harmonic signal (passes the speech gate)."""
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 - 0.5 * np.cos(2 * math.pi * 3.0 * t)
    w = sum(np.sin(2 * math.pi * 140 * k * t) / k for k in range(1, 8))
    return (0.2 * env * w).astype(np.float32)


def write_av(path, wave: np.ndarray, sr: int, codec: str, channels: int = 1) -> None:
    from audiocl.io.av_decode import encode

    encode(path, np.tile(wave[None, :], (channels, 1)), sr, codec)


def _aligned_error(got: np.ndarray, ref: np.ndarray) -> float:
    """Smallest relative error over small shifts (codecs add a priming delay)."""
    best = math.inf
    n = min(len(got), len(ref)) - 2000
    for shift in range(-1200, 1201, 8):
        a = got[max(0, shift) : max(0, shift) + n]
        b = ref[max(0, -shift) : max(0, -shift) + n]
        m = min(len(a), len(b))
        best = min(best, float(np.linalg.norm(a[:m] - b[:m]) / np.linalg.norm(b[:m])))
    return best


@pytest.mark.parametrize(("suffix", "codec"), [(".m4a", "aac"), (".webm", "libopus")])
def test_whole_files_and_spans_decode(tmp_path, suffix, codec):
    sr = 48000
    ref = tone_voice(3.0, sr)
    path = tmp_path / f"voice{suffix}"
    write_av(path, ref, sr, codec, channels=2)
    head = audio.info(path)
    assert head.sample_rate == sr and head.channels == 2
    assert abs(head.duration - 3.0) < 0.1
    whole = audio.load(path, sample_rate=None)
    assert abs(whole.numel() / sr - 3.0) < 0.1
    assert _aligned_error(whole.numpy(), ref) < 0.1
    # a span: the same samples as the matching slice of the whole decode
    span = audio.load(path, sample_rate=None, start=1.0, duration=0.5)
    assert span.numel() == sr // 2
    # (webm stores milliseconds: the span may sit up to half a millisecond off)
    slack = 0 if suffix == ".m4a" else sr // 2000
    errors = [
        float((span - whole[sr + d : sr + d + sr // 2]).abs().max())
        for d in range(-slack, slack + 1)
    ]
    assert min(errors) < 2e-3
    # and at the model rate
    assert audio.load(path).numel() == pytest.approx(3.0 * SR, abs=0.1 * SR)


def test_corpus_and_commands_read_m4a(tmp_path, make_tiny_model, capsys):
    from audiocl.app.cli import main
    from audiocl.data.corpus import open_corpus

    root = tmp_path / "vox"
    for spk in ("id00001", "id00002"):
        for utt in range(2):
            path = root / spk / "yt" / f"{utt:05d}.m4a"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_av(path, tone_voice(2.0 + utt, 16000), 16000, "aac")
    corpus = open_corpus(root)
    assert len(corpus) == 4 and not corpus.skipped
    files = sorted(str(p) for p in root.rglob("*.m4a"))
    model = make_tiny_model(tmp_path / "m.pt")
    out = tmp_path / "e.npz"
    assert main(["embed", *files, "--model", str(model), "--out", str(out), "--quiet"]) == 0
    assert np.load(out)["embeddings"].shape == (4, 16)
    args = [files[0], files[1], "--model", str(model), "--threshold", "0.5", "--json"]
    assert main(["verify", *args]) in (0, 1)


def test_without_pyav_the_error_names_what_to_install(tmp_path, monkeypatch):
    from audiocl.io import av_decode

    path = tmp_path / "voice.m4a"
    write_av(path, tone_voice(1.0, 16000), 16000, "aac")
    monkeypatch.setattr(av_decode, "available", lambda: False)
    with pytest.raises(AudioError, match=r"voice.m4a: .m4a needs FFmpeg decoding.*formats"):
        audio.load(path)
    with pytest.raises(AudioError, match="needs FFmpeg decoding"):
        audio.info(path)


def test_garbage_is_still_a_decode_error(tmp_path):
    bad = tmp_path / "bad.m4a"
    bad.write_bytes(b"this is not audio " * 100)
    with pytest.raises(AudioError, match="bad.m4a: cannot decode as audio"):
        audio.load(bad)


@pytest.mark.parametrize("channels", [2, 12])
def test_every_channel_decodes_in_place(tmp_path, channels):
    """Channels keep their order and content, also past FFmpeg's eight data pointers: reading
    planar frames, PyAV took planes 9+ from outside the frame (a crash found by fuzzing)."""
    import soundfile as sf

    from audiocl.io.av_decode import decode

    n = 4000
    data = np.stack([np.full(n, (c + 1) / (channels + 1), np.float32) for c in range(channels)], 1)
    path = tmp_path / "many.wav"
    sf.write(path, data, 8000, subtype="FLOAT")
    for _ in range(3):  # the bad reads crashed only sometimes
        got, rate = decode(path)
        assert rate == 8000 and got.shape == (n, channels)
        np.testing.assert_array_equal(got, data)
