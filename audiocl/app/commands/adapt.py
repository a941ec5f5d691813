"""``audiocl adapt``: centre a model on unlabelled recordings of the domain it will serve."""

from . import _common

HELP = "adapt a model to your recordings (no labels needed): centre it on their mean"
DESCRIPTION = """Write a copy of the model whose embeddings are centred on the mean embedding
of AUDIO: unlabelled recordings (files, or folders searched recursively) of the kind the model
will verify: same language, microphones and rooms, many speakers (at least 20 recordings;
more speakers make a better mean). A model trained on other speech gives every recording of a
new domain a shared offset; removing it separates that domain's speakers better. The starter
model: dev EER 7.35% -> 7.01% (docs/models.md).

  audiocl adapt recordings/ --out adapted.pt
  audiocl verify a.wav b.wav --model adapted.pt

The adapted model has its own id: re-enroll speakers with it (a store of the old model refuses
it). Its thresholds: the starter carries ones measured on held-out speakers centred the same
way; other models have none until audiocl eval --calibrate. It does not become the default
model: name it with --model or AUDIOCL_MODEL.
"""


def add_arguments(p):
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="audio files or folders")
    p.add_argument("--out", required=True, metavar="FILE", help="adapted model file to write")
    _common.add_model(p)
    _common.add_skip_bad(p, "recordings")
    _common.add_json(p)


def run(args) -> int:
    import sys

    from ...inference.adapt import audio_files

    model = _common.load_model(args)
    if not args.json:
        print(_common.model_line(model))
    skipped: list[dict] = []

    def on_error(i, err):
        skipped.append({"file": err.path, "reason": err.reason})
        print(f"audiocl adapt: skipping {err.path}: {err.reason}", file=sys.stderr)

    make_bar, close = _common.progress_bar(args.quiet)
    try:
        files = audio_files(args.audio)
        adapted = model.adapt(
            files,
            args.out,
            progress=make_bar(len(files), "embedding"),
            on_error=on_error if args.skip_bad else None,
        )
    finally:
        close()
    cal = adapted.calibration
    info = {
        "out": args.out,
        "model_id": adapted.model_id,
        "adapted_from": model.model_id,
        "files": len(files) - len(skipped),
        "skipped": skipped,
        "calibrated": cal is not None,
    }
    if args.json:
        _common.print_json(info)
        return 0
    print(f"wrote {args.out} (model id {adapted.model_id}, centred on {info['files']} recordings)")
    if cal is None:
        print(
            "threshold: none yet: calibrate it on trials of your domain "
            f"(audiocl eval --model {args.out} --trials TRIALS --audio-root DIR --calibrate)"
        )
    else:
        print(f"threshold: {cal['eer_threshold']:.4f} (eer; the model's adapted calibration)")
    return 0
