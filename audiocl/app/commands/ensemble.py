"""``audiocl ensemble``: one model made of several trained encoders, their scores fused."""

from . import _common

HELP = "combine independently trained models into one ensemble model file"
DESCRIPTION = """Write a model file that runs every encoder of FILES (model files or training
checkpoints of one architecture) on the same features and concatenates their normalised
embeddings: its cosine score is the mean of the members' scores. Models trained
independently (another seed, other data) make different errors, and fusing them lowers the
EER where averaging the weights of one run does not. It costs one forward pass per member.

  audiocl ensemble runs/a/model.pt runs/b/model.pt --out runs/ab.pt
  audiocl eval --model runs/ab.pt --trials trials.txt --calibrate

The file lists its members (ensemble_of); it has no calibration (new scores: run audiocl eval
--calibrate) and does not become the default model: name it with --model. Adapt the ensemble,
not its members (audiocl adapt).
"""


def add_arguments(p):
    _common.add_model_files(p)


def run(args) -> int:
    from ...modelfile import checkpoint

    data = checkpoint.ensemble(args.files)
    checkpoint.save(args.out, data)
    dim = data["config"]["model"]["embed_dim"] * len(args.files)
    info = {"out": args.out, "model_id": data["model_id"], "members": args.files, "embed_dim": dim}
    if args.json:
        _common.print_json(info)
    else:
        print(
            f"wrote {args.out} (ensemble of {len(args.files)} models, {dim}-dim embeddings, "
            f"model id {data['model_id']})"
        )
    return 0
