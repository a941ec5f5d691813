"""Ablation of the objectives on real speech, each variant under the same time budget.

Trains ``configs/real_cpu.yaml`` and its variants (SimCLR only, MoCo only, AAM only on the
labelled sets, AAM + SimCLR, AAM + MoCo, and the best of these without augmentation) for
``--minutes`` each, then evaluates every model on the dev trials, raw and with AS-Norm (cohort:
training utterances), and writes a Markdown table plus one JSON line.

    python scripts/ablation_real.py --data ../shared/data --minutes 60 --out runs/ablation

``--only NAME[,NAME]`` runs a subset; finished variants (a model.pt with results.json beside
it) are not trained again, so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from audiocl.api import load_model
from audiocl.config import load_config
from audiocl.data import open_training_data
from audiocl.train import fit

LABELLED_ONLY = (
    "data.sources=[{path: train/arabic-commands, labelled: true}, "
    "{path: train/fsdd, labelled: true}]"
)
VARIANTS = {
    "simclr": ["objective.aam_weight=0", "objective.contrastive=simclr"],
    "moco": [
        "objective.aam_weight=0",
        "objective.contrastive=moco",
        "objective.moco_queue=2048",
        "objective.moco_momentum=0.99",
    ],
    "aam": [
        LABELLED_ONLY,
        "objective.contrastive=none",
        "objective.contrastive_weight=0",
        "data.views=1",
    ],
    "aam_simclr": [],
    "aam_moco": [
        "objective.contrastive=moco",
        "objective.moco_queue=2048",
        "objective.moco_momentum=0.99",
    ],
}
DEV = "dev/hsb-commonvoice"


def cohort_list(cfg, out: Path, size: int = 600, seed: int = 0) -> Path:
    """A seeded sample of training utterances, one path a line (the AS-Norm cohort)."""
    data = open_training_data(cfg.data)
    paths = [data.corpus.path(i) for i in range(len(data.corpus))]
    random.Random(seed).shuffle(paths)
    path = out / "cohort.txt"
    path.write_text("\n".join(sorted(paths[:size])) + "\n", encoding="utf-8")
    return path


def run_variant(name: str, overrides: list[str], args, cohort: Path) -> dict:
    run = args.out / name
    done = run / "results.json"
    if done.is_file():
        return json.loads(done.read_text())
    cfg = load_config(
        "real_cpu",
        [f"data.root={args.data}", f"train.max_minutes={args.minutes}", *overrides, *args.set],
    )
    if not (run / "model.pt").is_file():
        fit(cfg, run, quiet=True)
    model = load_model(run / "model.pt")
    report = model.evaluate(
        args.data / DEV / "trials.txt",
        args.data / DEV,
        cohort=cohort,
        out=run / "eval",
        cache=False,
    )
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    result = {
        "variant": name,
        "overrides": overrides,
        "steps": max(r["step"] for r in steps),
        "minutes": round(max(r.get("elapsed_s", 0) for r in steps) / 60, 1),
        "raw": {k: report["raw"][k] for k in ("eer", "min_dcf_0.01", "min_dcf_0.05")},
        "as_norm": {k: report["as_norm"][k] for k in ("eer", "min_dcf_0.01", "min_dcf_0.05")},
    }
    done.write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| variant | steps | minutes | EER | minDCF 0.01 | minDCF 0.05 | EER AS-Norm | "
        "minDCF 0.01 AS-Norm | minDCF 0.05 AS-Norm |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a, n = r["raw"], r["as_norm"]
        lines.append(
            f"| {r['variant']} | {r['steps']} | {r['minutes']} | {100 * a['eer']:.2f}% | "
            f"{a['min_dcf_0.01']:.3f} | {a['min_dcf_0.05']:.3f} | {100 * n['eer']:.2f}% | "
            f"{n['min_dcf_0.01']:.3f} | {n['min_dcf_0.05']:.3f} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--minutes", type=float, default=60.0, help="training budget per variant")
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--only", default="", help="comma-separated variant names")
    p.add_argument("--set", action="append", default=[], help="extra override for every variant")
    args = p.parse_args()
    if not (args.data / DEV / "trials.txt").is_file():
        print(f"no dev trials under {args.data / DEV}: pass --data", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    cohort = cohort_list(load_config("real_cpu", [f"data.root={args.data}"]), args.out)
    results = [run_variant(n, VARIANTS[n], args, cohort) for n in names]
    if not args.only:
        best = min(results, key=lambda r: r["raw"]["eer"])
        results.append(
            run_variant(
                f"{best['variant']}_noaug",
                [*best["overrides"], "augment.enabled=false"],
                args,
                cohort,
            )
        )
    print(f"dev trials: {args.data / DEV}/trials.txt; {args.minutes:g} minutes per variant\n")
    print(table(results))
    print(json.dumps({"minutes": args.minutes, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
