"""``audiocl eval``: EER and minDCF of a model on a trial list, raw and with AS-Norm."""

from . import _common

HELP = "evaluate a model on a trial list: EER, minDCF, AS-Norm, DET plot; --calibrate"
DESCRIPTION = """Evaluate a model on a trial list (VoxCeleb `1 a.wav b.wav` or Kaldi
`a b target|nontarget` lines; paths relative to --audio-root).

Each distinct file is embedded once. Embeddings are cached per model in
$AUDIOCL_HOME/cache/embeddings (else ~/.local/share/audiocl/...), keyed by absolute path,
modification time and size, so re-running, or another trial list over the same files, embeds
nothing new (--cache DIR / --no-cache to change that).

Reported: EER and normalised minDCF at p_target 0.01 and 0.05 (C_miss = C_fa = 1), their
thresholds, and the numbers of target and non-target trials. With --cohort, AS-Norm (adaptive
symmetric score normalisation over the top-k cohort scores) is computed too and shown beside the
raw cosine results. The cohort is a folder of audio (VoxCeleb layout, Kaldi dir), a text file of
audio paths (relative to the list's folder), or an .npz from `audiocl embed` made with the same
model; above --max-cohort files (default 2000) a seeded uniform sample is used. Keep the cohort's
speakers disjoint from the trial speakers.

Also minCllr (bits: the log-likelihood-ratio cost after the best monotone calibration, PAV) and,
for a model carrying an LLR calibration, Cllr and actDCF at 0.01 and 0.05 (the cost of deciding
at the calibration's Bayes threshold): Cllr - minCllr and actDCF - minDCF are what calibration
loses on these trials.

Written to --out (default eval/<trials name>): scores.txt (label enroll test cosine [as_norm]),
metrics.json, det.png (DET curves), scores.png (score histograms) and calibration.png (Bayes
error rate against the prior, actual and minimum).

--calibrate fits the score-to-LLR mapping (llr = a * cosine + b, prior-weighted logistic
regression at prior 0.5) and the false-accept thresholds of the non-target scores, and stores
them with the raw-cosine thresholds (EER, minDCF 0.01 and 0.05) into the model file; verify and
identify then report LLRs and P(same speaker) and decide with them. With --cohort the AS-Norm
scores get a mapping of their own (they are not cosines), which eval's AS-Norm column uses. Calibrate on speakers other
than the ones you measure on: Cllr on the calibration trials themselves is optimistic.

A missing or unreadable audio file stops the evaluation with its name and the first trial using
it (exit code 3); --skip-bad leaves out the trials that use such files and reports how many were
skipped.
"""


def add_arguments(p):
    p.add_argument("--trials", required=True, help="trial list")
    p.add_argument("--audio-root", required=True, metavar="DIR", help="folder of the trial files")
    _common.add_model(p)
    p.add_argument("--cohort", metavar="DIR_OR_LIST", help="AS-Norm cohort (folder, list or .npz)")
    p.add_argument("--top-k", type=int, default=300, help="AS-Norm top-k (default 300)")
    p.add_argument(
        "--max-cohort", type=int, default=2000, help="cohort files used at most (default 2000)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the cohort sample")
    p.add_argument("--out", metavar="DIR", help="report folder (default eval/<trials name>)")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="fit and store the LLR calibration and thresholds into the model file",
    )
    p.add_argument(
        "--skip-bad", action="store_true", help="leave out trials whose audio cannot be read"
    )
    p.add_argument("--cache", metavar="DIR", help="embedding cache folder")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--workers", type=int, default=1, help="processes embedding the trial files (default 1)"
    )
    _common.add_json(p)


def _fmt(m: dict, key: str) -> str:
    return f"{m[key]:.4f}" if m.get(key) is not None else "-"


