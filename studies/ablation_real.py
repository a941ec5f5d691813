"""Ablation of the objectives and design choices on real speech, every variant on one budget.

The variants are the first real_cpu recipe (``configs/real_cpu.yaml`` with ``BASE_OVERRIDES``:
ECAPA C=512, AAM + SimCLR, noise p 0.6, reverb p 0.4) with a few overrides each: the objectives (SimCLR only, MoCo only, AAM only on the labelled sets, AAM + SimCLR, AAM + MoCo,
and the best of these without waveform augmentation) and one-at-a-time design choices (crop
length, views, temperature, noise/reverb probability, margin, learning rate, width, batch),
then "combined": the best width/shape with every scalar choice that won by at least a point
(about one standard error of this dev EER). The committed real_cpu recipe is that combination.
Each model is evaluated on the dev trials, raw and with AS-Norm (cohort: the train/ folder),
and a Markdown table plus one JSON line are printed.

The budget is ``--minutes`` of training on the reference machine (the team's 2-core CPU). Two
ways to spend it:

    # on the reference machine itself: each variant trains for --minutes of wall time (its
    # cosine schedule is over the base's 1,150 steps unless --rates gives its own step count)
    python studies/ablation_real.py --data ../shared/data --minutes 55 --out runs/ablation

    # measure every variant's seconds per step on the reference machine once ...
    python studies/ablation_real.py --data ../shared/data --measure docs/ablation_rates.json
    # ... then anywhere (a GPU): each variant trains for the steps it makes in --minutes there
    python studies/ablation_real.py --data DATA --minutes 55 --rates docs/ablation_rates.json \
        --device cuda --jobs 4 --out runs/ablation

A batch is a function of (seed, step) alone, so the step-budget run trains on the same batches
the reference machine would; it runs in fp32 without autocast (cuDNN's default TF32 convolutions).
``--only NAME[,NAME]`` runs a subset; a variant with results.json is not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from audiocl.training.recipe import load_config

MOCO = ["objective.contrastive=moco", "objective.moco_queue=2048", "objective.moco_momentum=0.99"]
AAM_ONLY = ["objective.contrastive=none", "objective.contrastive_weight=0", "data.views=1"]
LABELLED_ONLY = [
    "data.sources=[{path: train/arabic-commands, labelled: true}, "
    "{path: train/fsdd, labelled: true}]"
]
LIBRI_UNLABELLED = [
    "data.sources=[{path: train/librispeech-tc100, labelled: false}, "
    "{path: train/arabic-commands, labelled: true}, {path: train/fsdd, labelled: true}]"
]
OBJECTIVES = {
    "simclr": ["objective.aam_weight=0"],
    "moco": ["objective.aam_weight=0", *MOCO],
    "aam": [*LABELLED_ONLY, *AAM_ONLY],
    # our recipe's labelling: librispeech's 251 readers are AAM classes too
    "aam_all": AAM_ONLY,
    "aam_simclr": [],
    "aam_moco": MOCO,
}
# One change each from aam_simclr that changes the work of a step (measured seconds per step),
# and a few combinations with the narrower model, which makes the most steps in the budget.
W256 = ["model.channels=256"]
SHAPES = {
    "crop_1.5s": ["data.crop_seconds=1.5"],
    "crop_3s": ["data.crop_seconds=3.0"],
    "views_3": ["data.views=3"],
    "width_256": W256,
    "batch_64": ["data.batch_size=64"],
    "w256_crop_3s": [*W256, "data.crop_seconds=3.0"],
    "w256_batch_64": [*W256, "data.batch_size=64"],
    "w256_views_3": [*W256, "data.views=3"],
}
# One change each that leaves the work of a step as it is: these share aam_simclr's measured
# seconds per step. Grouped by the design choice they probe.
SCALARS = {
    "temperature": {
        "temp_0.05": ["objective.temperature=0.05"],
        "temp_0.2": ["objective.temperature=0.2"],
    },
    "noise/reverb probability": {
        "aug_light": ["augment.noise_p=0.3", "augment.reverb_p=0.2"],
        "aug_heavy": ["augment.noise_p=0.9", "augment.reverb_p=0.7"],
    },
    "AAM margin": {
        "margin_0.1": ["objective.aam_margin=0.1"],
        "margin_0.3": ["objective.aam_margin=0.3"],
    },
    "learning rate": {"lr_1e-3": ["optim.lr=0.001"], "lr_5e-3": ["optim.lr=0.005"]},
    "librispeech labels": {"libri_unlabelled": LIBRI_UNLABELLED},
    "source balance": {"balance_1": ["data.balance=1.0"]},
}
SAME_COST = {n for group in SCALARS.values() for n in group}
CHOICES = {**SHAPES, **{n: o for group in SCALARS.values() for n, o in group.items()}}
NOAUG = ["augment.enabled=false"]
VARIANTS = {
    **OBJECTIVES,
    **{f"{k}_noaug": [*v, *NOAUG] for k, v in OBJECTIVES.items()},
    **CHOICES,
}
DEV = "dev/hsb-commonvoice"
BASE = "real_cpu"
# the recipe the ablation started from; real_cpu.yaml has since taken the winning choices
BASE_OVERRIDES = [
    "model.channels=512",
    "augment.noise_p=0.6",
    "augment.reverb_p=0.4",
    "train.steps=1150",
]
MIN_GAIN = 0.01  # one point of EER, about one standard error with 842 target trials


def overrides_of(name: str, out: Path | None) -> list[str]:
    if name == "combined":
        return json.loads((out / "combined.json").read_text())["overrides"]
    return VARIANTS[name]


def variant_config(name: str, data: Path, extra: list[str], out: Path | None = None):
    return load_config(
        BASE, [f"data.root={data}", *BASE_OVERRIDES, *overrides_of(name, out), *extra]
    )


def combine(results: list[dict], out: Path) -> None:
    """Write the "combined" variant: the best shape (by raw dev EER, aam_simclr included) plus,
    from each scalar group, its best choice where that beat aam_simclr by ``MIN_GAIN``."""
    eer = {r["variant"]: r["raw"]["eer"] for r in results}
    shape = min(["aam_simclr", *SHAPES], key=eer.__getitem__)
    overrides = list(VARIANTS[shape])
    for group in SCALARS.values():
        best = min(group, key=eer.__getitem__)
        if eer[best] <= eer["aam_simclr"] - MIN_GAIN:
            overrides += VARIANTS[best]
    spec = {"overrides": overrides, "cost_of": shape}
    (out / "combined.json").write_text(json.dumps(spec, indent=2) + "\n")


def measure(names: list[str], args) -> dict:
    """Seconds per training step of each variant on this machine (``--warmup`` steps skipped)."""
    from audiocl.training.stages import measure_step_seconds

    rates = json.loads(args.measure.read_text()) if args.measure.is_file() else {}
    rates.setdefault("machine", f"{platform.machine()}, {os.cpu_count()} cores")
    per = rates.setdefault("seconds_per_step", {})
    for name in names:
        if name in SAME_COST or name in per:
            continue
        cfg = variant_config(name, args.data, args.set)
        per[name] = round(measure_step_seconds(cfg, args.warmup, args.measure_steps), 4)
        print(f"{name:22s} {per[name]:.3f} s/step", flush=True)
        args.measure.write_text(json.dumps(rates, indent=2) + "\n")
    return rates


def seconds_per_step(name: str, rates: dict, out: Path) -> float:
    if name == "combined":
        name = json.loads((out / "combined.json").read_text())["cost_of"]
    per = rates["seconds_per_step"]
    return per["aam_simclr"] if name in SAME_COST else per[name]


def run_variant(name: str, args, cohort: Path) -> dict:
    run = args.out / name
    done = run / "results.json"
    if done.is_file():
        return json.loads(done.read_text())
    extra = list(args.set)
    rate = None
    if args.rates:
        rate = seconds_per_step(name, json.loads(args.rates.read_text()), args.out)
        steps = round(args.minutes * 60 / rate)
        extra += [f"train.steps={steps}", "train.ckpt_every=1000000"]
        # on the reference machine itself the wall clock still caps a slower-than-measured run
        extra += ["train.max_minutes=0" if args.device else f"train.max_minutes={args.minutes}"]
    else:
        extra += [f"train.max_minutes={args.minutes}"]
    if args.device:
        extra += [f"train.device={args.device}", "train.amp=off"]
    cfg = variant_config(name, args.data, extra, args.out)
    from audiocl.app.api import load_model
    from audiocl.training.stages import fit
    from audiocl.training.trainer import read_metrics

    if not (run / "model.pt").is_file():
        t0 = time.monotonic()
        fit(cfg, run, quiet=True)
        print(f"{name}: trained in {time.monotonic() - t0:.0f} s", flush=True)
    model = load_model(run / "model.pt", device=args.device or "cpu")
    report = model.evaluate(
        args.data / DEV / "trials.txt",
        args.data / DEV,
        cohort=cohort,
        out=run / "eval",
        cache=False,
    )
    recs = read_metrics(run)
    result = {
        "variant": name,
        "overrides": overrides_of(name, args.out),
        "steps": max(r["step"] for r in recs),
        "cpu_s_per_step": rate,
        "budget": f"{args.minutes:g} min on the reference CPU"
        + (" (as steps)" if rate else " (wall time)"),
        "raw": {k: report["raw"][k] for k in ("eer", "min_dcf_0.01", "min_dcf_0.05")},
        "as_norm": {k: report["as_norm"][k] for k in ("eer", "min_dcf_0.01", "min_dcf_0.05")},
    }
    done.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{name}: EER {100 * result['raw']['eer']:.2f}%", flush=True)
    return result


def run_many(names: list[str], args, cohort: Path) -> list[dict]:
    """Run ``names`` in this process, or ``--jobs`` at a time in child processes."""
    if args.jobs <= 1:
        return [run_variant(n, args, cohort) for n in names]
    pending = [n for n in names if not (args.out / n / "results.json").is_file()]
    running: list[subprocess.Popen] = []
    base = [sys.executable, __file__, *sys.argv[1:], "--jobs", "1", "--no-noaug"]
    while pending or running:
        while pending and len(running) < args.jobs:
            log = open(args.out / f"{pending[0]}.log", "w")  # noqa: SIM115 (child owns it)
            running.append(
                subprocess.Popen([*base, "--only", pending.pop(0)], stdout=log, stderr=log)
            )
        time.sleep(1)
        running = [p for p in running if p.poll() is None]
    missing = [n for n in names if not (args.out / n / "results.json").is_file()]
    if missing:
        raise SystemExit(f"variants failed (see {args.out}/NAME.log): {', '.join(missing)}")
    return [json.loads((args.out / n / "results.json").read_text()) for n in names]


def table(results: list[dict]) -> str:
    lines = [
        "| variant | overrides of the ablation base | steps | EER | minDCF 0.01 | minDCF 0.05 | "
        "EER AS-Norm | minDCF 0.01 AS-Norm | minDCF 0.05 AS-Norm |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a, n = r["raw"], r["as_norm"]
        over = ", ".join(f"`{o}`" for o in r["overrides"]) or "none"
        lines.append(
            f"| {r['variant']} | {over} | {r['steps']} | {100 * a['eer']:.2f}% | "
            f"{a['min_dcf_0.01']:.3f} | {a['min_dcf_0.05']:.3f} | {100 * n['eer']:.2f}% | "
            f"{n['min_dcf_0.01']:.3f} | {n['min_dcf_0.05']:.3f} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--minutes", type=float, default=55.0, help="budget per variant")
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--only", default="", help="comma-separated variant names")
    p.add_argument("--set", action="append", default=[], help="extra override for every variant")
    p.add_argument("--measure", type=Path, help="measure seconds per step into this JSON file")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--measure-steps", type=int, default=8)
    p.add_argument("--rates", type=Path, help="train each variant for the steps of --minutes")
    p.add_argument("--device", default="", help="train and embed here (e.g. cuda)")
    p.add_argument("--jobs", type=int, default=1, help="variants trained at once")
    p.add_argument("--no-noaug", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.data = args.data.resolve()
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in VARIANTS and n != "combined"]
        if unknown:
            print(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}", file=sys.stderr)
            return 2
    else:
        names = [*OBJECTIVES, *CHOICES]
    if args.measure:
        if not args.only:
            names = list(VARIANTS)
        measure(names, args)
        return 0
    if not (args.data / DEV / "trials.txt").is_file():
        print(f"no dev trials under {args.data / DEV}: pass --data", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    cohort = args.data / "train"  # eval samples 2,000 of its files (seeded)
    results = run_many(names, args, cohort)
    if not args.only and not args.no_noaug:
        best = min(
            (r for r in results if r["variant"] in OBJECTIVES), key=lambda r: r["raw"]["eer"]
        )
        # second stage: the best objective without augmentation, and the combined choices
        combine(results, args.out)
        results += run_many([f"{best['variant']}_noaug", "combined"], args, cohort)
    print(f"\ndev trials: {args.data / DEV}/trials.txt; budget {args.minutes:g} min per variant\n")
    print(table(results))
    print(json.dumps({"minutes": args.minutes, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
