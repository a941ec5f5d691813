"""What ``audiocl adapt`` buys on a trial list, measured without letting a trial's own speakers
into the mean it is centred on.

Each trial is scored by the model adapted to the recordings of every *other* speaker of the
set (leave-the-trial's-speakers-out): the honest stand-in for a user who adapts on their own
unlabelled recordings and then verifies new people. Prints, for the model as it is and adapted:
EER, minDCF, and the false-accept / false-reject rates at the thresholds the model carries
(``calibration`` for raw scores, ``adapted_calibration`` for adapted ones), then one JSON line.

    python studies/study_adapt.py --model audiocl/pretrained/starter.pt \\
        --trials ../shared/data/dev/hsb-commonvoice/trials.txt

Speakers are the first path component of the trial list's entries (VoxCeleb layout). One
speaker pair is also scored through ``Model.adapt`` itself, to check that these numbers are
the shipped code's. ``--embeddings E.npz`` (``ids`` as the trial list names the files, and
``embeddings``; what ``audiocl embed`` or ``scripts/embed_resemblyzer.py`` write) scores another
toolkit's embeddings by the same protocol, in place of ``--model``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from audiocl.scoring.operating_points import OPERATING_POINTS
from audiocl.scoring.scores import cosine_scores, l2_normalize


def rates(scores, labels, cal: dict | None) -> dict:
    """False-accept and false-reject rates at each stored threshold."""
    out = {}
    for op, key in OPERATING_POINTS.items():
        t = (cal or {}).get(key)
        if t is not None:
            out[op] = {
                "threshold": t,
                "false_accept": float((scores[labels == 0] >= t).mean()),
                "false_reject": float((scores[labels == 1] < t).mean()),
            }
    return out


def check_against_model(model, root, keys, speaker, pair_of, enroll, test, labels, adapted):
    """Score one non-target speaker pair through ``Model.adapt`` on the other speakers' files:
    the study's numbers must be the shipped code's."""
    pair = pair_of[labels == 0][0]
    others = [root / k for k, s in zip(keys, speaker, strict=True) if s not in pair.split("|")]
    with tempfile.TemporaryDirectory() as tmp:
        check = model.adapt(others, Path(tmp) / "adapted.pt")
        sel = np.flatnonzero(pair_of == pair)
        e = check.embed_many([root / keys[i] for i in enroll[sel]])
        t = check.embed_many([root / keys[i] for i in test[sel]])
        gap = float(np.abs(cosine_scores(e, t) - adapted[sel]).max())
    if gap > 1e-4:
        raise SystemExit(f"scores differ from Model.adapt's by {gap:.2e}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--model")
    who.add_argument("--embeddings", help=".npz of ids and embeddings (another toolkit's)")
    p.add_argument("--trials", type=Path, required=True)
    p.add_argument("--audio-root", type=Path, default=None, help="default: the trials' folder")
    args = p.parse_args(argv)

    import audiocl
    from audiocl.data.trials import read_trials
    from audiocl.inference.adapt import MIN_FILES, domain_mean
    from audiocl.modelfile import checkpoint
    from audiocl.scoring.evaluation import trial_files
    from audiocl.scoring.metrics import compute_metrics
    from audiocl.scoring.scores import score_pairs, trial_indices

    root = args.audio_root or args.trials.parent
    trials = read_trials(args.trials)
    keys = trial_files(trials)
    speaker = np.array([k.split("/")[0] for k in keys])
    enroll, test, labels = trial_indices(trials, {k: i for i, k in enumerate(keys)})

    if args.model:
        model = audiocl.load_model(args.model, min_speech=0.0)
        data = checkpoint.load(args.model)
        emb = model.embed_many([root / k for k in keys])
    else:
        from audiocl.inference.embeddings_file import load_embeddings

        ids, theirs, _ = load_embeddings(args.embeddings)
        where = {k: i for i, k in enumerate(ids)}
        missing = [k for k in keys if k not in where]
        if missing:
            raise SystemExit(f"{args.embeddings}: no embedding for {missing[0]}")
        emb = l2_normalize(theirs[[where[k] for k in keys]])
        model, data = None, {}
    raw = score_pairs(emb, enroll, test)

    # the speakers of each trial, as a sorted pair ("a|a" for a target trial)
    pair_of = np.array(
        ["|".join(sorted(p)) for p in zip(speaker[enroll], speaker[test], strict=True)]
    )
    adapted = np.empty_like(raw)
    for pair in np.unique(pair_of):
        others = ~np.isin(speaker, pair.split("|"))
        if others.sum() < MIN_FILES:
            raise SystemExit(f"{args.trials}: fewer than {MIN_FILES} recordings outside {pair}")
        mean = domain_mean(emb[others])
        sel = np.flatnonzero(pair_of == pair)
        adapted[sel] = cosine_scores(emb[enroll[sel]] - mean, emb[test[sel]] - mean)

    if model is not None:
        check_against_model(model, root, keys, speaker, pair_of, enroll, test, labels, adapted)

    who = args.model or args.embeddings
    summary = {"model": who, "trials": str(args.trials), "n_trials": len(trials)}
    for name, scores, cal in (
        ("raw", raw, data.get("calibration")),
        ("adapted", adapted, data.get("adapted_calibration")),
    ):
        m = compute_metrics(scores, labels)
        summary[name] = {
            "eer": m["eer"],
            "min_dcf_0.01": m["min_dcf_0.01"],
            "min_dcf_0.05": m["min_dcf_0.05"],
            "at_stored_thresholds": rates(scores, labels, cal),
        }
    print(f"{summary['n_trials']} trials of {args.trials}, model {who}")
    for name in ("raw", "adapted"):
        r = summary[name]
        print(
            f"{name:8s} EER {r['eer']:.2%}  minDCF 0.01 {r['min_dcf_0.01']:.3f}  "
            f"0.05 {r['min_dcf_0.05']:.3f}"
        )
        for op, v in r["at_stored_thresholds"].items():
            print(
                f"         at its {op} threshold {v['threshold']:.4f}: "
                f"{v['false_accept']:.1%} false accepts, {v['false_reject']:.1%} false rejects"
            )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
