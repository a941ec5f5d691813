"""Regenerate the import parity fixtures
(``tests/fixtures/import_{wespeaker,speechbrain,resemblyzer}.json``) with each toolkit's own code.

For each architecture the script builds the toolkit's module, fills every tensor with seeded
random values (``seeded_state``: no weights are stored, the tests rebuild them from the seed),
and computes the toolkit's own embedding of a seeded test signal. The fixtures also keep batch-norm
statistics calibrated on the network's own activations (``calibrate_batch_norm``): with random
statistics the embedding hardly depends on the input. ``--check FILE...`` also imports each
model into audiocl and prints the cosine with the toolkit on real recordings. The fixture keeps each
model's config, tensor names and shapes, the seeds and that reference embedding; the tests
(which need neither toolkit) rebuild the same weights, import them with ``audiocl import`` and
compare embeddings (cosine >= 0.999).

- ``--wespeaker SRC``: WeSpeaker's module from its source (a checkout of
  github.com/wenet-e2e/wespeaker; only ``wespeaker/models/{ecapa_tdnn,resnet,
  pooling_layers}.py`` are loaded, so neither torchaudio nor WeSpeaker's other dependencies are
  needed); its inference: Kaldi fbank (kaldi-native-fbank, hamming window, dither 0) on
  16-bit-scale samples, per-utterance mean subtraction, then the model.
- ``--speechbrain``: SpeechBrain 1.1.2 from the package registry, in a separate venv (it needs
  torchaudio). Each model is written as a published model folder (``hyperparams.yaml`` with
  HyperPyYAML tags + ``embedding_model.ckpt``), loaded with ``EncoderClassifier.from_hparams``
  and run through ``encode_batch``: SpeechBrain's whole inference path.

    git clone https://github.com/wenet-e2e/wespeaker /tmp/wespeaker
    python scripts/make_import_fixtures.py --wespeaker /tmp/wespeaker [--check FILE...]
    python -m venv /tmp/sb && /tmp/sb/bin/pip install torch==2.9.1 'torchaudio==2.9.*' \
        speechbrain==1.1.2 kaldi-native-fbank soxr matplotlib
    PYTHONPATH=. /tmp/sb/bin/python scripts/make_import_fixtures.py --speechbrain \
        [--check ../shared/data/dev/hsb-commonvoice/*/*.flac]

- ``--resemblyzer``: Resemblyzer 0.1.4 in a separate venv (it needs webrtcvad and librosa). Its
  ``VoiceEncoder`` gets seeded weights in ``pretrained.pt``'s layout and embeds seeded signals of
  several lengths with ``embed_utterance`` after ``preprocess_wav``'s volume normalisation (its
  webrtcvad trimming is left to audiocl's ``--vad``). ``--check`` uses the real weights from the
  installed package and prints the cosine with audiocl's import twice: with Resemblyzer given
  the volume-normalised recording, and given ``preprocess_wav``'s whole output (trimmed).

    python -m venv /tmp/rz && /tmp/rz/bin/pip install torch librosa webrtcvad-wheels soundfile \
        soxr matplotlib pyyaml tqdm scipy && /tmp/rz/bin/pip install --no-deps resemblyzer==0.1.4
    PYTHONPATH=. /tmp/rz/bin/python scripts/make_import_fixtures.py --resemblyzer \
        [--check ../shared/data/dev/speechcommands-1s/*/*/*.flac]
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

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
SR = 16000
MODELS = [  # (WeSpeaker model name, model_args)
    ("ECAPA_TDNN_GLOB_c512", {"feat_dim": 80, "embed_dim": 192, "pooling_func": "ASTP"}),
    ("ECAPA_TDNN_GLOB_c1024", {"feat_dim": 80, "embed_dim": 192, "pooling_func": "ASTP"}),
    ("ResNet34", {"feat_dim": 80, "embed_dim": 256, "pooling_func": "TSTP"}),
]
# SpeechBrain: (fixture name, Fbank args, ECAPA_TDNN args); small widths keep the fixture small.
# The first is spkrec-ecapa-voxceleb's layout, narrower; the second moves every other knob.
SB_MODELS = [
    (
        "ecapa_voxceleb_layout",
        {},
        {
            "channels": [64, 64, 64, 64, 192],
            "kernel_sizes": [5, 3, 3, 3, 1],
            "dilations": [1, 2, 3, 4, 1],
            "attention_channels": 16,
            "se_channels": 16,
            "lin_neurons": 32,
        },
    ),
    (
        "ecapa_two_blocks_no_context",
        {"n_fft": 512, "f_min": 20, "f_max": 7600},
        {
            "channels": [32, 48, 48, 96],
            "kernel_sizes": [3, 3, 5, 1],
            "dilations": [1, 2, 3, 1],
            "attention_channels": 8,
            "res2net_scale": 4,
            "se_channels": 8,
            "global_context": False,
            "lin_neurons": 24,
        },
    ),
]
SB_MELS = {"ecapa_voxceleb_layout": 80, "ecapa_two_blocks_no_context": 64}


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


def test_signal(seconds: float, seed: int, f0: float = 120.0) -> np.ndarray:
    """A seeded voiced, syllable-modulated signal (pitch around ``f0`` Hz) with a little noise,
    float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SR))) / SR
    f0 = f0 * (1 + 0.1 * np.sin(2 * math.pi * 0.7 * t))
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


