"""Waveform augmentation throughput: seconds of audio processed per CPU-second.

Each augmentation is timed alone with p = 1 (every example augmented), then the full chain
(random crop -> speed -> reverb -> noise -> gain, all with p = 1) and the chain that
``build_augment`` makes from the default ``AugmentConfig`` probabilities. Input: batches of
synthetic speech, cropped to 2 s at 16 kHz; one CPU thread (``torch.set_num_threads(1)``).
Noise and RIRs come from ``--data``/noise and ``--data``/rir when present, else simulated.
Target: full chain >= 300x real time on one core.

    python benchmarks/bench_augment.py [--data ../shared/data] [--batch 64] [--repeats 10]

Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from audiocl.config import AugmentConfig
from audiocl.data import augment as A
from audiocl.data.synth import synth_voice_params, synthesize_utterance

TARGET = 300.0


def speech_pool(n: int, seconds: float, sample_rate: int) -> torch.Tensor:
    """``(n, S)`` synthetic utterances (the content does not change the timing much)."""
    waves = []
    for i in range(n):
        voice = synth_voice_params(np.random.default_rng([99, i]))
        waves.append(
            synthesize_utterance(voice, np.random.default_rng([99, i, 1]), seconds, sample_rate)
        )
    return torch.from_numpy(np.stack(waves))


def time_it(fn, batch: torch.Tensor, repeats: int, seconds_out: float) -> dict:
    """Median CPU time of ``fn(batch, generator)`` over ``repeats`` runs after one warm-up."""
    g = torch.Generator().manual_seed(0)
    fn(batch, g)
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn(batch, g)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    c, w = statistics.median(cpu), statistics.median(wall)
    audio_s = batch.shape[0] * seconds_out
    return {"cpu_ms": 1000 * c, "wall_ms": 1000 * w, "x_realtime": audio_s / max(c, 1e-9)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    ap.add_argument("--data", type=Path, default=default_data, help="folder with noise/ and rir/")
    ap.add_argument("--batch", type=int, default=64, help="examples per batch (default 64)")
    ap.add_argument("--seconds", type=float, default=2.0, help="crop length (default 2.0 s)")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per row (median)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sr = 16000
    s = int(args.seconds * sr)
    pool = speech_pool(16, args.seconds + 1.0, sr)
    long_batch = pool[torch.arange(args.batch) % pool.shape[0]]  # (B, S + 1 s) for the crop
    batch = long_batch[:, :s].contiguous()

    noise_dir, rir_dir = args.data / "noise", args.data / "rir"
    real_noise = noise_dir.is_dir() and any(noise_dir.glob("*.flac"))
    real_rir = rir_dir.is_dir() and any(rir_dir.glob("*.flac"))
    noise = A.AddNoise.from_folder(noise_dir, sr, p=1.0) if real_noise else A.AddNoise(None, p=1.0)
    rir = A.Reverb.from_folder(rir_dir, sr, p=1.0) if real_rir else A.Reverb(None, p=1.0)

    def babble_source(n, num_samples, generator):
        idx = torch.randint(0, pool.shape[0], (n,), generator=generator)
        return pool[idx, :num_samples]

    crop = A.RandomCrop(s)
    rows = [
        ("gain", A.Gain(p=1.0), batch),
        (f"noise ({'files' if real_noise else 'coloured'})", noise, batch),
        ("noise (coloured)", A.AddNoise(None, p=1.0), batch),
        ("babble (3-6 speakers)", A.Babble(babble_source, p=1.0), batch),
        (f"reverb ({'files' if real_rir else 'simulated'})", rir, batch),
        ("reverb (simulated)", A.Reverb(None, p=1.0), batch),
        ("speed 0.9/1.1", A.SpeedPerturb(p=1.0), batch),
        ("MP3 codec (CPU, one row at a time)", A.Codec(p=1.0), batch),
        ("random crop 3 s -> 2 s", crop, long_batch),
        (
            "full chain, p=1: crop+speed+reverb+noise+gain",
            A.Compose([crop, A.SpeedPerturb(p=1.0), rir, noise, A.Gain(p=1.0)]),
            long_batch,
        ),
        (
            "full chain, p=1, simulated noise and RIRs",
            A.Compose(
                [
                    crop,
                    A.SpeedPerturb(p=1.0),
                    A.Reverb(None, p=1.0),
                    A.AddNoise(None, p=1.0),
                    A.Gain(p=1.0),
                ]
            ),
            long_batch,
        ),
    ]
    cfg = AugmentConfig(
        noise_dir=str(noise_dir) if real_noise else "", rir_dir=str(rir_dir) if real_rir else ""
    )
    default_chain = A.build_augment(cfg, ".", sr, babble_source=babble_source)
    rows.append(
        (
            "full chain, default config p",
            A.Compose([crop, *default_chain.augmentations]),
            long_batch,
        )
    )

    results = {}
    print(
        f"batch {args.batch} x {args.seconds:g} s at {sr} Hz, {args.threads} thread(s), "
        f"noise: {'files' if real_noise else 'simulated'}, RIRs: {'files' if real_rir else 'simulated'}"
    )
    print(f"{'augmentation':<48} {'CPU ms/batch':>12} {'wall ms':>9} {'x real time':>12}")
    for name, fn, inp in rows:
        r = time_it(fn, inp, args.repeats, args.seconds)
        results[name] = r
        print(f"{name:<48} {r['cpu_ms']:>12.1f} {r['wall_ms']:>9.1f} {r['x_realtime']:>12.0f}")
    full = results["full chain, p=1: crop+speed+reverb+noise+gain"]["x_realtime"]
    default = results["full chain, default config p"]["x_realtime"]
    print(
        f"full chain (p=1): {full:.0f}x real time on {args.threads} core(s); target {TARGET:.0f}x: "
        f"{'met' if full >= TARGET else 'NOT met'}"
    )
    figures = {
        "batch": args.batch,
        "crop_s": args.seconds,
        "threads": args.threads,
        "noise": "files" if real_noise else "simulated",
        "rir": "files" if real_rir else "simulated",
        "x_realtime": {k: round(v["x_realtime"], 1) for k, v in results.items()},
        "full_chain_x_realtime": round(full, 1),
        "default_chain_x_realtime": round(default, 1),
        "target_x_realtime": TARGET,
        "target_met": full >= TARGET,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
