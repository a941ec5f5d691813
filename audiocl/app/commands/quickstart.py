"""``audiocl quickstart``: synthesize voices, train briefly, show the EER before and after."""

from . import _common

HELP = "synthesize a corpus, train the quickstart config, report EER before/after training"
DESCRIPTION = """Synthesize a training corpus and a corpus of disjoint test speakers, train the
shipped quickstart config on the training speakers (a few minutes on 2 CPU cores), then report
EER and minDCF on the test speakers' trials for the untrained (random-init) encoder and for the
trained one. Figures go to OUT/quickstart.json; the model to OUT/run/model.pt, which becomes the
default model of enroll/verify/identify/eval.
"""


def add_arguments(p):
    p.add_argument("--out", default="audiocl-quickstart", help="output folder")
    p.add_argument(
        "--steps",
        type=_common.positive_int,
        default=None,
        help="training steps (default: the quickstart config's 450, about 4 minutes on 2 CPU "
        "cores); a step count, not a time, so the figures repeat on any machine",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the voices and of training (default 0)"
    )
    p.add_argument(
        "--train-speakers",
        type=_common.positive_int,
        default=100,
        help="synthetic training voices, 8 utterances each (default 100)",
    )
    p.add_argument(
        "--test-speakers",
        type=_common.positive_int,
        default=20,
        help="synthetic test voices, none of them in training, 6 utterances each (default 20)",
    )
    _common.add_overrides(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def make_voices(out, args) -> tuple:
    """Fresh training and test corpora under ``out/data``; returns their folders."""
    import shutil

    from ...data.synth import synthesize_corpus

    train_dir, test_dir = out / "data" / "train", out / "data" / "test"
    for d in (train_dir, test_dir):
        if d.exists():
            shutil.rmtree(d)
    print(f"synthesizing {args.train_speakers} training and {args.test_speakers} test voices ...")
    synthesize_corpus(
        train_dir, speakers=args.train_speakers, utterances=8, seed=args.seed, trials=False
    )
    synthesize_corpus(
        test_dir,
        speakers=args.test_speakers,
        utterances=6,
        seed=args.seed + 1,
        speaker_offset=args.train_speakers,
    )
    return train_dir, test_dir


def train_and_compare(cfg, out, trials, test_dir, args) -> dict:
    """EER of the untrained encoder, training, EER of the trained one."""
    import shutil

    import torch

    from ...inference.embed import Embedder
    from ...scoring.evaluation import evaluate_trials
    from ...training.stages import fit
    from ...training.trainer import TrainModule, read_metrics

    torch.manual_seed(args.seed)
    untrained = TrainModule(cfg, 1)
    print("evaluating the untrained encoder ...")
    sr = cfg.data.sample_rate
    before = evaluate_trials(untrained.fbank, untrained.encoder, trials, test_dir, sr)
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    print(f"training for {cfg.train.steps} steps ...")
    fit(cfg, run_dir, quiet=args.quiet)
    model_path = run_dir / "model.pt"
    trained = Embedder.from_file(model_path)
    after = evaluate_trials(trained.fbank, trained.encoder, trials, test_dir, sr)
    keys = ("eer", "min_dcf_0.01", "min_dcf_0.05", "n_target", "n_nontarget")
    return {
        "untrained": {k: before[k] for k in keys},
        "trained": {k: after[k] for k in keys},
        "model": str(model_path),
        "trials": str(trials),
        "steps": read_metrics(run_dir)[-1]["step"],
    }


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    from ...fileio import write_text_atomic
    from ...training.recipe import load_config

    out = Path(args.out)
    t0 = time.monotonic()
    # checked before minutes of synthesis, so a mistyped --set fails at once
    overrides = [
        f"data.root={out / 'data'}",
        "data.sources=[{path: train, labelled: true}]",
        f"train.seed={args.seed}",
        *([f"train.steps={args.steps}"] if args.steps else []),
        *args.overrides,
    ]
    cfg = load_config("quickstart", overrides)
    _, test_dir = make_voices(out, args)
    trials = test_dir / "trials.txt"
    result = train_and_compare(cfg, out, trials, test_dir, args)
    result["seconds"] = round(time.monotonic() - t0, 1)
    write_text_atomic(out / "quickstart.json", json.dumps(result, indent=2) + "\n")
    after = result["trained"]
    print(
        f"\ntest speakers' trials: {trials} ({after['n_target']} target, "
        f"{after['n_nontarget']} non-target; speakers unseen in training)"
    )
    print(f"{'encoder':<12}{'EER':>9}{'minDCF(0.01)':>15}{'minDCF(0.05)':>15}")
    for name in ("untrained", "trained"):
        r = result[name]
        print(
            f"{name:<12}{100 * r['eer']:>8.2f}%{r['min_dcf_0.01']:>15.3f}{r['min_dcf_0.05']:>15.3f}"
        )
    print(f"\nmodel: {result['model']} ({result['steps']} steps, {result['seconds']:.0f} s in all)")
    print(f"figures: {out / 'quickstart.json'}")
    return 0
