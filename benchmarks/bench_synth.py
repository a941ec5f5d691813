"""Synthetic voices: synthesis speed and how hard the verification task is.

Synthesizes a corpus (default 20 voices x 12 utterances of 2-4 s, speaker ids from 1000) into a
temporary folder and reports the real-time factor of synthesis and the EER of simple
training-free baselines on its trials.txt:

- MFCC-mean cosine: mean of MFCC 1-19 over the utterance (no normalisation), cosine score.
- MFCC mean+std, standardised: per-dimension z-scores over the corpus, then cosine.

The task should be learnable but not trivial: the plain MFCC-mean baseline should sit well
between 0 % and 50 % EER.

    python benchmarks/bench_synth.py [--speakers 20] [--utterances 12] [--seed 0]

Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import librosa

    from audiocl.data.synth import synthesize_corpus
    from audiocl.data.trials import read_trials
    from audiocl.io.audio import load
    from audiocl.scoring.metrics import eer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speakers", type=int, default=20)
    ap.add_argument("--utterances", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speaker-offset", type=int, default=1000)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = synthesize_corpus(
            Path(tmp) / "corpus",
            speakers=args.speakers,
            utterances=args.utterances,
            seed=args.seed,
            speaker_offset=args.speaker_offset,
        )
        wall = time.perf_counter() - t0
        stats = json.loads((out / "synth.json").read_text())
        trials = read_trials(out / "trials.txt")
        ids = sorted({t.enroll for t in trials} | {t.test for t in trials})
        means, stds = [], []
        for utt in ids:
            w = load(out / utt, 16000).numpy()
            m = librosa.feature.mfcc(y=w, sr=16000, n_mfcc=20, n_fft=512, hop_length=160, n_mels=40)
            means.append(m[1:].mean(1))
            stds.append(m[1:].std(1))
    index = {u: i for i, u in enumerate(ids)}
    a = np.array([index[t.enroll] for t in trials])
    b = np.array([index[t.test] for t in trials])
    labels = np.array([t.label for t in trials])

    def cosine_eer(x: np.ndarray) -> float:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return eer((x[a] * x[b]).sum(1), labels)[0]

    mean = np.array(means)
    both = np.concatenate([mean, np.array(stds)], 1)
    both = (both - both.mean(0)) / both.std(0)
    results = {
        "MFCC-mean cosine": cosine_eer(mean),
        "MFCC mean+std standardised cosine": cosine_eer(both),
    }
    audio_s = stats["audio_seconds"]
    print(
        f"{stats['files']} utterances, {audio_s / 60:.1f} min of audio; synthesis "
        f"{stats['real_time_factor']:.0f}x real time ({audio_s / wall:.0f}x with FLAC writing)"
    )
    print(f"{len(trials)} trials ({labels.sum()} target)")
    print(f"{'baseline':<40} {'EER %':>7}")
    for name, value in results.items():
        print(f"{name:<40} {100 * value:>7.1f}")
    print(
        json.dumps(
            {
                "files": stats["files"],
                "audio_seconds": audio_s,
                "synth_x_realtime": stats["real_time_factor"],
                "synth_with_writing_x_realtime": round(audio_s / wall, 1),
                "trials": len(trials),
                "eer_mfcc_mean": round(results["MFCC-mean cosine"], 4),
                "eer_mfcc_mean_std_standardised": round(
                    results["MFCC mean+std standardised cosine"], 4
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
