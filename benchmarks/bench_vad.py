"""Benchmark: the two voice activity detectors (``audiocl.io.vad``), speed and effect on the EER.

* speed: real-time factor of each detector alone (decoded audio in memory, 1 thread);
* refusals: how many files of each trial list get less speech than the gate needs
  (``SpeechGate.needed``: ``--min-speech`` seconds, a tenth of a shorter recording), the files a
  user would see refused as "no speech found";
* effect: EER of ``--model`` on each trial list without trimming and with ``--vad`` trimming by
  each detector (raw cosine, no cache).

    python benchmarks/bench_vad.py --model runs/real_cpu/model.pt \\
        --trials ../shared/data/dev/hsb-commonvoice/trials.txt \\
        --audio-root ../shared/data/dev/hsb-commonvoice [--trials T2 --audio-root R2]

Prints a table, then one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--trials", action="append", required=True, help="trial list (repeatable)")
    p.add_argument("--audio-root", action="append", required=True, help="one per --trials")
    p.add_argument("--min-speech", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if len(args.trials) != len(args.audio_root):
        p.error("give one --audio-root per --trials")

    import importlib.util

    import torch

    import audiocl
    from audiocl.data.trials import read_trials
    from audiocl.io import audio
    from audiocl.io.vad import DETECTORS, HOP_SECONDS, SpeechGate

    torch.set_num_threads(args.threads)
    detectors = [d for d in DETECTORS if d != "silero" or importlib.util.find_spec("silero_vad")]
    result: dict = {"model": args.model, "detectors": detectors, "sets": {}}
    rows = []
    for trials, root in zip(args.trials, args.audio_root, strict=True):
        name = Path(trials).parent.name
        files = sorted({f for t in read_trials(Path(trials)) for f in (t.enroll, t.test)})
        waves = [audio.load(Path(root) / f, 16000) for f in files]
        seconds = sum(w.numel() for w in waves) / 16000
        entry: dict = {"files": len(files), "audio_seconds": round(seconds, 1)}
        torch.set_num_threads(1)
        for det in detectors:
            detect = DETECTORS[det]()
            detect(waves[0], 16000)  # warm-up (loads Silero's model)
            t0 = time.perf_counter()
            speech = [float(detect(w, 16000).sum()) * HOP_SECONDS for w in waves]
            elapsed = time.perf_counter() - t0
            needed = SpeechGate(min_speech=args.min_speech).needed
            entry[det] = {
                "rtf": round(seconds / elapsed, 1),
                "refused": sum(
                    s < needed(w.numel() / 16000) for s, w in zip(speech, waves, strict=True)
                ),
                "speech_fraction": round(sum(speech) / seconds, 3),
            }
        torch.set_num_threads(args.threads)
        for vad in [None, *detectors]:
            model = audiocl.load_model(args.model, vad=vad, min_speech=0.0)
            report = model.evaluate(trials, root, cache=False, skip_bad=True)
            entry[f"eer_{vad or 'none'}"] = report["raw"]["eer"]
        result["sets"][name] = entry
        rows.append((name, entry))

    print(f"voice activity detection, model {args.model}")
    print(f"{'trial list':<28}{'detector':<10}{'RTF':>9}{'refused':>9}{'speech':>8}{'EER':>9}")
    for name, e in rows:
        print(f"{name:<28}{'(no trim)':<10}{'':>9}{'':>9}{'':>8}{e['eer_none']:>8.2%}")
        for det in detectors:
            d = e[det]
            print(
                f"{'':<28}{det:<10}{d['rtf']:>8.0f}x{d['refused']:>9}"
                f"{d['speech_fraction']:>8.0%}{e[f'eer_{det}']:>8.2%}"
            )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
