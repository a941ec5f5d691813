"""Embed the files of a trial list with Resemblyzer's pretrained GE2E encoder, for
``studies/study_adapt.py --embeddings`` (the reference the starter model is compared with).

Runs in its own environment (no audiocl import): Resemblyzer pins old librosa and webrtcvad.

    python -m venv /tmp/rz && /tmp/rz/bin/pip install torch resemblyzer==0.1.4 "setuptools<81"
    /tmp/rz/bin/python scripts/embed_resemblyzer.py \\
        --trials ../shared/data/dev/hsb-commonvoice/trials.txt --out /tmp/ge2e.npz

Resemblyzer's own usage: ``VoiceEncoder().embed_utterance(preprocess_wav(path))`` (its
resampling, volume normalisation and silence trimming). Writes ``ids`` (as the trial list names
the files), ``embeddings (N, 256)`` and ``model_id``.
"""

import argparse
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=Path, required=True)
    p.add_argument("--audio-root", type=Path, default=None, help="default: the trials' folder")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    from resemblyzer import VoiceEncoder, preprocess_wav

    root = args.audio_root or args.trials.parent
    keys = set()
    for line in args.trials.read_text().splitlines():
        if line.split():
            keys.update(line.split()[1:3])
    ids = sorted(keys)
    encoder = VoiceEncoder(device="cpu")
    emb = np.stack([encoder.embed_utterance(preprocess_wav(root / k)) for k in ids])
    np.savez(
        args.out,
        ids=np.array(ids),
        embeddings=emb.astype(np.float32),
        model_id=np.array("resemblyzer-0.1.4-ge2e"),
    )
    print(f"wrote {len(ids)} embeddings to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
