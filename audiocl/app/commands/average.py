"""``audiocl average``: one model whose weights are the mean of several checkpoints'."""

from . import _common

HELP = "average the weights of checkpoints of one model into a model file"
DESCRIPTION = """Write a model file whose encoder weights are the mean of those of FILES (model
files or training checkpoints of one architecture), as WeSpeaker's average_model does: the
last checkpoints of a run, or the ends of runs that continue one another (--init), lie in one
basin, and their mean often scores better than any of them. Measure it: audiocl eval.

  audiocl average runs/a/checkpoints/ckpt-0009000.pt runs/a/checkpoints/ckpt-0010000.pt \\
      --out runs/a/average.pt

The file keeps the last input's config, speakers, step, name and licence, and lists what it
was averaged from; not its calibration (new weights: run audiocl eval --calibrate again). It
does not become the default model: name it with --model.
"""


def add_arguments(p):
    _common.add_model_files(p)


def run(args) -> int:
    from ...modelfile import checkpoint

    data = checkpoint.average(args.files)
    checkpoint.save(args.out, data)
    info = {"out": args.out, "model_id": data["model_id"], "averaged_from": args.files}
    if args.json:
        _common.print_json(info)
    else:
        print(f"wrote {args.out} (mean of {len(args.files)} files, model id {data['model_id']})")
    return 0
