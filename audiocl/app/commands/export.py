"""``audiocl export``: a model file -> an ONNX graph from waveform to embedding."""

from . import _common

HELP = "export a model to ONNX (waveform in, embedding out)"
DESCRIPTION = """Write MODEL as an ONNX graph that a runtime without PyTorch can run:

  input   waveform   float32 (1, S), mono, in [-1, 1], at the model's sample rate, any length
  output  embedding  float32 (1, D), not L2-normalised (cosine scoring does not need it)

The filterbank front end is inside the graph. The model's id, sample rate and calibration are
kept in the ONNX metadata, so `audiocl embed/enroll/verify/identify/eval --model FILE.onnx`
use it like the model.pt it came from (same speaker store, same thresholds). Needs the onnx
extra: pip install 'audiocl[onnx]'.

  audiocl export runs/real_cpu/model.pt --onnx real_cpu.onnx
"""


def add_arguments(p):
    p.add_argument("model", nargs="?", default=None, metavar="MODEL", help=_common.MODEL_HELP)
    p.add_argument("--onnx", required=True, metavar="FILE", help="ONNX file to write")
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip running the graph once with onnxruntime against PyTorch",
    )
    _common.add_json(p)


def run(args) -> int:
    from ...interop.export import export_onnx
    from ...paths import resolve_model

    path, source = resolve_model(args.model)
    out, cosine = export_onnx(path, args.onnx, check=not args.no_check)
    info = {"model": str(path), "source": source, "onnx": str(out), "check_cosine": cosine}
    if args.json:
        _common.print_json(info)
    else:
        print(f"wrote {out} (from {path})")
        if cosine is not None:
            print(f"check: onnxruntime vs PyTorch on 3 s of noise, cosine {cosine:.6f}")
    return 0