def test_length() -> int:
    """Samples of the test signal (the WeSpeaker fixtures, older, keep their own count)."""
    return 3 * SR


def hyperparams(n_mels: int, fbank: dict, ecapa: dict) -> str:
    """A ``hyperparams.yaml`` in the layout of SpeechBrain's published speaker models."""

    def block(args: dict) -> str:
        return "".join(f"    {k}: {json.dumps(v)}\n" for k, v in args.items())

    return f"""# ############################################################################
# Model: ECAPA for speaker verification (audiocl import fixture: seeded random weights)
# ############################################################################

n_mels: {n_mels}
pretrained_path: audiocl/fixture
out_n_neurons: 10

compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
{block(fbank)}
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
{block(ecapa)}
classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: {ecapa["lin_neurons"]}
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
"""


def entry(name: str, shapes, seed: int, batch_norm: dict, emb: torch.Tensor, **extra) -> dict:
    """One model's fixture: how to rebuild its weights, the test signal, the reference."""
    print(f"{name}: {len(shapes)} tensors, embedding norm {float(emb.norm()):.3f}")
    return {
        "model": name,
        **extra,
        "shapes": shapes,
        "seed": seed,
        "batch_norm": batch_norm,
        "signal": {"samples": test_length(), "seed": 7},
        "embedding": [round(float(x), 7) for x in emb],
    }


def speechbrain_fixtures(check: list[Path]) -> dict:
    """SpeechBrain's own ``encode_batch`` embeddings of the seeded models (and, with ``check``,
    audiocl's import against it on those recordings)."""
    import tempfile

    from speechbrain.inference.classifiers import EncoderClassifier
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    samples = test_length()
    wave = torch.from_numpy(test_signal(samples / SR, seed=7))[None]
    fixtures = []
    for k, (name, fbank, ecapa) in enumerate(SB_MODELS):
        n_mels, seed = SB_MELS[name], 2000 + k
        net = ECAPA_TDNN(n_mels, **ecapa).eval()
        shapes = [(n, list(t.shape), str(t.dtype)) for n, t in net.state_dict().items()]
        text = hyperparams(n_mels, fbank, ecapa)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / name
            folder.mkdir()
            (folder / "hyperparams.yaml").write_text(text)
            torch.save(seeded_state(shapes, seed), folder / "embedding_model.ckpt")
            clf = EncoderClassifier.from_hparams(
                source=str(folder),
                savedir=f"{tmp}/save",
                overrides={"pretrained_path": str(folder)},  # the folder, not the hub
            )
            waves = calibration_waves()
            lens = torch.ones(len(waves))
            with torch.no_grad():
                feats = clf.mods.mean_var_norm(clf.mods.compute_features(waves), lens)
            batch_norm = calibrate_batch_norm(
                clf.mods.embedding_model, lambda net, x=feats, n=lens: net(x, n)
            )
            torch.save(clf.mods.embedding_model.state_dict(), folder / "embedding_model.ckpt")
            with torch.no_grad():
                emb = clf.encode_batch(wave)[0, 0]
            if check:
                check_import(
                    "speechbrain", folder, check, lambda w, c=clf: c.encode_batch(w[None])[0, 0]
                )
        fixtures.append(entry(name, shapes, seed, batch_norm, emb, n_mels=n_mels, hyperparams=text))
    return {"source": "speechbrain", "version": "1.1.2", "models": fixtures}