def format_table(report: dict) -> str:
    """Raw and AS-Norm figures side by side."""
    raw, norm = report["raw"], report.get("as_norm")
    cols = [("cosine", raw)] + ([("AS-Norm", norm)] if norm else [])
    lines = [f"{'':<22}" + "".join(f"{name:>12}" for name, _ in cols)]
    rows = [
        ("EER", lambda m: f"{100 * m['eer']:.2f}%"),
        ("minDCF(0.01)", lambda m: f"{m['min_dcf_0.01']:.4f}"),
        ("minDCF(0.05)", lambda m: f"{m['min_dcf_0.05']:.4f}"),
        ("minCllr (bits)", lambda m: _fmt(m, "min_cllr")),
        ("Cllr (bits)", lambda m: _fmt(m, "cllr")),
        ("actDCF(0.01)", lambda m: _fmt(m, "act_dcf_0.01")),
        ("actDCF(0.05)", lambda m: _fmt(m, "act_dcf_0.05")),
        ("EER threshold", lambda m: f"{m['eer_threshold']:.4f}"),
        ("minDCF(0.01) threshold", lambda m: f"{m['min_dcf_0.01_threshold']:.4f}"),
        ("minDCF(0.05) threshold", lambda m: f"{m['min_dcf_0.05_threshold']:.4f}"),
    ]
    for label, fmt in rows:
        lines.append(f"{label:<22}" + "".join(f"{fmt(m):>12}" for _, m in cols))
    return "\n".join(lines)


def print_report(report: dict, trials: str, files: dict, model_path) -> None:
    """What ``audiocl eval`` prints: counts, cohort, the metrics table, calibration, files."""
    import sys

    for b in report["bad_files"]:
        print(f"audiocl eval: skipped {b['file']}: {b['reason']}", file=sys.stderr)
    raw, f = report["raw"], report["files"]
    skipped = ""
    if report["skipped_trials"]:
        n_bad = len(report["bad_files"])
        skipped = f"; {report['skipped_trials']} skipped (they use {n_bad} unusable file(s))"
    n = report["n_trials"]
    print(
        f"trials: {trials}: {n} scored ({raw['n_target']} target, "
        f"{raw['n_nontarget']} non-target){skipped}"
    )
    print(f"files: {f['embedded']} embedded, {f['cached']} from the cache ({f['seconds']:.1f} s)")
    if report["cohort"]:
        c = report["cohort"]
        print(
            f"AS-Norm cohort: {c['size']} files of {c['available']} in {c['source']}, "
            f"top-k {c['top_k']}"
        )
    print(format_table(report))
    used = report.get("calibration_used")
    if used and not report.get("calibration"):
        print(f"Cllr and actDCF: the model's calibration (on {used['trials'] or 'unnamed trials'})")
    if report.get("calibration"):
        cal = report["calibration"]
        m = cal["llr"]
        far = cal["far"]
        print(
            f"calibrated: stored in {model_path}: llr = {m['a']:.3f} * cosine {m['b']:+.3f}, "
            f"EER threshold {cal['threshold']:.4f}, false-accept rates down to "
            + (f"{far['min_far']:.2g}" if far else "none (too few non-targets)")
            + "; Cllr and actDCF above are on these same trials (optimistic)"
        )
    print(f"report: {', '.join(str(p) for p in files.values())}")


def run(args) -> int:
    from pathlib import Path

    from ...scoring.evaluation import write_report

    model = _common.load_model(args)
    if args.calibrate:  # fail before the evaluation, not after it
        from ...errors import ModelError
        from ...modelfile.checkpoint import MODEL_FORMAT, load

        if load(model.path)["format"] != MODEL_FORMAT:
            raise ModelError(
                f"{model.path}: --calibrate stores thresholds in a model file (model.pt), "
                "not in a training checkpoint"
            )
    if not args.json:
        print(_common.model_line(model))
    make_bar, close = _common.progress_bar(args.quiet)
    try:
        result = model.evaluate(
            args.trials,
            args.audio_root,
            cohort=args.cohort,
            top_k=args.top_k,
            skip_bad=args.skip_bad,
            cache=False if args.no_cache else (args.cache or True),
            max_cohort=args.max_cohort,
            seed=args.seed,
            progress=make_bar,
            result=True,
            workers=args.workers,
        )
    finally:
        close()
    out = Path(args.out) if args.out else Path("eval") / Path(args.trials).stem
    report = result.metrics
    report["model_source"] = model.source
    if args.calibrate:
        report["calibration"] = model.calibrate(
            report["raw"],
            trials=args.trials,
            scores=result.raw,
            labels=result.labels,
            as_norm_scores=result.as_norm,
        )
        result.apply_calibration(report["calibration"], note="calibrated on these trials")
    files = write_report(result, out)
    if args.json:
        _common.print_json({**report, "out": str(out)})
    else:
        print_report(report, args.trials, files, model.path)
    return 0
