"""Regenerate ``sample_audio/``: 3 synthetic voices x 2 clips of 3 s, 16 kHz 16-bit FLAC.

Deterministic: running it again rewrites identical files. The voices are speakers of
``audiocl.data.synth`` with the master seed below (chosen to be clearly different: a high, a low and
a mid voice); both clips of a voice share one recording channel, with new words each time.

    python scripts/make_sample_audio.py [--out sample_audio]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from audiocl.data.synth import synth_channel, synth_voice_params, synthesize_utterance
from audiocl.io.audio import save

SEED = 2024
VOICES = {"alice": 0, "bob": 8, "carol": 5}  # name -> speaker id under SEED
SECONDS = 3.0
SAMPLE_RATE = 16000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "sample_audio"
    )
    args = ap.parse_args()
    for name, sid in VOICES.items():
        voice = synth_voice_params(np.random.default_rng([SEED, sid, 0]))
        channel = synth_channel(np.random.default_rng([SEED, sid, 1, 0]), SAMPLE_RATE)
        for clip in (1, 2):
            rng = np.random.default_rng([SEED, sid, 2, clip])
            wave = synthesize_utterance(voice, rng, SECONDS, SAMPLE_RATE, channel)
            path = args.out / f"{name}_{clip}.flac"
            save(path, wave, SAMPLE_RATE)
            print(f"{path}  (F0 {voice.f0:.0f} Hz, vocal-tract scale {voice.vtl:.2f})")


if __name__ == "__main__":
    main()
