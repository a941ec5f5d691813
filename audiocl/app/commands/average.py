"""``audiocl average``: one model whose weights are the mean of several checkpoints'."""

from . import _common

HELP = "average the weights of checkpoints of one model into a model file"
DESCRIPTION = """Write a model file whose encoder weights are the mean of those of FILES (model
files or training checkpoints of one architecture), as WeSpeaker's average_model does: the
last checkpoints of a run, or the ends of runs that continue one another (--init), lie in one
basin, and their mean often scores better than any of them. Measure it: audiocl eval.

  audiocl average runs/a/checkpoints/ckpt-0009000.pt runs/a/checkpoints/ckpt-0010000.pt \\
      --out runs/a/average.pt

--weights makes it a weighted mean (one weight per FILE, >= 0, scaled to sum to 1): a
pretrained model and its fine-tuned copy, interpolated (WiSE-FT), often keep the fine-tuning's
gains on its own kind of speech and lose less of the pretrained model's breadth elsewhere.
Choose the weight on calibration trials, not on your test set:

  audiocl average ge2e.pt runs/ft/model.pt --weights 0.5 0.5 --out ge2e_ft.pt

The file keeps the last input's config, speakers, step, name and licence, and lists what it
was averaged from; not its calibration (new weights: run audiocl eval --calibrate again). It
does not become the default model: name it with --model.
"""


def add_arguments(p):
    _common.add_model_files(p)
    _common.add_weights(p)


def run(args) -> int:
    from ...modelfile import checkpoint

    data = checkpoint.average(args.files, args.weights)
    checkpoint.save(args.out, data)
    info = {
        "out": args.out,
        "model_id": data["model_id"],
        "averaged_from": args.files,
        "weights": [f["weight"] for f in data["averaged_from"]],
    }
    if args.json:
        _common.print_json(info)
    else:
        how = "weighted mean" if args.weights else "mean"
        print(f"wrote {args.out} ({how} of {len(args.files)} files, model id {data['model_id']})")
    return 0
