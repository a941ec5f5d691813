"""What each contrastive objective buys, on real speech, every row on one budget.

Two studies (issue 9), each row trained on ``--minutes`` of the reference machine (the team's
2-core CPU) spent as steps: the seconds per step of every row are measured once on that
machine (``--measure``), and a row trains for ``minutes * 60 / seconds_per_step`` steps, here
or on any other device (a batch is a function of (seed, step) alone, so a GPU trains on the
batches the CPU would). Every model is scored raw on the clean dev trials and, with
``--noisy``, on the noisy copy of them (``scripts/make_noisy_dev.py``; training uses only the
training part of the noise and RIRs, ``augment.files: train``).

- ``objectives``: the six objectives, self-supervised only (no labels anywhere), from
  ``configs/ssl_cpu.yaml`` with each objective's own head and views.
- ``labels``: labels on 10% and 30% of the speechocean762 speakers, everything else unlabelled:
  AAM alone (on the labelled utterances), AAM jointly with DINO, and DINO pre-training for half
  the budget followed by AAM fine-tuning (``train.init``) for the other half.

    python studies/study_ssl.py --data ../shared/data --measure docs/study_rates.json
    python studies/study_ssl.py --study objectives --data ../shared/data --minutes 30 \\
        --rates docs/study_rates.json --noisy /work/noisy_dev/hsb-commonvoice-noisy \\
        --out runs/study [--device cuda --jobs 4]

A row with ``results.json`` is not run again, so a study can be spread over sessions
(``--only NAME[,NAME]``); ``--rescore`` scores trained rows again after a change in evaluation.
Prints a Markdown table and one JSON line.
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

DEV = "dev/hsb-commonvoice"
BASE = "ssl_cpu"
# ssl_cpu is DINO followed by pseudo-label rounds; a row here is one stage, one objective
ONE_STAGE = ["pseudo_labels.clusters=0", "pseudo_labels.stage2={}"]
TWO_VIEWS = ["data.local_views=0"]
OBJECTIVES = {
    "simclr": ["objective.contrastive=simclr", *TWO_VIEWS],
    "moco": [
        "objective.contrastive=moco",
        *TWO_VIEWS,
        "objective.moco_queue=2048",
        "objective.moco_momentum=0.99",
        "objective.head_hidden=512",
        "objective.head_dim=128",
        "objective.temperature=0.2",
    ],
    "byol": [
        "objective.contrastive=byol",
        *TWO_VIEWS,
        "objective.ema_momentum=0.99",
        "objective.head_hidden=1024",
        "objective.head_dim=256",
    ],
    "dino": [],
    "swav": [
        "objective.contrastive=swav",
        "objective.prototypes=512",
        "objective.swav_queue=512",
        "objective.head_hidden=1024",
        "objective.head_dim=128",
    ],
    "clip": ["objective.contrastive=clip", *TWO_VIEWS],
}

SPEECHOCEAN = "train/speechocean762"
OTHERS = ["train/librispeech-tc100", "train/arabic-commands", "train/fsdd"]
AAM = [
    "objective.aam_weight=1.0",
    "objective.aam_scale=30.0",
    "objective.aam_margin=0.2",
    "objective.margin_warmup_start=100",
    "objective.margin_warmup_steps=200",
]
AAM_ALONE = [
    *AAM,
    "objective.contrastive=none",
    "objective.contrastive_weight=0",
    "data.views=1",
    "data.local_views=0",
    "data.labelled_only=true",
    "features.specaug_p=0.5",
]


def sources(fraction: float) -> str:
    """``data.sources`` with labels on ``fraction`` of the speechocean762 speakers only."""
    items = [f"{{path: {p}, labelled: false}}" for p in OTHERS]
    items.append(f"{{path: {SPEECHOCEAN}, labelled: true, label_fraction: {fraction}}}")
    return "data.sources=[" + ", ".join(items) + "]"


def label_rows() -> dict[str, dict]:
    """The label-efficiency rows; ``half`` rows get half the budget, ``init`` names the row
    whose model they start from."""
    rows: dict[str, dict] = {"dino_half": {"overrides": [], "half": True, "cost": "dino"}}
    for f in (0.1, 0.3):
        tag = f"{round(100 * f)}pct"
        rows[f"aam_{tag}"] = {"overrides": [sources(f), *AAM_ALONE], "cost": "aam_alone"}
        rows[f"aam_dino_{tag}"] = {"overrides": [sources(f), *AAM], "cost": "aam_dino"}
        rows[f"dino_then_aam_{tag}"] = {
            "overrides": [sources(f), *AAM_ALONE],
            "half": True,
            "init": "dino_half",
            "cost": "aam_alone",
        }
    return rows


STUDIES = {
    "objectives": {name: {"overrides": o} for name, o in OBJECTIVES.items()},
    "labels": label_rows(),
}
ROWS = {name: row for study in STUDIES.values() for name, row in study.items()}


def row_config(name: str, data: Path, extra: list[str]):
    return load_config(BASE, [f"data.root={data}", *ONE_STAGE, *ROWS[name]["overrides"], *extra])


def measure(names: list[str], args) -> None:
    """Seconds per training step of each row's config on this machine."""
    from audiocl.training.stages import measure_step_seconds

    rates = json.loads(args.measure.read_text()) if args.measure.is_file() else {}
    rates.setdefault("machine", f"{platform.machine()}, {os.cpu_count()} cores")
    per = rates.setdefault("seconds_per_step", {})
    for name in names:
        key = cost_key(name)
        if key not in per:
            cfg = row_config(name, args.data, args.set)
            per[key] = round(measure_step_seconds(cfg, args.warmup, args.measure_steps), 4)
            print(f"{key:22s} {per[key]:.3f} s/step", flush=True)
            args.measure.write_text(json.dumps(rates, indent=2) + "\n")


