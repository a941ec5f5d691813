"""``audiocl synth``: write a synthetic-voice corpus (VoxCeleb layout) and its trial list."""

HELP = "synthesize a corpus of synthetic voices (VoxCeleb layout FLAC + trials.txt)"
DESCRIPTION = """Synthesize speech-like audio from a source-filter model: every speaker has its own
F0 range, vocal-tract length, spectral tilt, breathiness, jitter/shimmer and speaking rate; every
utterance is a new random sequence of vowels, consonants and pauses; each speaker has 2 recording
sessions with different channels. Output: OUT/spkNNNN/sK/uNNN.flac (16-bit FLAC), OUT/trials.txt
(VoxCeleb format: all target pairs plus 3x as many non-target pairs) and OUT/synth.json.
Deterministic: the same arguments give the same files; speaker ids start at --speaker-offset, so
corpora with disjoint id ranges have disjoint voices (e.g. train 0..39, test 1000..1009).

example:
  audiocl synth data/synth-train --speakers 40 --utterances 12
  audiocl synth data/synth-test --speakers 10 --speaker-offset 1000
"""


def add_arguments(p):
    p.add_argument(
        "out",
        metavar="OUT",
        help="output folder: new, empty, or an earlier synth corpus (replaced)",
    )
    p.add_argument("--speakers", type=int, default=40, help="number of voices (default 40)")
    p.add_argument("--utterances", type=int, default=12, help="utterances per voice (default 12)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--sample-rate", type=int, default=16000, help="Hz (default 16000)")
    p.add_argument(
        "--min-seconds", type=float, default=2.0, help="shortest utterance (default 2.0)"
    )
    p.add_argument("--max-seconds", type=float, default=4.0, help="longest utterance (default 4.0)")
    p.add_argument(
        "--speaker-offset", type=int, default=0, help="id of the first speaker (default 0)"
    )
    p.add_argument("--no-trials", action="store_true", help="do not write trials.txt")


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    from ...data.synth import synthesize_corpus
    from ...errors import ConfigError
    from ...io import audio  # noqa: F401  (imported before timing: it loads torch)

    if args.speakers < 1 or args.utterances < 1:
        raise ConfigError("--speakers and --utterances must be >= 1")
    if args.utterances < 2 and not args.no_trials:
        raise ConfigError("trials need at least 2 utterances per speaker (or pass --no-trials)")
    if not 0 < args.min_seconds <= args.max_seconds:
        raise ConfigError("need 0 < --min-seconds <= --max-seconds")
    if not 8000 <= args.sample_rate <= 96000:
        raise ConfigError("--sample-rate must be between 8000 and 96000 Hz")
    if args.speaker_offset < 0:
        raise ConfigError("--speaker-offset must be >= 0")
    t0 = time.perf_counter()
    out = synthesize_corpus(
        args.out,
        speakers=args.speakers,
        utterances=args.utterances,
        seed=args.seed,
        sample_rate=args.sample_rate,
        duration=(args.min_seconds, args.max_seconds),
        speaker_offset=args.speaker_offset,
        trials=not args.no_trials,
    )
    wall = time.perf_counter() - t0
    stats = json.loads((Path(out) / "synth.json").read_text(encoding="utf-8"))
    first, last = args.speaker_offset, args.speaker_offset + args.speakers - 1
    print(
        f"wrote {stats['files']} utterances of {args.speakers} voices (spk{first:04d}..spk{last:04d}), "
        f"{stats['audio_seconds'] / 60:.1f} min of audio at {args.sample_rate} Hz, to {out}"
    )
    if not args.no_trials:
        lines = (Path(out) / "trials.txt").read_text(encoding="utf-8").splitlines()
        targets = sum(1 for line in lines if line.startswith("1 "))
        print(f"trials: {out / 'trials.txt'} ({targets} target, {len(lines) - targets} non-target)")
    print(
        f"synthesis {stats['real_time_factor']:.0f}x real time; "
        f"{stats['audio_seconds'] / max(wall, 1e-9):.0f}x including FLAC writing ({wall:.1f} s)"
    )
    return 0
