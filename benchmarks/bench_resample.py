"""Benchmark: audiocl's torch resampler (``audiocl.io.audio.resample``) against soxr on the CPU.

The question it answers: should decoding resample with soxr (a C library) instead of our own
windowed-sinc polyphase resampler? Ours is needed anyway for batched speed perturbation on the
training device; soxr would only replace it for file decoding. Both run on one thread over the
same seeded 30 s signals, for the rate pairs users bring (44.1 and 48 kHz recordings, 8 kHz
telephone audio) and for speed perturbation (16 kHz x 0.9 and 1.1); the best of ``--repeats``
is kept. Accuracy: the error of each against an exact band-limited reference (a sum of tones
below both Nyquist rates, evaluated analytically at the output times), away from the edges.

    python benchmarks/bench_resample.py [--seconds 30] [--repeats 5]

Prints a table, then one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

PAIRS = [(48000, 16000), (44100, 16000), (8000, 16000), (16000, 14400), (16000, 17600)]
TONES = [(220.0, 0.3), (1330.0, 0.2), (3100.0, 0.1)]  # (Hz, amplitude), below 4 kHz


def tones(sr: int, seconds: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return sum(a * np.sin(2 * math.pi * f * t + phase) for f, a in TONES).astype(np.float32)


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (kernel construction, allocations)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    import torch

    from audiocl.io.audio import resample

    torch.set_num_threads(1)
    try:
        import soxr
    except ImportError:
        soxr = None
    rows = []
    for orig, new in PAIRS:
        x = tones(orig, args.seconds)
        ref = tones(new, args.seconds)
        xt = torch.from_numpy(x)
        ours = resample(xt, orig, new).numpy()
        edge = new // 10  # 0.1 s at each end: filter start-up
        n = min(len(ref), len(ours)) - edge
        row = {
            "pair": f"{orig}->{new}",
            "ours_rtf": args.seconds / best_time(lambda: resample(xt, orig, new), args.repeats),  # noqa: B023
            "ours_err": float(np.max(np.abs(ours[edge:n] - ref[edge:n]))),
        }
        if soxr is not None:
            theirs = soxr.resample(x, orig, new, quality="HQ")
            m = min(len(ref), len(theirs)) - edge
            row["soxr_rtf"] = args.seconds / best_time(
                lambda: soxr.resample(x, orig, new, quality="HQ"),  # noqa: B023
                args.repeats,
            )
            row["soxr_err"] = float(np.max(np.abs(theirs[edge:m] - ref[edge:m])))
        rows.append(row)

    print(f"resampling {args.seconds:g} s of tones, 1 thread, best of {args.repeats}")
    print(
        f"{'rates':<16}{'ours RTF':>11}{'soxr RTF':>11}{'ratio':>8}{'ours err':>11}{'soxr err':>11}"
    )
    for r in rows:
        s_rtf = f"{r['soxr_rtf']:>10.0f}x" if "soxr_rtf" in r else f"{'-':>11}"
        ratio = f"{r['ours_rtf'] / r['soxr_rtf']:>7.2f}x" if "soxr_rtf" in r else f"{'-':>8}"
        s_err = f"{r['soxr_err']:>11.1e}" if "soxr_err" in r else f"{'-':>11}"
        print(f"{r['pair']:<16}{r['ours_rtf']:>10.0f}x{s_rtf}{ratio}{r['ours_err']:>11.1e}{s_err}")
    if soxr is None:
        print("soxr is not installed: pip install soxr")
    print(json.dumps({"seconds": args.seconds, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
