"""Options and output shared by embed, enroll, speakers, verify, identify and eval.

Light at import time (argparse only); the model is loaded inside ``load_model``.
"""

from __future__ import annotations

import json
import sys

from ...scoring.operating_points import OPERATING_POINTS

MODEL_HELP = (
    "model file or run folder (default: $AUDIOCL_MODEL, else the model the last "
    "`audiocl train`/`quickstart` produced)"
)
THRESHOLD_NOTE = """Decision: "same speaker" when the cosine score >= threshold. Without --threshold the
model's calibration (`audiocl eval --calibrate`) decides: by default at the Bayes threshold of
its log-likelihood ratio for --prior (P(target) before listening, default 0.5; for costs other
than 1 pass the effective prior); with --far 0.01 at the threshold whose false-accept rate on
the calibration trials' non-target scores is 1% (refused where they are too few to tell);
with --operating-point at a stored EER or minDCF threshold. The output names the rule that
decided. A calibrated model also reports the score's LLR (natural log: how many times more
likely the score is for the same speaker than for different ones, as a log) and P(same
speaker) at --prior. A model that was never calibrated gets no decision ("unknown", exit code
4) unless you pass --threshold: a guessed threshold would be wrong for most models."""


def probability(text: str) -> float:
    """argparse type: a number in (0, 1) (a bad value is a usage error, exit 2)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value:g}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a bad value is a usage error, exit 2)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model(p) -> None:
    p.add_argument("--model", default=None, metavar="PATH", help=MODEL_HELP)
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "torch", "onnx"),
        help="run the model with PyTorch or with onnxruntime (the onnx extra; a model.pt is "
        "exported in memory first). auto: onnx for an exported .onnx model, else torch",
    )
    p.add_argument(
        "--vad",
        nargs="?",
        const="energy",
        default=None,
        choices=("energy", "silero"),
        help="trim leading and trailing non-speech before embedding, with the energy detector "
        "(default) or Silero VAD (pip install silero-vad). Off by default: trimming changes "
        "embeddings, so a store or cache made without it stays comparable",
    )
    p.add_argument(
        "--min-speech",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="refuse a recording with less detected speech than this, or than a tenth of its "
        "length when shorter, exit 3 'no speech found' (default 0.5; 0 turns the check off). "
        "Always on, with or without --vad",
    )


def add_db(p) -> None:
    p.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help="speaker store (SQLite file; default: speakers.db in $AUDIOCL_HOME, else "
        "~/.local/share/audiocl)",
    )


def add_skip_bad(p, what: str) -> None:
    """``--skip-bad`` (go on past unreadable ``what``) and ``--quiet`` (no progress bar)."""
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help=f"leave out unreadable {what} (listed on stderr) instead of stopping",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_model_files(p) -> None:
    """FILE... and --out: commands that combine model files into one (average, ensemble)."""
    p.add_argument("files", nargs="+", metavar="FILE", help="model or checkpoint files (2 or more)")
    p.add_argument("--out", required=True, metavar="FILE", help="model file to write")
    add_json(p)


def add_weights(p, what: str = "weight") -> None:
    """--weights: one per FILE of ``add_model_files`` (average, ensemble)."""
    p.add_argument(
        "--weights",
        type=float,
        nargs="+",
        default=None,
        metavar="W",
        help=f"one {what} per FILE, >= 0 (scaled to sum to 1; default: equal)",
    )


def add_json(p) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")


def add_threshold(p) -> None:
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold on the cosine score (default: the model's calibration)",
    )
    p.add_argument(
        "--operating-point",
        default=None,
        choices=("bayes", *OPERATING_POINTS),
        help="which calibrated rule decides (default: bayes where the model has an LLR "
        "calibration, else eer)",
    )
    p.add_argument(
        "--prior",
        type=probability,
        default=0.5,
        help="P(same speaker) before the audio, for P(same) and the Bayes decision (default 0.5)",
    )
    p.add_argument(
        "--far",
        type=probability,
        default=None,
        metavar="RATE",
        help="decide at this false-accept rate of the calibration trials (e.g. 0.01)",
    )


def load_model(args):
    """``api.Model`` named by ``--model`` (or the default), with ``source`` saying where from."""
    from ...inference.embed import Embedder
    from ...paths import resolve_model
    from ..api import Model

    path, source = resolve_model(args.model)
    return Model(
        Embedder.from_file(path, backend=args.backend, gate=speech_gate(args)), path, source
    )


def speech_gate(args):
    """The ``SpeechGate`` of ``--vad`` and ``--min-speech``."""
    from ...io.vad import SpeechGate

    return SpeechGate(args.vad or "energy", args.min_speech, trim=args.vad is not None)


def model_info(model) -> dict:
    return {"path": str(model.path), "source": model.source, "model_id": model.model_id}


def model_line(model) -> str:
    return f"model: {model.path} (from {model.source}; id {model.model_id})"


def db_path(args):
    from pathlib import Path

    from ...paths import default_store_path

    return Path(args.db) if args.db else default_store_path()


def evidence_line(llr: float | None, p_same: float | None, prior: float) -> str:
    if llr is None:
        return "llr: none (this model has no LLR calibration: run `audiocl eval --calibrate`)"
    return f"llr: {llr:+.3f}   P(same speaker) = {p_same:.3f} at prior {prior:g}"


def threshold_line(threshold: float | None, source: str) -> str:
    if threshold is None:
        return (
            "threshold: none (this model has no calibrated threshold: pass --threshold, "
            "or run `audiocl eval --calibrate` on a trial list)"
        )
    return f"threshold: {threshold:.4f} (decided by {source})"


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def progress_bar(quiet: bool = False):
    """A factory ``(total, description) -> update(n)`` drawing tqdm bars on stderr (only on a
    terminal, never with ``quiet``), and a function closing them."""
    bars = []

    def make(total: int, desc: str):
        from tqdm import tqdm

        bar = tqdm(
            total=total, desc=desc, unit="file", disable=True if quiet else None, leave=False
        )
        bars.append(bar)
        return bar.update

    def close():
        for b in bars:
            b.close()

    return make, close


def open_store(args, model):
    """The speaker store of ``--db`` for ``model``; refused at once when it holds another
    model's speakers (before any time is spent on embedding)."""
    from ...inference.store import SpeakerStore

    store = SpeakerStore(db_path(args), model.model_id)
    store.check_model()
    return store


def add_overrides(p) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=0.01 (repeatable)",
    )
