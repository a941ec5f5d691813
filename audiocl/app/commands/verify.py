"""``audiocl verify``: are two recordings (or a recording and an enrolled speaker) the same voice?"""

from . import _common

HELP = "score two recordings (or one against an enrolled speaker): same speaker or not"
DESCRIPTION = (
    """Compare two recordings, or a recording with an enrolled speaker (--speaker NAME), and
print the cosine score (in [-1, 1]), the threshold with its source, and the decision.

  audiocl verify a.wav b.wav
  audiocl verify --speaker alice test.wav

"""
    + _common.THRESHOLD_NOTE
    + """

Exit codes: 0 same speaker, 1 different speaker, 4 no decision (uncalibrated model and no
--threshold; the score is still printed), 2/3/5/6 as for every command (usage, audio, store,
a write the system refused).
"""
)


def add_arguments(p):
    p.add_argument("files", nargs="+", metavar="FILE", help="two recordings, or one with --speaker")
    p.add_argument("--speaker", metavar="NAME", help="compare FILE with this enrolled speaker")
    _common.add_threshold(p)
    _common.add_db(p)
    _common.add_model(p)
    _common.add_json(p)


def run(args) -> int:
    from ...errors import ConfigError

    if args.speaker is not None and len(args.files) != 1:
        raise ConfigError("verify --speaker NAME takes exactly one recording")
    if args.speaker is None and len(args.files) != 2:
        raise ConfigError("verify takes two recordings (or one recording and --speaker NAME)")
    model = _common.load_model(args)
    if args.speaker is not None:
        speakers = model.store(_common.db_path(args))
        v = speakers.verify(
            args.speaker,
            args.files[0],
            args.threshold,
            args.operating_point,
            "--threshold",
            args.prior,
            args.far,
        )
        pair = {"speaker": args.speaker, "file": args.files[0], "db": str(speakers.path)}
        what = f"{args.files[0]} vs enrolled speaker {args.speaker!r}"
    else:
        v = model.verify(
            *args.files,
            args.threshold,
            None,
            args.operating_point,
            "--threshold",
            args.prior,
            args.far,
        )
        pair = {"files": list(args.files)}
        what = f"{args.files[0]} vs {args.files[1]}"
    code = {True: 0, False: 1, None: 4}[v.same]
    if args.json:
        _common.print_json({**pair, **v.to_dict(), "model": _common.model_info(model)})
        return code
    print(_common.model_line(model))
    print(what)
    print(f"score: {v.score:.4f}")
    print(_common.evidence_line(v.llr, v.p_same, args.prior))
    print(_common.threshold_line(v.threshold, v.threshold_source))
    print(
        {
            "same": "decision: same speaker",
            "different": "decision: different speakers",
            "unknown": "decision: unknown (no threshold)",
        }[v.decision]
    )
    return code
