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
  audiocl eval --model runs/ab.pt --trials trials.txt --calibrate

The file lists its members (ensemble_of); it has no calibration (new scores: run audiocl eval
--calibrate) and does not become the default model: name it with --model. Adapt the ensemble,
not its members (audiocl adapt).
"""


def add_arguments(p):
    _common.add_model_files(p)
    p.add_argument(
        "--weights",
        type=float,
        nargs="+",
        default=None,
        metavar="W",
        help="one fusion weight per FILE, >= 0 (scaled to sum to 1; default: equal). Fit them on "
        "trials that are not your test set (studies/study_fusion.py prints a grid)",
    )


def run(args) -> int:
    from ...modelfile import checkpoint
    from ...nn.ensemble import MIXED

    data = checkpoint.ensemble(args.files, args.weights)
    checkpoint.save(args.out, data)
    model = data["config"]["model"]
    dim = model["embed_dim"] * (1 if model["encoder"] == MIXED else len(args.files))
    info = {"out": args.out, "model_id": data["model_id"], "members": args.files, "embed_dim": dim}
    info["weights"] = data["ensemble_weights"]
    if args.json:
        _common.print_json(info)
    else:
        print(
            f"wrote {args.out} (ensemble of {len(args.files)} models, {dim}-dim embeddings, "
            f"model id {data['model_id']})"
        )
    return 0
