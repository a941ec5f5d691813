"""Benchmark: cosine scoring + EER + minDCF of 1,000,000 trials from precomputed embeddings,
and AS-Norm with a cohort.

Synthetic embeddings with speaker structure (so the EER is meaningful): each speaker has a random
unit centre, each utterance is centre + noise. Trials are random pairs, half target.
Target: scoring + EER + minDCF(0.01, 0.05) of 1M trials in under 2 s.

    python benchmarks/bench_metrics.py [--trials 1000000] [--embeddings 20000] [--dim 192]

Prints a table, then one JSON line of the figures (seconds).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from audiocl.scoring.metrics import compute_metrics
from audiocl.scoring.scores import as_norm_trials, score_pairs, trial_indices


def make_data(n_emb, dim, n_spk, n_trials, n_cohort, noise, rng):
    """Embeddings ``(n_emb, dim)``, speaker ids, trial index pairs with labels, cohort."""
    centres = rng.standard_normal((n_spk + n_cohort // 10 + 1, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spk = np.arange(n_emb) % n_spk
    emb = centres[spk] + noise * rng.standard_normal((n_emb, dim)).astype(np.float32)
    # Cohort: other speakers, 10 utterances each.
    cspk = n_spk + np.arange(n_cohort) // 10
    cohort = centres[cspk] + noise * rng.standard_normal((n_cohort, dim)).astype(np.float32)
    # Trials: half target (another utterance of the same speaker), half random pairs.
    n_tar = n_trials // 2
    ei = rng.integers(0, n_emb, n_trials)
    ti = np.empty(n_trials, dtype=np.int64)
    utt_per_spk = n_emb // n_spk
    offs = rng.integers(1, utt_per_spk, n_tar)  # same speaker, different utterance
    ti[:n_tar] = (ei[:n_tar] + offs * n_spk) % (n_spk * utt_per_spk)
    ti[n_tar:] = rng.integers(0, n_emb, n_trials - n_tar)
    labels = (spk[ei] == spk[ti]).astype(np.int8)
    return emb, ei, ti, labels, cohort


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=1_000_000)
    p.add_argument("--embeddings", type=int, default=20_000)
    p.add_argument("--speakers", type=int, default=2_000)
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--cohort", type=int, default=5_000)
    p.add_argument("--top-k", type=int, default=300)
    p.add_argument("--noise", type=float, default=0.12, help="per-dim noise std (sets the EER)")
    p.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    emb, ei, ti, labels, cohort = make_data(
        args.embeddings, args.dim, args.speakers, args.trials, args.cohort, args.noise, rng
    )

    scores, t_score = timed(lambda: score_pairs(emb, ei, ti), args.repeats)
    metrics, t_metrics = timed(lambda: compute_metrics(scores, labels), args.repeats)
    normed, t_asnorm = timed(
        lambda: as_norm_trials(emb, ei, ti, cohort, top_k=args.top_k, scores=scores),
        max(1, args.repeats - 1),
    )
    metrics_norm = compute_metrics(normed, labels)

    # Informational: mapping 1M string-keyed trials to rows (what `eval` does on a trial list).
    keys = [f"id{i // 10:05d}/video/{i % 10:05d}.wav" for i in range(args.embeddings)]
    index = {k: i for i, k in enumerate(keys)}
    trials = [(int(y), keys[a], keys[b]) for y, a, b in zip(labels, ei, ti, strict=True)]
    _, t_index = timed(lambda: trial_indices(trials, index), 1)

    total = t_score + t_metrics
    rows = [
        ("cosine scoring (score_pairs)", t_score),
        ("EER + minDCF 0.01/0.05 (compute_metrics)", t_metrics),
        ("total scoring + metrics", total),
        (f"AS-Norm, cohort {args.cohort}, top-{args.top_k}", t_asnorm),
        ("trial_indices from string trials (info)", t_index),
    ]
    print(
        f"{args.trials:,} trials ({int(labels.sum()):,} target), {args.embeddings:,} embeddings "
        f"of dim {args.dim}; median of {args.repeats}"
    )
    print(f"{'step':<44} {'seconds':>8}")
    print("-" * 53)
    for name, t in rows:
        print(f"{name:<44} {t:8.3f}")
    print("-" * 53)
    print(
        f"raw:     EER {100 * metrics['eer']:.2f}%  minDCF0.01 {metrics['min_dcf_0.01']:.4f}  "
        f"minDCF0.05 {metrics['min_dcf_0.05']:.4f}"
    )
    print(
        f"AS-Norm: EER {100 * metrics_norm['eer']:.2f}%  minDCF0.01 "
        f"{metrics_norm['min_dcf_0.01']:.4f}  minDCF0.05 {metrics_norm['min_dcf_0.05']:.4f}"
    )
    print(f"target total < 2 s: {'met' if total < 2.0 else 'NOT met'}")
    print(
        json.dumps(
            {
                "bench": "metrics",
                "trials": args.trials,
                "embeddings": args.embeddings,
                "dim": args.dim,
                "score_s": round(t_score, 4),
                "metrics_s": round(t_metrics, 4),
                "total_s": round(total, 4),
                "asnorm_s": round(t_asnorm, 4),
                "asnorm_cohort": args.cohort,
                "asnorm_top_k": args.top_k,
                "trial_indices_s": round(t_index, 4),
                "eer": round(metrics["eer"], 5),
                "min_dcf_0.01": round(metrics["min_dcf_0.01"], 5),
                "min_dcf_0.05": round(metrics["min_dcf_0.05"], 5),
                "eer_asnorm": round(metrics_norm["eer"], 5),
                "target_met": total < 2.0,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
