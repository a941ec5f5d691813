"""Prepare VoxCeleb1/2 as downloaded for audiocl: FLAC corpora, their indexes and the trial lists.

Input (what the VoxCeleb downloads unpack to; give either or both):
  --vox1 DIR   VoxCeleb1: DIR/wav/idXXXXX/<video>/NNNNN.wav (dev and test together, or
               DIR/{dev,test}/wav/...), with the trial lists anywhere under DIR or --lists
  --vox2 DIR   VoxCeleb2: DIR/dev/aac/idXXXXX/<video>/NNNNN.m4a (and/or DIR/test/aac/...)

Output under --out:
  voxceleb2/{dev,test}/wav/idXXXXX/<video>/NNNNN.flac   16 kHz mono FLAC (m4a decoded by PyAV)
  voxceleb1/wav/...                                     VoxCeleb1 as FLAC
  voxceleb1/trials/{vox1_O,vox1_E,vox1_H}.txt           the cleaned official lists
  each corpus folder also gets audiocl's index (``.audiocl_manifest.npz``)
  with --shards: voxceleb2/dev/shards/ (and each other set's), tar shards of --shard-size
  utterances to stream in training (``audiocl shard``; a source ``{shards: voxceleb2/dev/shards}``)

Why FLAC: training reads random 2 s spans, which libsndfile seeks to in FLAC; an m4a span is
decoded from the nearest keyframe (``benchmarks/bench_decode.py`` measures the difference).

Resumable: every output file is written atomically (temporary name, then rename), so a file
that exists is complete, and a rerun converts only what is missing. ``--dry-run`` reports what
would be converted and which trial lists were found, and writes nothing. The trial lists are
the cleaned versions (VoxCeleb1-O ``veri_test2.txt``, -E ``list_test_all2.txt``, -H
``list_test_hard2.txt``); every file they name must be in the converted VoxCeleb1, or the
script says which are missing. Nothing is downloaded.

    python scripts/prepare_voxceleb.py --vox1 /data/vox1 --vox2 /data/vox2 --out data/voxceleb \\
        [--workers 8] [--dry-run] [--shards] [--shard-size 1000] [--shard-audio flac|wav]

Then ``audiocl train --config vox2_ecapa_aam --set data.root=data/voxceleb`` and
``audiocl eval --trials data/voxceleb/voxceleb1/trials/vox1_O.txt --audio-root
data/voxceleb/voxceleb1/wav``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import json
import os
import sys
from pathlib import Path

SR = 16000
# official cleaned list -> the name audiocl gives it
TRIAL_LISTS = {
    "veri_test2.txt": "vox1_O.txt",
    "list_test_all2.txt": "vox1_E.txt",
    "list_test_hard2.txt": "vox1_H.txt",
}


def plan_set(src: Path, dst: Path, pattern: str) -> list[tuple[Path, Path]]:
    """``(input, output)`` pairs of every file under ``src`` matching ``pattern``; the output keeps
    the ``idXXXXX/<video>/NNNNN`` part with a ``.flac`` suffix."""
    pairs = []
    for path in sorted(src.rglob(pattern)):
        rel = path.relative_to(src).with_suffix(".flac")
        pairs.append((path, dst / rel))
    return pairs


def find_sets(vox1: Path | None, vox2: Path | None, out: Path) -> list[tuple[str, Path, Path, str]]:
    """``(name, source folder, output folder, glob)`` of every set present."""
    sets = []
    if vox2 is not None:
        for part in ("dev", "test"):
            src = vox2 / part / "aac"
            if src.is_dir():
                sets.append((f"voxceleb2/{part}", src, out / "voxceleb2" / part / "wav", "*.m4a"))
        if not any(s[0].startswith("voxceleb2") for s in sets):
            raise SystemExit(f"{vox2}: no dev/aac or test/aac folder (VoxCeleb2 layout)")
    if vox1 is not None:
        srcs = [vox1 / "wav"] if (vox1 / "wav").is_dir() else []
        srcs += [vox1 / p / "wav" for p in ("dev", "test") if (vox1 / p / "wav").is_dir()]
        if not srcs:
            raise SystemExit(f"{vox1}: no wav, dev/wav or test/wav folder (VoxCeleb1 layout)")
        for src in srcs:
            sets.append(("voxceleb1", src, out / "voxceleb1" / "wav", "*.wav"))
    return sets


def convert(pair: tuple[Path, Path]) -> str | None:
    """Decode one file, write 16 kHz mono FLAC atomically; returns an error line or None."""
    from audiocl.errors import AudioError
    from audiocl.io import audio

    src, dst = pair
    try:
        wave = audio.load(src, SR)
        audio.save(dst, wave, SR)
    except AudioError as e:
        return str(e)
    return None


def find_lists(roots: list[Path]) -> dict[str, Path]:
    found = {}
    for root in roots:
        for name in TRIAL_LISTS:
            for path in sorted(root.rglob(name)):
                found.setdefault(name, path)
    return found


def write_trials(lists: dict[str, Path], wav_root: Path, out_dir: Path) -> dict[str, dict]:
    """Each official list rewritten with ``.flac`` names (``1 id10270/x/00001.flac ...``), after
    checking that every file it names was converted."""
    from audiocl.data.trials import read_trials
    from audiocl.fileio import write_text_atomic

    report = {}
    for name, path in lists.items():
        trials = read_trials(path)
        files = {f for t in trials for f in (t.enroll, t.test)}
        flac = {f: str(Path(f).with_suffix(".flac")) for f in files}
        missing = sorted(f for f in files if not (wav_root / flac[f]).is_file())
        if missing:
            raise SystemExit(
                f"{path}: {len(missing)} of its {len(files)} files are not in {wav_root} "
                f"(first: {missing[0]}); give the whole VoxCeleb1 (dev and test)"
            )
        lines = [f"{t.label} {flac[t.enroll]} {flac[t.test]}" for t in trials]
        target = out_dir / TRIAL_LISTS[name]
        write_text_atomic(target, "\n".join(lines) + "\n")
        report[TRIAL_LISTS[name]] = {
            "from": str(path),
            "trials": len(trials),
            "target": sum(t.label for t in trials),
        }
    return report


def main(argv=None) -> int:
    from audiocl.data.shards import AUDIO_FORMATS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vox1", type=Path, default=None)
    p.add_argument("--vox2", type=Path, default=None)
    p.add_argument("--lists", type=Path, default=None, help="folder with the trial lists")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--dry-run", action="store_true", help="report the work; write nothing")
    p.add_argument("--shards", action="store_true", help="also write tar shards of each corpus")
    p.add_argument("--shard-size", type=int, default=1000, help="utterances per shard")
    p.add_argument(
        "--shard-audio",
        choices=AUDIO_FORMATS,
        default="flac",
        help="the shards' members: flac, or wav (twice the disk; read without decoding, what a "
        "GPU's loader workers need to keep up)",
    )
    args = p.parse_args(argv)
    if args.vox1 is None and args.vox2 is None:
        p.error("give --vox1 and/or --vox2")

    sets = find_sets(args.vox1, args.vox2, args.out)
    summary: dict = {"dry_run": args.dry_run, "sets": {}}
    todo_all = []
    for name, src, dst, pattern in sets:
        pairs = plan_set(src, dst, pattern)
        todo = [(a, b) for a, b in pairs if not b.is_file()]
        entry = summary["sets"].setdefault(name, {"files": 0, "done": 0, "to_convert": 0})
        entry["files"] += len(pairs)
        entry["done"] += len(pairs) - len(todo)
        entry["to_convert"] += len(todo)
        todo_all += todo
    roots = [r for r in (args.lists, args.vox1) if r is not None]
    lists = find_lists(roots)
    summary["trial_lists_found"] = {TRIAL_LISTS[k]: str(v) for k, v in lists.items()}
    for name, e in summary["sets"].items():
        print(f"{name}: {e['files']} files, {e['done']} already converted, {e['to_convert']} to do")
    print(f"trial lists found: {', '.join(summary['trial_lists_found']) or 'none'}")
    if args.dry_run:
        print(json.dumps(summary))
        return 0

    errors = []
    if todo_all:
        from tqdm import tqdm

        bar = tqdm(total=len(todo_all), unit="file", desc="converting", file=sys.stderr)
        with contextlib.ExitStack() as stack:
            mapper = map
            if args.workers > 1:
                pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(args.workers))
                mapper = functools.partial(pool.map, chunksize=16)
            for err in mapper(convert, todo_all):
                if err:
                    errors.append(err)
                bar.update(1)
        bar.close()
    for line in errors[:20]:
        print(f"skipped: {line}", file=sys.stderr)
    summary["errors"] = len(errors)

    from audiocl.data.corpus import open_corpus

    for name in sorted({s[0] for s in sets}):
        folder = args.out / name / "wav"
        corpus = open_corpus(folder)  # builds and caches the index
        summary["sets"][name]["indexed"] = len(corpus)
        summary["sets"][name]["speakers"] = len(corpus.speakers)
        print(f"{name}: indexed {len(corpus)} utterances of {len(corpus.speakers)} speakers")
        if args.shards:
            from audiocl.data.shard_writer import write_shards

            shards = write_shards(
                corpus,
                args.out / name / "shards",
                args.shard_size,
                workers=args.workers,
                audio_format=args.shard_audio,
            )
            summary["sets"][name]["shards"] = len(shards.names)
            print(f"{name}: {len(shards.names)} shards in {shards.root}")
    if lists:
        if not any(s[0] == "voxceleb1" for s in sets):
            raise SystemExit("trial lists need --vox1: they name VoxCeleb1 files")
        summary["trials"] = write_trials(
            lists, args.out / "voxceleb1" / "wav", args.out / "voxceleb1" / "trials"
        )
        for name, t in summary["trials"].items():
            print(f"trials: {name}: {t['trials']} ({t['target']} target)")
    print(json.dumps(summary))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
