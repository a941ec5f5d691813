"""Benchmark: decoding speed of each container ``audiocl.io.audio.load`` reads, against FLAC.

Training reads random 2 s spans of its files (``load(path, start=..., duration=2.0)``), so span
reads matter most: libsndfile seeks in FLAC and WAV; m4a (AAC) and webm (Opus), which PyAV
decodes, seek to the nearest keyframe and decode 0.2 s of pre-roll. One 60 s, 16 kHz mono
recording (seeded speech-like signal) is written in every format, then decoded whole
(``--repeats`` times) and as ``--spans`` random 2 s spans, on one thread; best of ``--repeats``.

    python benchmarks/bench_decode.py [--seconds 60] [--spans 200] [--repeats 3]

Prints a table (real-time factors and the ratio to FLAC), then one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 16000


def voice(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    env = 0.5 - 0.5 * np.cos(2 * math.pi * 3.0 * t)
    w = sum(np.sin(2 * math.pi * 140 * k * t) / k for k in range(1, 8))
    return (0.2 * env * w + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def write_all(folder: Path, wave: np.ndarray) -> dict[str, Path]:
    import soundfile as sf

    paths = {}
    for name, subtype in (("flac", "PCM_16"), ("wav", "PCM_16"), ("ogg", "VORBIS")):
        paths[name] = folder / f"voice.{name}"
        sf.write(paths[name], wave, SR, subtype=subtype)
    from audiocl.io import av_decode

    if not av_decode.available():
        return paths
    import torch

    from audiocl.io.audio import resample

    for name, codec in (("m4a", "aac"), ("webm", "libopus")):
        rate = 48000 if codec == "libopus" else SR  # Opus runs at 48 kHz
        data = resample(torch.from_numpy(wave), SR, rate).numpy() if rate != SR else wave
        paths[name] = folder / f"voice.{name}"
        av_decode.encode(paths[name], data, rate, codec)
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--spans", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import torch

    from audiocl.io import audio

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    starts = rng.uniform(0, args.seconds - 2.0, size=args.spans)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_all(Path(tmp), voice(args.seconds))
        for name, path in paths.items():
            whole = spans = math.inf
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                audio.load(path, SR)
                whole = min(whole, time.perf_counter() - t0)
                t0 = time.perf_counter()
                for s in starts:
                    audio.load(path, SR, start=float(s), duration=2.0)
                spans = min(spans, time.perf_counter() - t0)
            result[name] = {
                "whole_rtf": round(args.seconds / whole, 1),
                "span_rtf": round(2.0 * args.spans / spans, 1),
                "span_ms": round(1000 * spans / args.spans, 2),
            }
    flac = result["flac"]
    print(f"decoding a {args.seconds:g} s 16 kHz mono file, 1 thread, best of {args.repeats}")
    print(f"{'format':<8}{'whole RTF':>12}{'2 s span RTF':>14}{'ms/span':>10}{'span vs FLAC':>14}")
    for name, r in result.items():
        ratio = r["span_rtf"] / flac["span_rtf"]
        print(
            f"{name:<8}{r['whole_rtf']:>11.0f}x{r['span_rtf']:>13.0f}x{r['span_ms']:>10.2f}"
            f"{ratio:>13.2f}x"
        )
    if "m4a" not in result:
        print("m4a and webm skipped: PyAV is not installed (pip install 'audiocl[formats]')")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
