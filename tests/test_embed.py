"""Embedder: normalised outputs, chunking of long audio, batch independence, bad files."""

import numpy as np
import pytest
import torch

from audiocl.config import Config
from audiocl.errors import AudioError
from audiocl.inference.embed import Embedder
from audiocl.io.vad import SpeechGate
from audiocl.nn.encoders import build_encoder
from audiocl.nn.features import Fbank

SR = 16000


@pytest.fixture(scope="module")
def modules():
    cfg = Config()
    cfg.model.channels, cfg.model.embed_dim, cfg.features.n_mels = 32, 16, 40
    torch.manual_seed(0)
    fbank = Fbank.from_config(cfg.features, SR)
    encoder = build_encoder(cfg.model, cfg.features.n_mels)
    return fbank.eval(), encoder.eval()


def _wave(seconds, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    f0 = 100 + 50 * seed
    w = sum(torch.sin(2 * torch.pi * f0 * k * t) / k for k in range(1, 6))
    return (0.1 * w + 0.01 * torch.randn(t.shape, generator=g)).float()


def test_outputs_are_normalised_float32(modules):
    emb = Embedder(*modules, sample_rate=SR)
    x = emb.embed_waves([_wave(1.0, 1), _wave(2.5, 2), _wave(0.3, 3)])
    assert x.shape == (3, 16) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert emb.embed_dim == 16


def test_batch_independence(modules):
    """A file embedded alone or in a batch with others (same or other lengths) gives one vector."""
    emb = Embedder(*modules, sample_rate=SR)
    w = _wave(2.0, 1)
    alone = emb.embed_waveform(w)
    others = [_wave(2.0, 2), _wave(1.97, 3), _wave(3.3, 4), w[:-80], _wave(0.7, 5)]
    together = emb.embed_waves([*others[:3], w, *others[3:]])
    np.testing.assert_allclose(together[3], alone, atol=1e-5)


def test_short_file_is_not_chunked(modules):
    """Below the chunk size, chunked and unchunked embedders agree exactly."""
    w = _wave(3.0, 1)
    a = Embedder(*modules, sample_rate=SR, chunk_seconds=4.0).embed_waveform(w)
    b = Embedder(*modules, sample_rate=SR, chunk_seconds=600.0).embed_waveform(w)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_long_file_is_length_weighted_mean_of_chunks(modules):
    """A file longer than the chunk size is cut into equal pieces whose embeddings are averaged
    (weighted by their length): memory stays bounded, the result stays close to the
    whole-file embedding."""
    fbank, encoder = modules
    w = _wave(5.0, 2)
    emb = Embedder(fbank, encoder, sample_rate=SR, chunk_seconds=2.0)
    got = emb.embed_waveform(w)
    pieces = emb._pieces(w)
    assert len(pieces) == 3 and max(p.numel() for p in pieces) <= 2 * SR
    with torch.inference_mode():
        parts = [encoder(fbank(p[None]))[0] * p.numel() for p in pieces]
    expect = torch.nn.functional.normalize(sum(parts), dim=0).numpy()
    np.testing.assert_allclose(got, expect, atol=1e-5)
    whole = Embedder(fbank, encoder, sample_rate=SR, chunk_seconds=60.0).embed_waveform(w)
    assert float(got @ whole) > 0.95


def test_whole_recording_is_embedded(modules):
    """Every sample counts: recordings of different lengths in one call give what each gives
    alone, which is the encoder's output on the whole waveform."""
    fbank, encoder = modules
    emb = Embedder(fbank, encoder, sample_rate=SR)
    waves = [_wave(1.37, 3), _wave(2.11, 4), _wave(1.37, 5)]
    together = emb.embed_waves(waves)
    for w, got in zip(waves, together, strict=True):
        with torch.inference_mode():
            expect = torch.nn.functional.normalize(encoder(fbank(w[None]))[0], dim=0).numpy()
        np.testing.assert_allclose(got, expect, atol=1e-5)
        np.testing.assert_allclose(got, emb.embed_waveform(w), atol=1e-5)


def test_embed_files_errors_and_progress(modules, tmp_path):
    import soundfile as sf

    good = tmp_path / "good.wav"
    sf.write(good, _wave(1.0, 1).numpy(), SR)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    # a steady tone is no speech; unreadable files are tested
    emb = Embedder(*modules, sample_rate=SR, gate=SpeechGate(min_speech=0))
    with pytest.raises(AudioError, match="bad.wav"):
        emb.embed_files([good, bad])
    seen, done = [], []
    x = emb.embed_files(
        [good, bad, good], progress=done.append, on_error=lambda i, e: seen.append(i)
    )
    assert seen == [1] and sum(done) == 3
    assert np.isnan(x[1]).all() and np.isfinite(x[[0, 2]]).all()
    np.testing.assert_allclose(x[0], x[2], atol=1e-6)