def cost_key(name: str) -> str:
    """Rows whose steps do the same work share one measurement (the labelled fraction and
    initial weights do not change the cost of a step)."""
    return ROWS[name].get("cost", name)


def evaluate(model, trials_dir: Path, out: Path) -> dict:
    report = model.evaluate(trials_dir / "trials.txt", trials_dir, out=out, cache=False)
    return {k: report["raw"][k] for k in ("eer", "min_dcf_0.01", "min_dcf_0.05")}


def scores(model, run: Path, args) -> dict:
    """The row's clean and (with ``--noisy``) noisy dev figures."""
    return {
        "clean": evaluate(model, args.data / DEV, run / "eval"),
        "noisy": evaluate(model, args.noisy, run / "eval_noisy") if args.noisy else None,
    }


def rescore(name: str, args) -> dict:
    """Score a trained row again (after a change in evaluation), keeping its training."""
    from audiocl.app.api import load_model

    run = args.out / name
    result = json.loads((run / "results.json").read_text())
    model = load_model(run / "model.pt", device=args.device or "cpu")
    result.update(scores(model, run, args))
    (run / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{name}: EER {100 * result['clean']['eer']:.2f}% (rescored)", flush=True)
    return result


def run_row(name: str, args) -> dict:
    run = args.out / name
    done = run / "results.json"
    if done.is_file():
        return rescore(name, args) if args.rescore else json.loads(done.read_text())
    row = ROWS[name]
    minutes = args.minutes / 2 if row.get("half") else args.minutes
    rate = json.loads(args.rates.read_text())["seconds_per_step"][cost_key(name)]
    steps = round(minutes * 60 / rate)
    # the budget is the step count: other work on the machine slows a row, it does not shorten it
    extra = [*args.set, f"train.steps={steps}", "train.ckpt_every=1000000", "train.max_minutes=0"]
    if args.device:
        extra += [f"train.device={args.device}", "train.amp=off"]
    if "init" in row:
        init = args.out / row["init"] / "model.pt"
        if not init.is_file():
            raise SystemExit(f"{name} starts from {init}: run {row['init']} first")
        extra.append(f"train.init={init}")
    cfg = row_config(name, args.data, extra)
    from audiocl.app.api import load_model
    from audiocl.training.stages import fit
    from audiocl.training.trainer import read_metrics

    if not (run / "model.pt").is_file():
        t0 = time.monotonic()
        fit(cfg, run, quiet=True)
        print(f"{name}: trained in {time.monotonic() - t0:.0f} s", flush=True)
    model = load_model(run / "model.pt", device=args.device or "cpu")
    recs = [r for r in read_metrics(run) if "loss" in r]
    result = {
        "row": name,
        "overrides": row["overrides"],
        "init": row.get("init"),
        "steps": recs[-1]["step"],
        "cpu_minutes": minutes,
        "cpu_s_per_step": rate,
        "collapse": next((r["collapse"] for r in recs if "collapse" in r), None),
        **scores(model, run, args),
    }
    done.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{name}: EER {100 * result['clean']['eer']:.2f}%", flush=True)
    return result


def run_many(names: list[str], args) -> list[dict]:
    """Run ``names`` here, or ``--jobs`` at a time in child processes (rows that start from
    another row's model wait for it)."""
    if args.jobs <= 1:
        return [run_row(n, args) for n in names]
    pending = [n for n in names if not (args.out / n / "results.json").is_file()]
    running: dict[str, subprocess.Popen] = {}
    base = [sys.executable, __file__, *sys.argv[1:], "--jobs", "1"]
    while pending or running:
        ready = [
            n
            for n in pending
            if "init" not in ROWS[n] or (args.out / ROWS[n]["init"] / "results.json").is_file()
        ]
        while ready and len(running) < args.jobs:
            name = ready.pop(0)
            pending.remove(name)
            log = open(args.out / f"{name}.log", "w")  # noqa: SIM115 (the child owns it)
            running[name] = subprocess.Popen([*base, "--only", name], stdout=log, stderr=log)
        time.sleep(1)
        running = {n: p for n, p in running.items() if p.poll() is None}
        if pending and not running and not ready:
            raise SystemExit(f"cannot start {pending}: the rows they start from failed")
    missing = [n for n in names if not (args.out / n / "results.json").is_file()]
    if missing:
        raise SystemExit(f"rows failed (see {args.out}/NAME.log): {', '.join(missing)}")
    return [json.loads((args.out / n / "results.json").read_text()) for n in names]


def table(results: list[dict]) -> str:
    lines = [
        "| row | steps | CPU min | dev EER | dev minDCF 0.01 | noisy EER | noisy minDCF 0.01 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c, n = r["clean"], r["noisy"]
        noisy = f"{100 * n['eer']:.2f}% | {n['min_dcf_0.01']:.3f}" if n else "- | -"
        flag = " (collapsed)" if r.get("collapse") else ""
        lines.append(
            f"| {r['row']}{flag} | {r['steps']} | {r['cpu_minutes']:g} | {100 * c['eer']:.2f}% | "
            f"{c['min_dcf_0.01']:.3f} | {noisy} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", choices=sorted(STUDIES), default="objectives")
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--minutes", type=float, default=30.0, help="budget per row (reference CPU)")
    p.add_argument("--out", type=Path, default=Path("runs/study"))
    p.add_argument("--only", default="", help="comma-separated row names")
    p.add_argument("--set", action="append", default=[], help="extra override for every row")
    p.add_argument("--noisy", type=Path, help="noisy dev set folder (with trials.txt)")
    p.add_argument("--measure", type=Path, help="measure seconds per step into this JSON file")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--measure-steps", type=int, default=6)
    p.add_argument("--rates", type=Path, default=Path("docs/study_rates.json"))
    p.add_argument("--device", default="", help="train and embed here (e.g. cuda)")
    p.add_argument("--jobs", type=int, default=1, help="rows trained at once")
    p.add_argument(
        "--rescore", action="store_true", help="score trained rows again (training is kept)"
    )
    args = p.parse_args()
    args.data = args.data.resolve()
    names = args.only.split(",") if args.only else list(STUDIES[args.study])
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        print(f"unknown row(s) {unknown}; known: {', '.join(ROWS)}", file=sys.stderr)
        return 2
    if args.measure:
        measure(names if args.only else list(ROWS), args)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_many(names, args)
    print(f"\ndev trials: {args.data / DEV}/trials.txt; {args.minutes:g} CPU-minutes per row\n")
    print(table(results))
    print(json.dumps({"study": args.study, "minutes": args.minutes, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
