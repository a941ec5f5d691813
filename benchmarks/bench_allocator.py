"""CPU training step with and without ``train.keep_freed_memory`` (``audiocl/training/allocator.py``).

Each measurement is a fresh process (the allocator setting is process-wide, and a process that
has already freed large blocks is fast by chance), timing ``--steps`` steps after ``--warmup``
with ``train.measure_step_seconds``. The two settings alternate (plain, kept, plain, kept, ...)
so that drift of a noisy machine falls on both. Configs: the shipped ``real_cpu`` (AAM, one
2 s crop) and ``ssl_cpu`` (DINO, 2 x 2 s + 4 x 1 s crops), on synthetic voices with simulated
noise and reverberation, so the script needs no shared data.

    python benchmarks/bench_allocator.py [--repeats 2] [--steps 20] [--configs real_cpu ssl_cpu]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import sys
from audiocl.training.recipe import load_config
from audiocl.training.stages import measure_step_seconds
name, root, keep, warmup, steps = sys.argv[1:6]
cfg = load_config(name, [
    f"data.root={root}", "data.sources=[{path: train, labelled: true}]",
    "augment.noise_dir=''", "augment.rir_dir=''", "augment.files=all",
    f"train.keep_freed_memory={keep}", "pseudo_labels.clusters=0", "pseudo_labels.stage2={}",
])
print(measure_step_seconds(cfg, int(warmup), int(steps)))
"""


def measure(name: str, root: Path, keep: bool, warmup: int, steps: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, name, str(root), str(keep).lower(), str(warmup), str(steps)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=["real_cpu", "ssl_cpu"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()

    from audiocl.data.synth import synthesize_corpus

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize_corpus(
            root / "train", speakers=16, utterances=4, duration=(3.0, 6.0), trials=False
        )
        for name in args.configs:
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.repeats):
                for keep in (False, True):
                    times[keep].append(measure(name, root, keep, args.warmup, args.steps))
            plain, kept = statistics.median(times[False]), statistics.median(times[True])
            rows.append({"config": name, "plain_s": plain, "kept_s": kept, "speedup": plain / kept})
    print(f"{'config':<10} {'plain s/step':>13} {'kept s/step':>12} {'speed-up':>9}")
    for r in rows:
        print(f"{r['config']:<10} {r['plain_s']:>13.3f} {r['kept_s']:>12.3f} {r['speedup']:>8.2f}x")
    print(json.dumps({"bench": "allocator", "steps": args.steps, "rows": rows}))


if __name__ == "__main__":
    main()
