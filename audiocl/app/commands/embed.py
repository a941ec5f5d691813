"""``audiocl embed``: audio files -> an ``.npz`` of L2-normalised speaker embeddings."""

from . import _common

HELP = "embed audio files into an .npz of speaker embeddings"
DESCRIPTION = """Embed audio files with a trained model and write OUT (.npz) holding
  ids         the files as given (command line or list), strings
  embeddings  (N, D) float32, each row L2-normalised
  model_id    the model's identity (embeddings of different models are not comparable)
Load it with numpy.load(OUT). Long files are embedded in bounded memory (30 s chunks whose
embeddings are averaged). The file is written atomically.

Long lists: --workers N embeds in N processes; a list of more than --chunk files is embedded in
parts kept in OUT.parts/ (each written atomically), so a killed run started again with the same
arguments goes on from its last unfinished part. The progress bar shows the rate and the time
left.

  audiocl embed --list vox2_test.txt --audio-root data/vox2 --out vox2.npz --workers 8
"""


def add_arguments(p):
    p.add_argument("files", nargs="*", metavar="FILE", help="audio files")
    p.add_argument("--list", metavar="LIST", help="text file with one audio path per line")
    p.add_argument(
        "--audio-root",
        metavar="DIR",
        default=None,
        help="folder that relative paths (arguments and --list lines) are relative to "
        "(default: the current folder)",
    )
    p.add_argument("--out", required=True, metavar="OUT.npz", help="output file")
    p.add_argument(
        "--workers", type=int, default=1, help="embedding processes (default 1: this one)"
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=10000,
        help="files per resumable part when the list is longer (default 10000)",
    )
    _common.add_model(p)
    _common.add_skip_bad(p, "files")
    _common.add_json(p)


def run(args) -> int:
    import sys
    from pathlib import Path

    from ...errors import ConfigError, DataError
    from ...inference.embed_pool import embed_in_parts, remove_parts
    from ...inference.embeddings_file import save_embeddings
    from ...io.pathlist import read_path_list

    ids = list(args.files) + (read_path_list(args.list) if args.list else [])
    if not ids:
        raise ConfigError("nothing to embed: give audio files or --list LIST")
    root = Path(args.audio_root) if args.audio_root else None
    paths = [root / i if root is not None else Path(i) for i in ids]
    model = _common.load_model(args)
    if not args.json:
        print(_common.model_line(model))
    bad: dict[int, str] = {}

    def on_error(i, err):
        bad[i] = err.reason
        print(f"audiocl embed: skipping {err.path}: {err.reason}", file=sys.stderr)

    if args.workers < 1 or args.chunk < 1:
        raise ConfigError("--workers and --chunk must be >= 1")
    make_bar, close = _common.progress_bar(args.quiet)
    out = Path(args.out)
    pool = model.worker_pool(args.workers)
    engine = pool or model.embedder
    try:
        report = make_bar(len(paths), "embedding")
        handler = on_error if args.skip_bad else None
        if len(paths) > args.chunk:
            emb, old_bad = embed_in_parts(
                engine, ids, paths, out, model.model_id, args.chunk, report, handler
            )
            bad.update({i: r for i, r in old_bad.items() if i not in bad})
        else:
            emb = engine.embed_files(paths, progress=report, on_error=handler)
    finally:
        close()
        if pool is not None:
            pool.close()
    keep = [i for i in range(len(ids)) if i not in bad]
    if not keep:
        raise DataError("no file could be embedded")
    save_embeddings(out, [ids[i] for i in keep], emb[keep], model.model_id)
    remove_parts(out)
    summary = {
        "out": str(out),
        "count": len(keep),
        "dim": int(emb.shape[1]),
        "skipped": [{"file": ids[i], "reason": r} for i, r in bad.items()],
        "model": _common.model_info(model),
    }
    if args.json:
        _common.print_json(summary)
    else:
        skipped = f", {len(bad)} unreadable file(s) skipped" if bad else ""
        print(f"wrote {len(keep)} embeddings of dim {emb.shape[1]} to {out}{skipped}")
    return 0
