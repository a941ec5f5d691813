"""``audiocl ensemble``: one model made of several trained encoders, their scores fused."""

from . import _common

HELP = "combine independently trained models into one ensemble model file"
DESCRIPTION = """Write a model file that runs every encoder of FILES (model files or training
checkpoints) and concatenates their normalised embeddings: its cosine score is the mean of the
members' scores, or their weighted mean with --weights. Members may differ in architecture,
front end and embedding size (the starter and an imported GE2E): each then keeps its own front
end. Models trained
independently (another seed, other data) make different errors, and fusing them lowers the
EER where averaging the weights of one run does not. It costs one forward pass per member.

  audiocl ensemble runs/a/model.pt runs/b/model.pt --out runs/ab.pt
  audiocl ensemble starter.pt ge2e.pt --weights 0.5 0.5 --out fused.pt
  audiocl ensemble starter.pt ge2e.pt --fit-weights cal/trials.txt --audio-root cal --out fused.pt
  audiocl eval --model runs/ab.pt --trials trials.txt --calibrate

--fit-weights scores a calibration trial list with every member and fits the weights by
prior-weighted logistic regression (weights >= 0, summing to 1). The calibration trials must not
be your test trials: take speakers that neither the members nor your test set contain (held-out
training speakers), or the weights are tuned to the test.

The file lists its members (ensemble_of); it has no calibration (new scores: run audiocl eval
--calibrate) and does not become the default model: name it with --model. Adapt the ensemble,
not its members (audiocl adapt).
"""


def add_arguments(p):
    _common.add_model_files(p)
    _common.add_weights(p, "fusion weight")
    p.add_argument(
        "--fit-weights",
        metavar="TRIALS",
        default=None,
        help="fit the weights on this calibration trial list (not your test trials)",
    )
    p.add_argument("--audio-root", metavar="DIR", help="folder of the --fit-weights trial files")
    p.add_argument(
        "--min-speech",
        type=float,
        default=None,
        metavar="SECONDS",
        help="speech needed in a --fit-weights file (default: the speech gate's rule; 0: off)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def fit_weights(args) -> tuple[list[float], list[float]]:
    """``(weights, member EERs)`` fitted on the ``--fit-weights`` trials: each member scores
    every trial (a file it cannot use stops the fit, named), then the fusion is fitted."""
    import numpy as np

    from ...config import ConfigError
    from ...scoring.fusion import fit_fusion_weights
    from ..api import load_model

    if args.weights is not None:
        raise ConfigError("give --weights or --fit-weights, not both")
    if not args.audio_root:
        raise ConfigError("--fit-weights needs --audio-root (the folder of its trial files)")
    gate = {} if args.min_speech is None else {"min_speech": args.min_speech}
    make_bar, close = _common.progress_bar(args.quiet)
    scores, eers, labels = [], [], None
    try:
        for path in args.files:
            result = load_model(path, **gate).evaluate(
                args.fit_weights, args.audio_root, cache=False, progress=make_bar, result=True
            )
            scores.append(result.raw)
            eers.append(result.metrics["raw"]["eer"])
            labels = result.labels
    finally:
        close()
    weights = fit_fusion_weights(np.stack(scores), labels)
    return [float(w) for w in weights], eers


def run(args) -> int:
    from ...modelfile import checkpoint
    from ...nn.ensemble import MIXED

    fitted = fit_weights(args) if args.fit_weights else None
    data = checkpoint.ensemble(args.files, fitted[0] if fitted else args.weights)
    checkpoint.save(args.out, data)
    model = data["config"]["model"]
    dim = model["embed_dim"] * (1 if model["encoder"] == MIXED else len(args.files))
    info = {"out": args.out, "model_id": data["model_id"], "members": args.files, "embed_dim": dim}
    info["weights"] = data["ensemble_weights"]
    if fitted:
        info["fitted_on"] = {"trials": args.fit_weights, "member_eer": fitted[1]}
    if args.json:
        _common.print_json(info)
    else:
        if fitted:
            for path, w, e in zip(args.files, fitted[0], fitted[1], strict=True):
                print(f"{path}: weight {w:.3f} (EER {100 * e:.2f}% on {args.fit_weights})")
        print(
            f"wrote {args.out} (ensemble of {len(args.files)} models, {dim}-dim embeddings, "
            f"model id {data['model_id']})"
        )
    return 0
