"""Score fusion of two models on trial lists: the EER of ``w * cos_A + (1 - w) * cos_B`` for a
grid of weights ``w``, beside each model alone (raw cosine, whole recordings, no speech check).

A preview of what an ensemble of different encoders buys; the weights it prints are read on
the trial lists themselves, so a weight chosen here must be fitted again on trials that are not
the dev set before a model ships with it.

    python studies/study_fusion.py --model audiocl/pretrained/starter.pt --model ge2e.pt \\
        --set ../shared/data/dev/hsb-commonvoice --set ../shared/data/dev/speechcommands-1s

Prints a table, then one JSON line of the EERs (fractions).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="exactly two, A then B")
    p.add_argument(
        "--set", action="append", required=True, type=Path, help="folder with trials.txt"
    )
    args = p.parse_args(argv)
    if len(args.model) != 2:
        p.error("give --model twice")

    import audiocl
    from audiocl.data.trials import read_trials
    from audiocl.scoring.evaluation import trial_files
    from audiocl.scoring.metrics import compute_metrics
    from audiocl.scoring.scores import score_pairs, trial_indices

    models = [audiocl.load_model(m, min_speech=0.0) for m in args.model]
    result: dict = {"models": args.model, "weights_of_a": list(WEIGHTS), "sets": {}}
    print(f"EER of w * A + (1 - w) * B; A = {args.model[0]}, B = {args.model[1]}")
    print(f"{'set':<26}" + "".join(f"{'w=' + format(w, 'g'):>9}" for w in WEIGHTS))
    for root in args.set:
        trials = read_trials(root / "trials.txt")
        files = trial_files(trials)
        index = {f: i for i, f in enumerate(files)}
        enroll, test, labels = trial_indices(trials, index)
        scores = []
        for model in models:
            emb = model.embed_many([str(root / f) for f in files])
            scores.append(score_pairs(emb, enroll, test))
        eers = [
            float(compute_metrics(w * scores[0] + (1 - w) * scores[1], labels)["eer"])
            for w in WEIGHTS
        ]
        result["sets"][root.name] = eers
        print(f"{root.name:<26}" + "".join(f"{100 * e:>8.2f}%" for e in eers))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
