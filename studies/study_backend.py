"""What a linear back end fitted on the training speakers buys on each trial list: centring on
the training mean, LDA and WCCN, each followed by cosine scoring (one score scale).

The back end is fitted on the labelled utterances of a training config's sources (held-out
speakers left out, as training leaves them out) and applied to both sides of every trial:

    python studies/study_backend.py --model audiocl/pretrained/starter.pt \\
        --config configs/ge2e_finetune_cpu.yaml --set data.root=../shared/data \\
        --trials ../shared/data/dev/hsb-commonvoice/trials.txt

``--trials`` and ``--audio-root`` repeat (one root per list, default: the list's folder). LDA
keeps ``--lda-dims`` directions of ``Sw^-1 Sb``; ``Sw`` is shrunk towards its mean variance by
``--shrink`` (speakers with one utterance count for ``Sb`` only). WCCN whitens by ``Sw^-1/2``
at each shrinkage and keeps every dimension. Prints a table of EERs and one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SHRINK = (0.1, 0.3, 0.5)
LDA_DIMS = (64, 128, 200)


def class_scatter(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N, D)`` embeddings, ``(N,)`` class ids -> ``(mean (D,), Sw (D, D), Sb (D, D))``."""
    x = np.asarray(x, np.float64)
    mu = x.mean(0)
    xc = x - mu
    _, inv, count = np.unique(labels, return_inverse=True, return_counts=True)
    means = np.zeros((len(count), x.shape[1]))
    np.add.at(means, inv, xc)
    means /= count[:, None]
    several = count[inv] >= 2
    within = xc[several] - means[inv[several]]
    sw = within.T @ within / len(within)
    sb = (means * count[:, None]).T @ means / count.sum()
    return mu, sw, sb


def shrunk_inverse_root(sw: np.ndarray, shrink: float) -> np.ndarray:
    """``Sw^-1/2`` of ``(1 - shrink) Sw + shrink * mean variance * I`` (symmetric)."""
    d = len(sw)
    s = (1 - shrink) * sw + shrink * np.trace(sw) / d * np.eye(d)
    ev, v = np.linalg.eigh(s)
    ev = np.maximum(ev, 1e-6 * ev.max())  # ReLU embeddings (GE2E) leave dead dimensions
    return v @ np.diag(ev**-0.5) @ v.T


def lda(sw: np.ndarray, sb: np.ndarray, dims: int, shrink: float) -> np.ndarray:
    """``(D, dims)`` projection onto the leading directions of ``Sw^-1 Sb``."""
    w = shrunk_inverse_root(sw, shrink)
    ev, v = np.linalg.eigh(w @ sb @ w)
    return w @ v[:, np.argsort(ev)[::-1][:dims]]


def back_ends(x: np.ndarray, labels: np.ndarray, lda_dims, shrinks) -> dict:
    """Name -> ``(mean (D,), projection (D, K))``; cosine of ``(e - mean) @ projection``."""
    mu, sw, sb = class_scatter(x, labels)
    d = x.shape[1]
    out = {"raw": (np.zeros(d), np.eye(d)), "centred": (mu, np.eye(d))}
    for s in shrinks:
        out[f"wccn s={s:g}"] = (mu, shrunk_inverse_root(sw, s))
        for k in lda_dims:
            if k < d:
                out[f"lda {k} s={s:g}"] = (mu, lda(sw, sb, k, s))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--config", required=True, help="a training config: its sources and hold-out")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--trials", type=Path, action="append", required=True)
    p.add_argument("--audio-root", type=Path, action="append", default=[])
    p.add_argument("--lda-dims", type=int, nargs="+", default=list(LDA_DIMS))
    p.add_argument("--shrink", type=float, nargs="+", default=list(SHRINK))
    args = p.parse_args(argv)
    if args.audio_root and len(args.audio_root) != len(args.trials):
        p.error("give one --audio-root per --trials, or none")
    roots = args.audio_root or [t.parent for t in args.trials]

    import audiocl
    from audiocl.data.trials import read_trials
    from audiocl.data.views import open_training_data
    from audiocl.scoring.evaluation import trial_files
    from audiocl.scoring.metrics import compute_metrics
    from audiocl.scoring.scores import score_pairs, trial_indices
    from audiocl.training.recipe import load_config

    cfg = load_config(args.config, args.set)
    data = open_training_data(cfg.data)
    labelled = np.flatnonzero(data.labels >= 0)
    model = audiocl.load_model(args.model, min_speech=0.0)
    train = model.embed_many([data.corpus.path(i) for i in labelled])
    fits = back_ends(train, data.labels[labelled], args.lda_dims, args.shrink)

    lists = []
    for path, root in zip(args.trials, roots, strict=True):
        trials = read_trials(path)
        keys = trial_files(trials)
        enroll, test, labels = trial_indices(trials, {k: i for i, k in enumerate(keys)})
        lists.append((str(path), model.embed_many([root / k for k in keys]), enroll, test, labels))

    results = {}
    for name, (mu, proj) in fits.items():
        results[name] = {}
        for path, emb, enroll, test, labels in lists:
            m = compute_metrics(score_pairs((emb - mu) @ proj, enroll, test), labels)
            results[name][path] = {"eer": m["eer"], "min_dcf_0.01": m["min_dcf_0.01"]}

    print(
        f"model {args.model}; back ends fitted on {len(labelled)} labelled utterances of "
        f"{len(data.speakers)} speakers ({args.config})"
    )
    width = max(len(n) for n in results)
    names = [
        Path(p).parent.name if Path(p).name == "trials.txt" else Path(p).stem for p, *_ in lists
    ]
    print(" " * width, *(f"{n[:22]:>22s}" for n in names))
    for name, per in results.items():
        print(f"{name:{width}s}", *(f"{100 * v['eer']:21.2f}%" for v in per.values()))
    print(json.dumps({"model": args.model, "train_utterances": len(labelled), "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
