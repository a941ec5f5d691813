"""Waveform augmentation: shapes, probabilities, SNR, reverb, speed, crops, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audiocl.config import AugmentConfig
from audiocl.data import augment as A
from audiocl.data.synth import synth_voice_params, synthesize_utterance
from audiocl.errors import ConfigError, DataError
from audiocl.io.audio import save

SR = 16000
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """(6, 16000) one second of synthetic speech per row, six voices."""
    rows = [
        synthesize_utterance(
            synth_voice_params(np.random.default_rng(i)), np.random.default_rng(i), 1.0, SR
        )
        for i in range(6)
    ]
    return torch.from_numpy(np.stack(rows))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def babble_source(n, num_samples, generator):
    return torch.randn(n, num_samples, generator=generator)


def all_augs():
    return [
        A.Gain(p=1.0),
        A.AddNoise(None, p=1.0),
        A.Babble(babble_source, p=1.0),
        A.Reverb(None, p=1.0),
        A.SpeedPerturb(p=1.0),
        A.Codec(p=1.0),
    ]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("aug", all_augs(), ids=lambda a: type(a).__name__)
def test_shape_dtype_device_and_no_inplace(aug, speech, device):
    x = speech.to(device)
    before = x.clone()
    y = aug(x, gen())
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all()
    assert torch.equal(x, before)
    assert not torch.allclose(y, x)


@pytest.mark.parametrize("aug", all_augs(), ids=lambda a: type(a).__name__)
def test_p_zero_is_identity_and_p_selects_rows(aug, speech):
    aug.p = 0.0
    assert torch.equal(aug(speech, gen()), speech)
    aug.p = 0.5
    x = speech.repeat(6, 1)  # 36 rows
    y = aug(x, gen(3))
    changed = [not torch.equal(a, b) for a, b in zip(x, y, strict=True)]
    assert 0 < sum(changed) < len(changed)


def test_same_generator_same_views_different_generators_differ(speech):
    chain = A.Compose([A.RandomCrop(12000), *all_augs()])
    a = chain(speech, gen(1))
    b = chain(speech, gen(1))
    c = chain(speech, gen(2))
    assert torch.equal(a, b)
    assert a.shape == c.shape == (6, 12000)
    for row_a, row_c in zip(a, c, strict=True):
        assert not torch.allclose(row_a, row_c, atol=1e-3)


def measured_snr(clean, mixed):
    return 10 * torch.log10(clean.pow(2).mean(-1) / (mixed - clean).pow(2).mean(-1))


@pytest.mark.parametrize("snr", [0.0, 12.5])
def test_coloured_noise_snr(speech, snr):
    y = A.AddNoise(None, snr_db=(snr, snr), p=1.0)(speech, gen())
    assert torch.allclose(measured_snr(speech, y), torch.full((6,), snr), atol=0.05)


def test_coloured_noise_slopes():
    white = A.coloured_noise(4, 16384, gen(), slopes=(0.0, 0.0))
    brown = A.coloured_noise(4, 16384, gen(), slopes=(2.0, 2.0))
    for x in (white, brown):
        assert torch.allclose(x.pow(2).mean(-1), torch.ones(4), atol=1e-4)

    def low_share(x):  # fraction of power below 500 Hz
        p = torch.fft.rfft(x).abs().pow(2)
        return (p[:, : 16384 * 500 // SR].sum(-1) / p.sum(-1)).mean()

    assert low_share(white) < 0.1 < 0.5 < low_share(brown)


def make_noise_dir(tmp_path):
    d = tmp_path / "noise"
    t = np.arange(SR // 4) / SR
    save(d / "hum.wav", 0.3 * np.sin(2 * np.pi * 100 * t), SR)  # shorter than a crop
    save(d / "hiss.flac", 0.1 * np.random.default_rng(0).standard_normal(3 * SR), SR)
    (d / "README.txt").write_text("not audio")
    return d


def test_noise_from_folder_snr_and_cache(tmp_path, speech):
    d = make_noise_dir(tmp_path)
    aug = A.AddNoise.from_folder(d, SR, snr_db=(5.0, 5.0), p=1.0)
    samples, spans = aug.bank
    assert spans.tolist() == [[0, 3 * SR], [3 * SR, SR // 4]]  # sorted: hiss.flac, hum.wav
    assert A.load_noise_bank(d, SR)[0] is samples  # loaded once
    y = aug(speech, gen())
    assert torch.allclose(measured_snr(speech, y), torch.full((6,), 5.0), atol=0.05)
    seg = aug.segments(8, SR, gen())  # short file segments are wrap-padded, never zero-padded
    assert seg.shape == (8, SR) and (seg.abs().amax(-1) > 0.05).all()


def test_babble_snr_and_source_counts(speech):
    calls = []

    def source(n, num_samples, generator):
        calls.append(n)
        return babble_source(n, num_samples, generator)

    y = A.Babble(source, speakers=(2, 4), snr_db=(15.0, 15.0), p=1.0)(speech, gen())
    assert 2 * 6 <= calls[0] <= 4 * 6
    assert torch.allclose(measured_snr(speech, y), torch.full((6,), 15.0), atol=0.05)


def decay_rt60(h: torch.Tensor, sr: int) -> float:
    """RT60 from the slope of the tail's log energy in 10 ms frames (least squares)."""
    hop = sr // 100
    frames = h[1 : 1 + (h.numel() - 1) // hop * hop].reshape(-1, hop).pow(2).mean(-1)
    db = 10 * torch.log10(frames + 1e-20).numpy()
    t = (np.arange(len(db)) + 0.5) / 100
    keep = t > 0.01
    slope = np.polyfit(t[keep], db[keep], 1)[0]
    return -60.0 / slope


@pytest.mark.parametrize("rt60", [0.2, 0.5])
def test_simulated_rir_decay_matches_rt60(rt60):
    h = A.simulate_rir(16, torch.full((16,), rt60), SR, gen(), max_seconds=0.6)
    assert torch.equal(h[:, 0], torch.ones(16))
    est = np.median([decay_rt60(r, SR) for r in h])
    assert est == pytest.approx(rt60, rel=0.15)


def test_reverb_keeps_alignment_and_level():
    x = torch.zeros(4, 8000)
    x[:, 1000] = 1.0
    y = A.Reverb(None, rt60=(0.3, 0.6), p=1.0)(x, gen())
    assert (y.abs().argmax(-1) == 1000).all()  # direct path stays where it was
    assert (y[:, :1000].abs().max() < 1e-4).all()  # nothing before the direct sound (causal)
    assert torch.allclose(A._rms(y), A._rms(x), rtol=1e-4)
    assert (y[:, 1500:].abs().amax(-1) > 0).all()  # a reverberant tail


def test_reverb_from_folder_aligns_to_direct_path(tmp_path, speech):
    d = tmp_path / "rir"
    for k, delay in enumerate([100, 400]):
        h = np.zeros(6000)
        h[delay] = 0.5
        h[delay + 1 :] = (
            0.05
            * np.random.default_rng(k).standard_normal(6000 - delay - 1)
            * np.exp(-np.arange(6000 - delay - 1) / 800)
        )
        save(d / f"r{k}.wav", h, SR)
    aug = A.Reverb.from_folder(d, SR, p=1.0)
    assert aug.rirs.shape[0] == 2 and torch.allclose(aug.rirs[:, 0], torch.ones(2))
    x = torch.zeros(3, 4000)
    x[:, 200] = 1.0
    y = aug(x, gen())
    assert (y.abs().argmax(-1) == 200).all()
    assert aug(speech, gen()).shape == speech.shape


def dominant_hz(x: torch.Tensor) -> float:
    spec = torch.fft.rfft(x * torch.hann_window(x.shape[-1], periodic=False)).abs()
    return float(spec.argmax()) * SR / x.shape[-1]


@pytest.mark.parametrize("speed", [0.9, 1.1])
def test_speed_changes_pitch(speed):
    t = torch.arange(SR) / SR
    x = torch.sin(2 * math.pi * 440 * t)[None].repeat(3, 1)
    y = A.SpeedPerturb(speeds=(speed,), p=1.0, sample_rate=SR)(x, gen())
    assert y.shape == x.shape
    for row in y:
        seg = row[: int(0.8 * SR)]  # before any wrap-padding
        assert dominant_hz(seg) == pytest.approx(440 * speed, abs=3)


def test_speed_up_shortens_then_wraps():
    x = torch.zeros(2, SR)
    x[:, : SR // 2] = torch.sin(2 * math.pi * 300 * torch.arange(SR // 2) / SR)
    y = A.SpeedPerturb(speeds=(1.1,), p=1.0, sample_rate=SR)(x, gen())
    env = y.abs().reshape(2, -1, 80).amax(-1)  # 5 ms frames
    active = (env[0] > 0.1).nonzero().squeeze(1)
    end_of_tone = int(active[active < 150].max()) * 80  # first copy, before the wrap
    assert end_of_tone == pytest.approx(SR / 2 / 1.1, abs=160)
    wrap = math.ceil(SR / 1.1)
    assert torch.allclose(y[:, wrap : wrap + 1000], y[:, :1000])  # wrap-padded with its start


def test_random_crop_wraps_short_audio():
    w = torch.arange(5, dtype=torch.float32)
    out = A.random_crop(w, 12, gen())
    assert out.shape == (12,)
    assert torch.equal(out[1:], (out[:-1] + 1) % 5)
    long = torch.arange(100, dtype=torch.float32)
    c = A.random_crop(long, 30, gen(4))
    assert torch.equal(c, torch.arange(int(c[0]), int(c[0]) + 30, dtype=torch.float32))
    starts = {int(A.random_crop(long, 30, gen(s))[0]) for s in range(20)}
    assert len(starts) > 5
    assert torch.equal(A.random_crop(long, 100, gen()), long)


def test_random_crop_batch():
    x = torch.arange(3 * 50, dtype=torch.float32).reshape(3, 50)
    y = A.RandomCrop(20)(x, gen())
    assert y.shape == (3, 20)
    for i, row in enumerate(y):
        assert torch.equal(row, torch.arange(row[0], row[0] + 20)) and row[0] >= 50 * i
    z = A.RandomCrop(80)(x, gen())
    assert z.shape == (3, 80)
    assert torch.equal(torch.sort(torch.unique(z[1])).values, x[1])


def test_fast_fft_len():
    for n in [1, 7, 1000, 32000, 39999, 40961]:
        m = A.fast_fft_len(n)
        assert m >= n
        while m % 2 == 0:
            m //= 2
        assert m in (1, 3, 5)
    assert A.fast_fft_len(32000) == 32768 and A.fast_fft_len(39999) == 40960


def test_build_augment(tmp_path, speech):
    chain = A.build_augment(AugmentConfig(), tmp_path, SR)
    names = [type(a).__name__ for a in chain.augmentations]
    assert names == ["SpeedPerturb", "Reverb", "AddNoise", "Gain"]
    assert chain(speech, gen()).shape == speech.shape
    assert len(A.build_augment(AugmentConfig(enabled=False), tmp_path, SR)) == 0
    with pytest.raises(ConfigError):
        A.build_augment(AugmentConfig(babble_p=0.5), tmp_path, SR)
    with_babble = A.build_augment(AugmentConfig(babble_p=0.5), tmp_path, SR, babble_source)
    assert "Babble" in [type(a).__name__ for a in with_babble.augmentations]
    with pytest.raises(DataError, match="missing"):
        A.build_augment(AugmentConfig(noise_dir="missing"), tmp_path, SR)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        A.build_augment(AugmentConfig(rir_dir="empty"), tmp_path, SR)
    make_noise_dir(tmp_path)  # relative to root
    cfg = AugmentConfig(noise_dir="noise", noise_p=1.0, speed_p=0, reverb_p=0, gain_p=0)
    chain = A.build_augment(cfg, tmp_path, SR)
    assert chain.augmentations[0].bank is not None
    with pytest.raises(ConfigError):
        A.build_augment(AugmentConfig(snr_db=[10.0, 0.0]), tmp_path, SR)


def band_db(x: torch.Tensor, low: float, high: float) -> float:
    """Share of ``x``'s power between ``low`` and ``high`` Hz, dB."""
    power = torch.fft.rfft(x.double()).abs() ** 2
    f = torch.fft.rfftfreq(x.shape[-1], 1 / SR)
    return float(10 * torch.log10(power[(f >= low) & (f < high)].sum() / power.sum()))


def test_codec_band_limits_and_keeps_alignment():
    x = torch.from_numpy(
        synthesize_utterance(
            synth_voice_params(np.random.default_rng(1)), np.random.default_rng(1), 2.0, SR
        )
    )
    x = (x + 0.01 * torch.randn(len(x), generator=gen())).float()[None]  # energy up to 8 kHz
    best = A.Codec(levels=(0.0, 0.0), p=1.0)(x, gen())
    worst = A.Codec(levels=(0.99, 0.99), p=1.0)(x, gen())
    assert band_db(x[0], 7600, 8000) > -40
    assert band_db(worst[0], 7600, 8000) < band_db(x[0], 7600, 8000) - 20
    # aligned: the error is far under the signal at lag 0, and smaller at the better level
    err = [float(((y - x) ** 2).sum() / (x**2).sum()) for y in (best, worst)]
    assert err[0] < err[1] < 0.3
    with pytest.raises(ConfigError, match="codec_levels"):
        A.Codec(levels=(0.5, 1.0))
    with pytest.raises(ConfigError, match="44000 Hz"):
        A.Codec(sample_rate=44000)


def test_build_augment_puts_the_codec_before_gain(tmp_path):
    cfg = AugmentConfig(codec_p=0.5, speed_p=0, reverb_p=0, noise_p=0)
    names = [type(a).__name__ for a in A.build_augment(cfg, tmp_path, SR).augmentations]
    assert names == ["Codec", "Gain"]


def test_rejects_non_batch():
    with pytest.raises(ValueError, match=r"\(B, S\)"):
        A.Gain(p=1.0)(torch.zeros(100), gen())
