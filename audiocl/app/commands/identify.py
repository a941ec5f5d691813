"""``audiocl identify``: rank enrolled speakers by similarity to a recording."""

from . import _common

HELP = "rank the enrolled speakers by similarity to a recording"
DESCRIPTION = (
    """Embed a recording and rank the enrolled speakers by cosine score (best first).
With a threshold (--threshold, or the model's calibration) each candidate is marked as a match
or not, and the best candidate at or above the threshold is reported as the match; otherwise no
speaker is claimed.

"""
    + _common.THRESHOLD_NOTE.replace(' ("unknown", exit code 4)', "")
    + """

Exit code 0 whenever the ranking was printed (whether or not a speaker matched); 5 for an empty
store or a store of another model.
"""
)


def add_arguments(p):
    p.add_argument("file", metavar="FILE", help="recording to identify")
    p.add_argument(
        "--top", type=_common.positive_int, default=5, help="how many speakers to list (default 5)"
    )
    _common.add_threshold(p)
    _common.add_db(p)
    _common.add_model(p)
    _common.add_json(p)


def run(args) -> int:
    model = _common.load_model(args)
    speakers = model.store(_common.db_path(args))
    rule = model.threshold(
        args.threshold, args.operating_point, "--threshold", args.prior, args.far
    )  # a rule the calibration cannot answer is refused before any embedding
    threshold, source = rule
    ranking = speakers.identify(args.file, top=args.top)
    rows = []
    for k, (name, score) in enumerate(ranking, start=1):
        v = model.decide(score, rule, prior=args.prior)
        rows.append(
            {"rank": k, "speaker": name, "score": score, "match": v.same}
            | {"llr": v.llr, "p_same": v.p_same}
        )
    match = rows[0]["speaker"] if rows and rows[0]["match"] else None
    if args.json:
        _common.print_json(
            {
                "file": args.file,
                "candidates": rows,
                "match": match,
                "threshold": threshold,
                "threshold_source": source,
                "prior": args.prior,
                "db": str(speakers.path),
                "model": _common.model_info(model),
            }
        )
        return 0
    print(_common.model_line(model))
    print(_common.threshold_line(threshold, source))
    width = max(len("speaker"), *(len(r["speaker"]) for r in rows))
    evidence = rows and rows[0]["llr"] is not None
    extra = f"  {'llr':>7}  {'P(same)':>7}" if evidence else ""
    if evidence:
        print(f"P(same speaker) of each candidate alone, at prior {args.prior:g}")
    print(f"{'rank':>4}  {'speaker':<{width}}  {'score':>7}{extra}")
    for r in rows:
        mark = {None: "", True: "  match", False: ""}[r["match"]]
        ev = f"  {r['llr']:>+7.3f}  {r['p_same']:>7.3f}" if evidence else ""
        print(f"{r['rank']:>4}  {r['speaker']:<{width}}  {r['score']:>7.4f}{ev}{mark}")
    if threshold is not None:
        print(f"match: {match}" if match else "match: none (no speaker reaches the threshold)")
    return 0
