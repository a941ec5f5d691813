"""Package a trained run as audiocl's starter model: calibrate it on speakers its training held
out, and write ``audiocl/pretrained/starter.pt`` with its name, licence and attribution.

The run's config must hold speakers out (``hold_out`` on a source, as ``configs/starter_cpu.yaml``
does): their utterances make the calibration trials (every pair), so the verify threshold comes
from speakers the model never saw, and the dev set stays a test of the finished model.

    audiocl train --config configs/starter_cpu.yaml --set data.root=../shared/data --out runs/starter
    python scripts/make_starter_model.py --run runs/starter \\
        [--dev ../shared/data/dev/hsb-commonvoice] [--noisy-dev /work/noisy_dev/hsb-commonvoice-noisy]

Prints the calibration and (with ``--dev``) the dev figures for the model card
(``docs/models.md``), then one JSON line.

The calibration (thresholds, the score-to-LLR mapping and false-accept table, and the same for
the model centred by ``audiocl adapt``) can be refitted on a packaged model, weights untouched,
from the config it carries (the first member's, for an ensemble):

    python scripts/make_starter_model.py --recalibrate audiocl/pretrained/starter.pt \
        --data ../shared/data [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

# the credit each redistributable training set asks for (CC BY 4.0: attribution); a run on a
# source not listed here is refused, since its model would go out without its data's credit
CREDITS = {
    "train/librispeech-tc100": "the LibriSpeech ASR corpus (c) 2014 Vassil Panayotov, CC BY 4.0",
    "train/arabic-commands": (
        "the Arabic Speech Commands dataset (Ghandoura, Hjabo, Al Dakkak, 2021), CC BY 4.0"
    ),
    "train/speechocean762": (
        "speechocean762 (OpenSLR 101), (c) SpeechOcean / Junbo Zhang et al., CC BY 4.0"
    ),
    "train/speechcommands": "the Speech Commands dataset v0.02 (P. Warden, Google, 2018), CC BY 4.0",
}
CC_BY = "https://creativecommons.org/licenses/by/4.0/"
LICENSE = "CC BY 4.0 (the model is a work derived from CC BY 4.0 data; attribution above)"
ARCHITECTURES = {"ecapa_tdnn": "ECAPA-TDNN", "resnet34": "ResNet34", "ge2e": "GE2E LSTM"}
MAX_MB = 15.0


def held_out_trials(cfg, folder: Path) -> list[tuple[Path, Path, str, list[str]]]:
    """``(trials file, audio root, source, training files)`` of every source that holds
    speakers out: trials of its held-out speakers, and the recordings of the others."""
    import numpy as np

    from audiocl.data.corpus import open_corpus
    from audiocl.data.trials import make_trials, write_trials
    from audiocl.data.views import held_out_speakers, resolve

    out = []
    for k, src in enumerate(cfg.data.sources):
        if not src.hold_out:
            continue
        root = resolve(cfg.data.root, src.path)
        corpus = open_corpus(root, min_duration=cfg.data.min_seconds, format=src.format)
        held = held_out_speakers(corpus.speakers, src.hold_out, root)
        is_held = np.isin(corpus.speaker_ids, held)
        sub = corpus.subset(np.flatnonzero(is_held))
        path = folder / f"held_out_{k}.txt"
        write_trials(path, make_trials(sub))
        rest = [str(u.path) for u in corpus.subset(np.flatnonzero(~is_held))]
        out.append((path, root, src.path, rest))
    if not out:
        raise SystemExit("the run's config holds no speakers out (data.sources[].hold_out)")
    return out


def calibration_summary(metrics: dict, cal: dict, trials: str) -> dict:
    return {
        "trials": trials,
        "n_target": metrics["n_target"],
        "n_nontarget": metrics["n_nontarget"],
        "eer": metrics["eer"],
        "eer_threshold": cal["eer_threshold"],
        "llr_a": cal["llr"]["a"],
        "llr_b": cal["llr"]["b"],
        "cllr": cal["llr"]["cllr"],
        "min_cllr": cal["llr"]["min_cllr"],
    }


def calibrate_package(work: Path, cfg, tmp: Path, summary: dict) -> None:
    """Calibrate model file ``work`` in place on the held-out speakers of ``cfg``'s first source
    that holds speakers out, and store the calibration of its adapted (centred) copy too."""
    import audiocl
    from audiocl.modelfile import checkpoint

    model = audiocl.load_model(work, min_speech=0.0)
    trials, root, source, train_files = held_out_trials(cfg, tmp)[0]
    result = model.evaluate(trials, root, cache=False, result=True)
    where = f"held-out speakers of {source}"
    cal = model.calibrate(result.metrics["raw"], where, result.raw, result.labels)
    summary["calibration"] = calibration_summary(result.metrics["raw"], cal, where)
    # the calibration `audiocl adapt` gives the model: the held-out speakers scored with it
    # centred on the mean of their source's training speakers (their domain, not them)
    centred = model.adapt(train_files, tmp / "centred.pt")
    result = centred.evaluate(trials, root, cache=False, result=True)
    where += ", centred on its training speakers"
    adapted_cal = centred.calibrate(result.metrics["raw"], where, result.raw, result.labels)
    summary["adapted_calibration"] = calibration_summary(result.metrics["raw"], adapted_cal, where)
    data = checkpoint.load(work)
    data["adapted_calibration"] = adapted_cal
    checkpoint.save(work, data)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=None)
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model file to package (default: RUN/model.pt; e.g. an `audiocl average` of runs "
        "that continue RUN on its data, or an `audiocl ensemble` of runs with RUN's hold-outs)",
    )
    p.add_argument(
        "--recalibrate",
        type=Path,
        default=None,
        metavar="MODEL",
        help="refit the calibration of a packaged model from the config it carries",
    )
    p.add_argument("--data", default=None, help="data.root of the run (default: its config's)")
    p.add_argument("--dev", type=Path, default=None, help="dev folder with trials.txt")
    p.add_argument("--noisy-dev", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="default: the package's starter.pt")
    args = p.parse_args(argv)
    if (args.run is None) == (args.recalibrate is None):
        p.error("give --run (package a run) or --recalibrate MODEL")

    import torch
    import yaml

    import audiocl
    from audiocl.modelfile import checkpoint
    from audiocl.paths import STARTER_MODEL
    from audiocl.training.recipe import load_config

    overrides = [f"data.root={args.data}"] if args.data else []
    if args.recalibrate:
        data = checkpoint.load(args.recalibrate)
        member = (data.get("ensemble_of") or [data])[0]
        with tempfile.TemporaryDirectory() as tmp:
            cfg_path = Path(tmp) / "config.yaml"
            cfg_path.write_text(yaml.safe_dump(member["config"]), encoding="utf-8")
            cfg = load_config(cfg_path, overrides)
    else:
        cfg = load_config(args.run / "config.yaml", overrides)
    out = args.out or (args.recalibrate or STARTER_MODEL)
    model_path = args.recalibrate or args.model or args.run / "model.pt"
    summary: dict = {"run": str(args.run) if args.run else None, "model": str(model_path)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "model.pt"
        data = checkpoint.load(model_path)
        if args.recalibrate:
            data["calibration"] = None
            checkpoint.save(work, data)
            calibrate_package(work, cfg, Path(tmp), summary)
        else:
            package(data, model_path, cfg, work)
            calibrate_package(work, cfg, Path(tmp), summary)
        model = audiocl.load_model(work, min_speech=0.0)
        for name, folder in (("dev", args.dev), ("noisy_dev", args.noisy_dev)):
            if folder is not None:
                r = model.evaluate(folder / "trials.txt", folder, cache=False)["raw"]
                summary[name] = {k: r[k] for k in ("eer", "min_dcf_0.01", "min_dcf_0.05")}
        out.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.save(out, torch.load(work, map_location="cpu", weights_only=True))
    summary["out"] = str(out)
    summary["megabytes"] = round(out.stat().st_size / 2**20, 2)
    if summary["megabytes"] > MAX_MB:
        raise SystemExit(f"{out}: {summary['megabytes']} MB, over the {MAX_MB} MB budget")
    for key in ("calibration", "adapted_calibration"):
        c = summary[key]
        print(
            f"{key} on {c['trials']}: EER {c['eer']:.2%}, threshold {c['eer_threshold']:.4f}, "
            f"llr = {c['llr_a']:.2f} * cosine {c['llr_b']:+.2f}, Cllr {c['cllr']:.3f} "
            f"(min {c['min_cllr']:.3f})"
        )
    for name in ("dev", "noisy_dev"):
        if name in summary:
            r = summary[name]
            print(f"{name}: EER {r['eer']:.2%}, minDCF 0.01 {r['min_dcf_0.01']:.3f}")
    print(f"wrote {out} ({summary['megabytes']} MB)")
    print(json.dumps(summary))
    return 0


def upstream(cfg) -> list[tuple[str, dict]]:
    """``(role, model file)`` of each pretrained model the run started from or learned from
    that carries a licence (an imported model: GE2E, SpeechBrain, WeSpeaker)."""
    from audiocl.modelfile import checkpoint

    out: dict[str, tuple[str, dict]] = {}
    distill = cfg.objective.distill
    teacher = distill.teacher if distill.weight > 0 else ""
    for role, path in (("fine-tuned from", cfg.train.init), ("distilled from", teacher)):
        if not path:
            continue
        data = checkpoint.load(path)
        if not data.get("license"):
            continue
        key = data.get("model_id") or str(path)
        if key in out:  # the teacher fine-tuned with itself as its teacher
            out[key] = (f"{out[key][0]} and {role}", data)
        else:
            out[key] = (role, data)
    return list(out.values())


def credits(cfg, members: list[dict]) -> tuple[str, str, str]:
    """The packaged model's name, licence and attribution: its training sets' credits, and the
    licence and attribution of every pretrained model it was fine-tuned or distilled from."""
    missing = [s.path for s in cfg.data.sources if s.path not in CREDITS]
    if missing:
        raise SystemExit(f"no credit known for training source {missing[0]} (add it to CREDITS)")
    sets = "; ".join(f"audio from {CREDITS[s.path]}" for s in cfg.data.sources)
    attribution = f"Trained on {sets}. {CC_BY}"
    licence = LICENSE
    arch = ARCHITECTURES.get(cfg.model.encoder, cfg.model.encoder)
    name = f"ensemble of {len(members)} {arch}" if len(members) > 1 else arch
    for role, data in upstream(cfg):
        what = data.get("name", "a pretrained model")
        attribution += f" {role[0].upper()}{role[1:]} {what}: {data.get('attribution', '')}, {data['license']}."
        if role.startswith("fine-tuned from"):
            name += f", fine-tuned from {what}"
            licence += f"; its initial weights: {data['license']}"
    return f"audiocl starter ({name})", licence, attribution


def package(data: dict, model_path: Path, cfg, work: Path) -> None:
    """Name, licence and attribution on a trained model, float16 if needed, written to ``work``."""
    from audiocl.modelfile import checkpoint

    # calibration is honest only if the model left out the speakers the run held out
    # (every member of an ensemble: `audiocl ensemble` keeps their configs)
    held = [(s.path, s.hold_out) for s in cfg.data.sources]
    members = data.get("ensemble_of") or [data]
    for m in members:
        theirs = [(s["path"], s.get("hold_out", 0)) for s in m["config"]["data"]["sources"]]
        if theirs != held:
            raise SystemExit(f"{model_path}: trained on other sources or hold-outs than the run")
    # stored in float16 when float32 would not fit the package budget
    fp32_mb = sum(t.numel() * 4 for t in data["encoder"].values()) / 2**20
    if fp32_mb > MAX_MB:
        data["encoder"] = {
            k: v.half() if v.is_floating_point() else v for k, v in data["encoder"].items()
        }
    name, licence, attribution = credits(cfg, members)
    data.update(name=name, license=licence, attribution=attribution, calibration=None)
    data["model_id"] = checkpoint.model_id(data["encoder"])
    checkpoint.save(work, data)


if __name__ == "__main__":
    raise SystemExit(main())
