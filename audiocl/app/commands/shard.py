"""``audiocl shard``: write a corpus as tar shards to stream in training."""

from . import _common

HELP = "write a corpus as tar shards (WebDataset layout) for streamed training"
DESCRIPTION = """Pack CORPUS (a VoxCeleb-layout folder, a Kaldi data dir or a CSV manifest) into tar
shards of --shard-size utterances: <key>.flac (--audio wav: <key>.wav) + <key>.json (utt_id, speaker, duration,
sample_rate, source) per utterance, in the WebDataset convention, plus index.npz (what audiocl
reads to open them) and shards.json (the shard list). Utterances are shuffled across shards,
seeded. FLAC files are copied as they are; other formats become 16-bit mono FLAC at their own
rate. A killed run, started again with the same arguments, writes only the missing shards.

Train on them with a source {shards: DIR} in data.sources: each loader worker of each rank
streams its own shards front to back through a shuffle buffer (data.shuffle_buffer).

example:
  audiocl shard data/voxceleb2/dev/aac --out data/vox2-shards --workers 8
  audiocl train --config vox2_ecapa_aam.yaml --set "data.sources=[{shards: data/vox2-shards}]"
"""


def add_arguments(p):
    p.add_argument("corpus", metavar="CORPUS", help="folder, Kaldi data dir or CSV manifest")
    p.add_argument("--out", required=True, help="shard folder (new, or a killed write to finish)")
    p.add_argument(
        "--shard-size", type=int, default=1000, help="utterances per shard (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default 0)")
    p.add_argument(
        "--workers", type=int, default=1, help="processes writing shards at once (default 1)"
    )
    p.add_argument(
        "--min-seconds", type=float, default=0.0, help="leave out shorter utterances (default 0)"
    )
    p.add_argument(
        "--audio",
        choices=("flac", "wav"),
        default="flac",
        help="member format: flac (default; half the size) or 16-bit wav (decodes faster)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common.add_json(p)


def run(args) -> int:
    from ...data.corpus import open_corpus
    from ...data.shard_writer import write_shards
    from ...errors import ConfigError

    if args.shard_size < 1 or args.workers < 1:
        raise ConfigError("--shard-size and --workers must be >= 1")
    corpus = open_corpus(args.corpus, min_duration=args.min_seconds)
    bar = None
    if not (args.quiet or args.json):
        from tqdm import tqdm

        bar = tqdm(unit="shard", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        shards = write_shards(
            corpus, args.out, args.shard_size, args.seed, args.workers, progress, args.audio
        )
    finally:
        if bar is not None:
            bar.close()
    info = {
        "out": str(shards.root),
        "shards": len(shards.names),
        "utterances": len(shards),
        "speakers": len(shards.corpus.speakers),
        "hours": round(float(shards.corpus.durations.sum()) / 3600, 3),
        "skipped": len(corpus.skipped) + (len(corpus) - len(shards)),
        "fingerprint": shards.fingerprint,
    }
    if args.json:
        _common.print_json(info)
    else:
        print(
            f"wrote {info['shards']} shards of {info['utterances']} utterances "
            f"({info['speakers']} speakers, {info['hours']} h) to {info['out']}"
            + (f"; {info['skipped']} files skipped (see shards.json)" if info["skipped"] else "")
        )
    return 0