def calibration_waves(seeds: range = range(100, 106)) -> torch.Tensor:
    """``(N, S)`` seeded signals of several pitches for ``calibrate_batch_norm``."""
    samples = test_length()
    return torch.stack(
        [torch.from_numpy(test_signal(samples / SR, s, f0=90 + 7 * (s % 9))) for s in seeds]
    )


def calibrate_batch_norm(net: torch.nn.Module, forward) -> dict[str, list[float]]:
    """Set the batch-norm statistics of ``net`` to those of its own activations in one
    training-mode pass, ``forward(net)``, over ``calibration_waves`` (with random statistics
    the embedding hardly depends on the input, and a parity test could not fail); returns
    them rounded to 5 significant digits for the fixture, and loads the rounded values so that
    the reference embedding uses exactly those."""
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # the batch's own statistics
    net.train()
    with torch.no_grad():  # one batch: the pooled layers need more than one value per channel
        forward(net)
    net.eval()
    stats = {
        k: [float(f"{x:.5g}") for x in v.tolist()]
        for k, v in net.state_dict().items()
        if k.endswith(("running_mean", "running_var"))
    }
    net.load_state_dict({k: torch.tensor(v) for k, v in stats.items()}, strict=False)
    return stats


def check_import(
    toolkit: str, folder: Path, files: list[Path], reference, vad: str | None = None
) -> None:
    """Print the cosines between the toolkit's embeddings (``reference(wave) -> (D,)``) and
    those of the model imported from ``folder`` into audiocl, on whole recordings (trimmed by
    audiocl's ``vad`` detector, when given; a file it finds no speech in to trim is skipped)."""
    import soundfile as sf

    import audiocl
    from audiocl.errors import NoSpeechError
    from audiocl.interop.importers import IMPORTERS
    from audiocl.modelfile import checkpoint

    out = folder / "audiocl.pt"
    checkpoint.save(out, IMPORTERS[toolkit](folder))
    model = audiocl.load_model(out, vad=vad, min_speech=0.0)  # every file, speech or not
    cosines = []
    for f in files:
        audio, sr = sf.read(f, dtype="float32")
        if sr != SR:
            raise SystemExit(f"{f}: {sr} Hz, the fixtures' models take {SR} Hz")
        try:
            got = torch.from_numpy(model.embed(audio)).double()
        except NoSpeechError:
            continue
        with torch.no_grad():
            ref = reference(torch.from_numpy(audio)).double()
        cosines.append(float(got @ ref / ref.norm() / got.norm()))
    print(
        f"{folder.name}: cosine of audiocl's import with {toolkit} on {len(cosines)} recordings "
        f"({len(files) - len(cosines)} without speech to trim): min {min(cosines):.7f}, "
        f"mean {sum(cosines) / len(cosines):.7f}"
    )


def wespeaker_fixtures(src: Path, check: list[Path]) -> dict:
    """WeSpeaker's own embeddings of the seeded models: Kaldi fbank + mean subtraction, then
    the model (and, with ``check``, audiocl's import against it on those recordings)."""
    import tempfile

    import yaml

    mods = load_wespeaker_models(src)
    samples = test_length()
    wave = test_signal(samples / SR, seed=7)
    fixtures = []
    for k, (name, model_args) in enumerate(MODELS):
        module = mods["ecapa_tdnn"] if name.startswith("ECAPA") else mods["resnet"]
        net = getattr(module, name)(**model_args).eval()
        shapes = [(n, list(t.shape), str(t.dtype)) for n, t in net.state_dict().items()]
        seed = 1000 + k
        net.load_state_dict(seeded_state(shapes, seed))
        mels = model_args["feat_dim"]

        def embed(w, net=net, mels=mels) -> torch.Tensor:
            with torch.no_grad():
                return net(kaldi_fbank(w.numpy(), mels)[None])[1][0]

        feats = torch.stack([kaldi_fbank(w.numpy(), mels) for w in calibration_waves()])
        batch_norm = calibrate_batch_norm(net, lambda net, feats=feats: net(feats))
        emb = embed(torch.from_numpy(wave))
        if check:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / name
                folder.mkdir()
                config = {"model": name, "model_args": model_args}
                (folder / "config.yaml").write_text(yaml.safe_dump(config))
                torch.save(net.state_dict(), folder / "avg_model.pt")
                check_import("wespeaker", folder, check, embed)
        fixtures.append(entry(name, shapes, seed, batch_norm, emb, model_args=model_args))
    return {"source": "wespeaker", "models": fixtures}


