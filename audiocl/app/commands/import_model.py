"""``audiocl import``: another toolkit's published speaker model -> an audiocl model file."""

from . import _common

HELP = "import a SpeechBrain, WeSpeaker or Resemblyzer model as an audiocl model file"
DESCRIPTION = """Convert a speaker model published by another toolkit into an audiocl model file,
which then works everywhere a trained one does (embed, enroll, verify, identify, eval
--calibrate, export, the Python API):

  audiocl import speechbrain DIR --out model.pt  # DIR: hyperparams.yaml + embedding_model.ckpt
  audiocl import wespeaker DIR --out model.pt    # DIR: config.yaml + avg_model.pt
  audiocl import resemblyzer FILE --out ge2e.pt  # FILE: pretrained.pt from its wheel

Supported: SpeechBrain's ECAPA_TDNN with its Fbank front end (spkrec-ecapa-voxceleb and any
layer list its hyperparams.yaml gives); WeSpeaker ECAPA_TDNN_GLOB_c512, ECAPA_TDNN_GLOB_c1024
and ResNet34; Resemblyzer's GE2E voice encoder (get pretrained.pt with `pip download
resemblyzer==0.1.4 --no-deps` and unzip it from the wheel). The model file keeps the source's name, its licence note and its original
config. Nothing is downloaded: fetch the model folder yourself. A missing file, an unknown
architecture or setting, or weights that do not fit the config is an error (exit 4) that names
what is wrong.
"""


def add_arguments(p):
    p.add_argument(
        "toolkit",
        choices=("speechbrain", "wespeaker", "resemblyzer"),
        help="the toolkit that published DIR",
    )
    p.add_argument("dir", metavar="DIR", help="the published model folder (or file)")
    p.add_argument("--out", required=True, metavar="MODEL.pt", help="audiocl model file to write")
    p.add_argument(
        "--license",
        default=None,
        metavar="TEXT",
        help="licence note to keep in the model file (default: a pointer to the source's terms)",
    )
    _common.add_json(p)


def run(args) -> int:
    from ...interop.importers import IMPORTERS
    from ...modelfile import checkpoint

    payload = IMPORTERS[args.toolkit](args.dir)
    if args.license:
        payload["license"] = args.license
    checkpoint.save(args.out, payload)
    info = {
        "out": str(args.out),
        "name": payload["name"],
        "model_id": payload["model_id"],
        "encoder": payload["config"]["model"]["encoder"],
        "embed_dim": payload["config"]["model"]["embed_dim"],
    }
    if args.json:
        _common.print_json(info)
    else:
        print(
            f"wrote {args.out}: {info['name']} (id {info['model_id']}, {info['encoder']}, "
            f"{info['embed_dim']}-dim embeddings)"
        )
    return 0
