"""How well a model's calibration transfers to new speech: Cllr, minCllr and actDCF against
minDCF on trial lists (raw cosine, whole recordings, no speech check), three ways:

* ``shipped``: the model's own LLR calibration (the starter's: fitted on held-out training
  speakers), on every trial of the set;
* ``adapted``: the model centred on the set's own recordings (``audiocl adapt``: unlabelled, the
  trial files themselves), with the calibration ``adapt`` gives it, on every trial;
* ``recalibrated``: refitted on the set's other speakers. The speakers (first path component of
  a trial file) are split into ``--folds`` seeded folds; the trials within a fold (both sides
  in it) get LLRs from a mapping fitted on the trials that touch no speaker of the fold, and the
  pooled LLRs are measured. Only within-fold trials are scored, so its minDCF and minCllr are
  given for those trials and differ from the other rows'.

    python studies/study_calibration.py --model audiocl/pretrained/starter.pt \\
        --set ../shared/data/dev/hsb-commonvoice --set ../shared/data/dev/speechcommands-1s

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def fold_llrs(scores, labels, enroll_spk, test_spk, folds: int, seed: int = 0):
    """``(llr (M,), labels (M,), scores (M,))`` of the within-fold trials, each fold's LLRs
    from a mapping fitted on the trials of the other folds' speakers (``fit_calibration``)."""
    from audiocl.scoring.calibration import apply_llr, fit_calibration

    speakers = np.unique(np.concatenate([enroll_spk, test_spk]))
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(rng.permutation(speakers), np.arange(speakers.size) % folds, strict=True))
    fe = np.array([fold_of[s] for s in enroll_spk])
    ft = np.array([fold_of[s] for s in test_spk])
    llr, y, s = [], [], []
    for k in range(folds):
        inside = (fe == k) & (ft == k)
        outside = (fe != k) & (ft != k)
        if not labels[inside].any() or labels[inside].all():
            continue  # a fold without both kinds of trial cannot be measured
        record = fit_calibration(scores[outside], labels[outside])
        llr.append(apply_llr(record, scores[inside]))
        y.append(labels[inside])
        s.append(scores[inside])
    return np.concatenate(llr), np.concatenate(y), np.concatenate(s)


def measure(llr, labels, scores) -> dict:
    from audiocl.scoring.calibration import act_dcf, cllr, min_cllr
    from audiocl.scoring.metrics import min_dcf

    out = {"trials": int(labels.size), "cllr": cllr(llr, labels)}
    out["min_cllr"] = min_cllr(scores, labels)
    for p in (0.01, 0.05):
        out[f"act_dcf_{p:g}"] = act_dcf(llr, labels, p)
        out[f"min_dcf_{p:g}"] = min_dcf(scores, labels, p)[0]
    return out


def speakers_of(trials) -> tuple[np.ndarray, np.ndarray]:
    first = lambda f: Path(f).parts[0]  # noqa: E731  <speaker>/<group>/<utt>
    return (
        np.array([first(t.enroll) for t in trials]),
        np.array([first(t.test) for t in trials]),
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model file carrying an LLR calibration")
    p.add_argument(
        "--set", action="append", required=True, type=Path, help="folder with trials.txt"
    )
    p.add_argument("--folds", type=int, default=3, help="speaker folds (default 3)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import audiocl
    from audiocl.scoring.calibration import apply_llr
    from audiocl.scoring.evaluation import trial_files

    model = audiocl.load_model(args.model, min_speech=0.0)
    if not (model.calibration or {}).get("llr"):
        p.error(f"{args.model} has no LLR calibration (audiocl eval --calibrate)")
    rows, result = [], {"model": args.model, "folds": args.folds, "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for root in args.set:
            trials_path = root / "trials.txt"
            r = model.evaluate(trials_path, root, cache=False, result=True)
            y = r.labels.astype(bool)
            got = {"shipped": measure(apply_llr(model.calibration, r.raw), y, r.raw)}
            files = [root / f for f in trial_files(r.trials)]
            adapted = model.adapt(files, Path(tmp) / f"{root.name}.pt")
            ra = adapted.evaluate(trials_path, root, cache=False, result=True)
            if (adapted.calibration or {}).get("llr"):
                got["adapted"] = measure(apply_llr(adapted.calibration, ra.raw), y, ra.raw)
            enroll_spk, test_spk = speakers_of(r.trials)
            llr, yy, scores_in = fold_llrs(r.raw, y, enroll_spk, test_spk, args.folds, args.seed)
            got["recalibrated"] = measure(llr, yy, scores_in)
            result["sets"][root.name] = got
            rows += [(root.name, name, m) for name, m in got.items()]
    head = ["set", "calibration", "trials", "Cllr", "minCllr", "actDCF.01", "minDCF.01"]
    head += ["actDCF.05", "minDCF.05"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, how, m in rows:
        cells = [name, how, str(m["trials"])]
        cells += [f"{m[k]:.3f}" for k in ("cllr", "min_cllr", "act_dcf_0.01", "min_dcf_0.01")]
        cells += [f"{m[k]:.3f}" for k in ("act_dcf_0.05", "min_dcf_0.05")]
        print("| " + " | ".join(cells) + " |")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
