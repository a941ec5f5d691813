import math

import numpy as np
import pytest
import torch

from audiocl.config import FeatureConfig
from audiocl.nn.features import Fbank, SpecAugment, mel_matrix


def _signal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    tone = 0.3 * np.sin(2 * math.pi * 220 * t) * (1 + 0.5 * np.sin(2 * math.pi * 3 * t))
    return (tone + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _kaldi_native(wave: np.ndarray, n_mels: int = 80, window: str = "povey") -> np.ndarray:
    knf = pytest.importorskip("kaldi_native_fbank")
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = window
    opts.frame_opts.samp_freq = 16000
    opts.mel_opts.num_bins = n_mels
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(16000, (wave * 32768.0).tolist())
    fbank.input_finished()
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])


@pytest.mark.parametrize("window", ["povey", "hamming"])
@pytest.mark.parametrize("num_samples", [400, 16000, 24321])
def test_kaldi_mode_matches_kaldi_native_fbank(num_samples, window):
    wave = _signal(num_samples, seed=num_samples)
    ref = torch.from_numpy(_kaldi_native(wave, window=window))
    fbank = Fbank(kaldi=True, dither=0.0, mean_norm=False, window=window).eval()
    ours = fbank(torch.from_numpy(wave)[None])[0]
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-3, atol=1e-3)


def test_shapes_and_from_config():
    cfg = FeatureConfig(n_mels=64, kaldi=False)
    fbank = Fbank.from_config(cfg, sample_rate=16000).eval()
    wave = torch.from_numpy(np.stack([_signal(32000, 1), _signal(32000, 2)]))
    feats = fbank(wave)
    assert feats.shape == (2, 1 + (32000 - 400) // 160, 64) == (2, fbank.num_frames(32000), 64)
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
    # per-utterance mean normalisation: every bin has zero mean over time
    assert feats.mean(dim=1).abs().max() < 1e-4
    # shorter than one window: one (zero-padded) frame
    assert fbank(torch.zeros(3, 100)).shape == (3, 1, 64)
    with pytest.raises(ValueError):
        fbank(torch.zeros(100))


def test_mel_matrix_is_kaldi_like():
    mel = mel_matrix(80, 512, 16000)
    assert mel.shape == (257, 80)
    assert (mel >= 0).all() and (mel <= 1).all()
    assert mel[-1].abs().sum() == 0  # no weight on the Nyquist bin
    assert (mel.sum(dim=0) > 0).all()  # every filter has support


def test_dither_only_in_training():
    wave = torch.from_numpy(_signal(8000))[None].repeat(2, 1)
    fbank = Fbank(dither=1.0)
    fbank.eval()
    a, b = fbank(wave), fbank(wave)
    assert torch.equal(a, b)
    assert torch.equal(a, Fbank(dither=0.0).eval()(wave))
    fbank.train()
    c = fbank(wave, generator=torch.Generator().manual_seed(0))
    d = fbank(wave, generator=torch.Generator().manual_seed(0))
    e = fbank(wave, generator=torch.Generator().manual_seed(1))
    assert torch.equal(c, d) and not torch.equal(c, e) and not torch.equal(c, a)


def test_specaugment_only_in_training():
    feats = torch.randn(16, 50, 40) + 5.0
    aug = SpecAugment.from_config(FeatureConfig(specaug_p=1.0, time_mask_max=10, freq_mask_max=8))
    aug.eval()
    assert aug(feats) is feats
    aug.train()
    out = aug(feats, generator=torch.Generator().manual_seed(0))
    again = aug(feats, generator=torch.Generator().manual_seed(0))
    assert out.shape == feats.shape and torch.equal(out, again)
    masked = out == 0
    assert masked.any()
    # masks are full-length bands: a masked time frame is masked in every bin, or a masked bin
    # in every frame
    for i in range(feats.shape[0]):
        m = masked[i]
        rows, cols = m.all(dim=1), m.all(dim=0)
        assert torch.equal(m, rows[:, None] | cols[None, :])
        assert rows.sum() <= 10 and cols.sum() <= 8
    assert torch.equal(out[~masked], feats[~masked])
    assert torch.equal(SpecAugment(p=0.0).train()(feats), feats)


def test_fbank_is_float32_under_autocast():
    wave = torch.from_numpy(_signal(4000))[None]
    fbank = Fbank(dither=0.0).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fbank(wave)
    assert out.dtype == torch.float32 and torch.equal(out, fbank(wave))