RZ_SIGNALS = [(3.7, 7), (1.0, 8), (0.6, 9)]  # (seconds, seed): several partials, one, padded


def resemblyzer_fixtures(check: list[Path]) -> dict:
    """Resemblyzer's own ``embed_utterance`` of seeded weights (and, with ``check``, the cosine
    of the real weights' import with Resemblyzer on real recordings)."""
    import tempfile

    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume, preprocess_wav
    from resemblyzer.hparams import audio_norm_target_dBFS

    def prepared(wave: np.ndarray) -> np.ndarray:
        return normalize_volume(wave, audio_norm_target_dBFS, increase_only=True)

    real = Path(importlib.util.find_spec("resemblyzer").origin).parent / "pretrained.pt"
    state = torch.load(real, map_location="cpu", weights_only=True)["model_state"]
    shapes = [(k, list(v.shape), str(v.dtype)) for k, v in state.items()]
    seed = 3000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pretrained.pt"
        torch.save({"step": 0, "model_state": seeded_state(shapes, seed)}, path)
        encoder = VoiceEncoder("cpu", verbose=False, weights_fpath=path)
        signals = []
        for seconds, s in RZ_SIGNALS:
            wave = test_signal(seconds, s)
            emb = encoder.embed_utterance(prepared(wave))
            signals.append({"samples": wave.size, "seed": s, "embedding": emb.round(7).tolist()})
    if check:
        real_encoder = VoiceEncoder("cpu", verbose=False)
        folder = Path(tempfile.mkdtemp())
        (folder / "pretrained.pt").write_bytes(real.read_bytes())
        cases = [
            ("volume-normalised", prepared, None),
            ("preprocess_wav", preprocess_wav, None),
            ("preprocess_wav", preprocess_wav, "energy"),
        ]
        for label, prep, vad in cases:
            print(f"Resemblyzer given the {label} recording, audiocl --vad {vad}:")
            check_import(
                "resemblyzer",
                folder,
                check,
                lambda w, prep=prep: torch.from_numpy(
                    real_encoder.embed_utterance(prep(w.numpy()))
                ),
                vad,
            )
    import resemblyzer

    version = getattr(resemblyzer, "__version__", "0.1.4")
    return {"source": "resemblyzer", "version": version, "model": "ge2e", "seed": seed,
            "shapes": shapes, "signals": signals}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wespeaker", type=Path, help="WeSpeaker source checkout")
    p.add_argument("--speechbrain", action="store_true", help="use the installed SpeechBrain")
    p.add_argument("--resemblyzer", action="store_true", help="use the installed Resemblyzer")
    p.add_argument("--check", type=Path, nargs="*", default=[], help="real recordings (16 kHz)")
    p.add_argument("--out", type=Path, default=FIXTURES, help="fixtures folder")
    args = p.parse_args(argv)
    if not (args.wespeaker or args.speechbrain or args.resemblyzer):
        p.error("give --wespeaker SRC, --speechbrain and/or --resemblyzer")
    made = []
    if args.wespeaker:
        made.append(wespeaker_fixtures(args.wespeaker, args.check))
    if args.speechbrain:
        made.append(speechbrain_fixtures(args.check))
    if args.resemblyzer:
        made.append(resemblyzer_fixtures(args.check))
    args.out.mkdir(parents=True, exist_ok=True)
    for fixture in made:
        path = args.out / f"import_{fixture['source']}.json"
        path.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")  # compact
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
