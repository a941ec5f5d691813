"""Regenerate the import parity fixtures (``tests/fixtures/import_wespeaker.json``) with
WeSpeaker's own model code.

For each architecture the script builds WeSpeaker's module from its source (``--wespeaker``, a
checkout of github.com/wenet-e2e/wespeaker; only ``wespeaker/models/{ecapa_tdnn,resnet,
pooling_layers}.py`` are loaded, so neither torchaudio nor WeSpeaker's other dependencies are
needed), fills every tensor with seeded random values (``seeded_state``: no weights are stored,
the test rebuilds them from the seed), and computes WeSpeaker's embedding of a seeded test
signal the way its inference does: Kaldi fbank (kaldi-native-fbank, hamming window, dither 0)
on 16-bit-scale samples, per-utterance mean subtraction, then the model. The fixture keeps
each model's config, tensor names and shapes, the seeds and that reference embedding; the
tests (which need no WeSpeaker) rebuild the same weights, import them with
``audiocl import wespeaker`` and compare embeddings (cosine >= 0.999).

    git clone https://github.com/wenet-e2e/wespeaker /tmp/wespeaker
    python scripts/make_import_fixtures.py --wespeaker /tmp/wespeaker
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "import_wespeaker.json"
SR = 16000
MODELS = [  # (WeSpeaker model name, model_args)
    ("ECAPA_TDNN_GLOB_c512", {"feat_dim": 80, "embed_dim": 192, "pooling_func": "ASTP"}),
    ("ECAPA_TDNN_GLOB_c1024", {"feat_dim": 80, "embed_dim": 192, "pooling_func": "ASTP"}),
    ("ResNet34", {"feat_dim": 80, "embed_dim": 256, "pooling_func": "TSTP"}),
]


def seeded_state(shapes: list[tuple[str, list[int], str]], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic stand-in weights for ``(name, shape, dtype)``: scaled normal weights, batch
    norm statistics in a plausible range, so that every layer matters."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape, dtype in shapes:
        if dtype.startswith("torch.int"):
            out[name] = torch.zeros(shape, dtype=getattr(torch, dtype.split(".")[1]))
        elif name.endswith("running_var"):
            out[name] = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("running_mean"):
            out[name] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            out[name] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        elif name.endswith("bn.weight") or ".bns." in name or "bn1.weight" in name:
            out[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            out[name] = 0.1 * torch.randn(shape, generator=g)
    return out


def test_signal(seconds: float, seed: int) -> np.ndarray:
    """A seeded voiced, syllable-modulated signal with a little noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SR))) / SR
    f0 = 120 * (1 + 0.1 * np.sin(2 * math.pi * 0.7 * t))
    phase = 2 * math.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 - 0.5 * np.cos(2 * math.pi * 3.3 * t)
    return (0.15 * env * voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def kaldi_fbank(wave: np.ndarray, n_mels: int) -> torch.Tensor:
    """WeSpeaker's features: Kaldi fbank, hamming window, dither 0, then mean subtraction."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = SR
    opts.frame_opts.window_type = "hamming"
    opts.mel_opts.num_bins = n_mels
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(SR, (wave * 32768.0).tolist())
    fbank.input_finished()
    feats = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
    return torch.from_numpy(feats - feats.mean(axis=0, keepdims=True)).float()


def load_wespeaker_models(src: Path):
    """WeSpeaker's ``ecapa_tdnn`` and ``resnet`` modules, loaded by path (its package
    ``__init__`` imports its command line, which needs torchaudio)."""
    for name in ("wespeaker", "wespeaker.models"):
        pkg = types.ModuleType(name)
        pkg.__path__ = []
        sys.modules[name] = pkg
    mods = {}
    for name in ("pooling_layers", "ecapa_tdnn", "resnet"):
        path = src / "wespeaker" / "models" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"wespeaker.models.{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        mods[name] = module
    return mods


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wespeaker", type=Path, required=True, help="WeSpeaker source checkout")
    p.add_argument("--out", type=Path, default=FIXTURE)
    args = p.parse_args(argv)
    from audiocl.embed import bucket_length

    mods = load_wespeaker_models(args.wespeaker)
    # a length the embedder keeps whole (its batching trims to a grid of lengths)
    samples = bucket_length(3 * SR, SR // 2)
    wave = test_signal(samples / SR, seed=7)
    fixtures = []
    for k, (name, model_args) in enumerate(MODELS):
        module = mods["ecapa_tdnn"] if name.startswith("ECAPA") else mods["resnet"]
        net = getattr(module, name)(**model_args).eval()
        shapes = [(n, list(t.shape), str(t.dtype)) for n, t in net.state_dict().items()]
        seed = 1000 + k
        net.load_state_dict(seeded_state(shapes, seed))
        with torch.no_grad():
            _, emb = net(kaldi_fbank(wave, model_args["feat_dim"])[None])
        fixtures.append(
            {
                "model": name,
                "model_args": model_args,
                "shapes": shapes,
                "seed": seed,
                "signal": {"samples": samples, "seed": 7},
                "embedding": [round(float(x), 7) for x in emb[0]],
            }
        )
        print(f"{name}: {len(shapes)} tensors, embedding norm {float(emb.norm()):.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"source": "wespeaker", "models": fixtures}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
