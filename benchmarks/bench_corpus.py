"""Benchmark corpus indexing: a generated VoxCeleb-layout tree of small files, indexed cold
(no manifest: every header read) and warm (manifest cache), plus the memory per record.

    python benchmarks/bench_corpus.py [--files 20000] [--workers N] [--keep DIR]

"Cold" means no manifest; the OS page cache is warm (the files were just written), so the figure
is CPU-bound header parsing, not disk seeks. Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import soundfile as sf

from audiocl.data.corpus import MANIFEST_NAME, open_corpus, read_headers

VOXCELEB2_UTTERANCES = 1_092_009
VOXCELEB2_PATH = "id00012/21Uxsk56VDQ/00001.wav"  # a typical relative path (29 characters)


def wav_bytes(samples: np.ndarray, sr: int) -> bytes:
    """A 16-bit mono WAV file in memory (faster than soundfile for thousands of tiny files)."""
    data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, sr, sr * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


def make_tree(root: Path, n_files: int, seed: int = 0) -> float:
    """``n_files`` files of 0.1 s in speaker/session/utterance folders, half WAV, half FLAC.
    Returns the seconds it took."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    per_session, sessions = 10, 10
    speakers = -(-n_files // (per_session * sessions))
    clip = rng.normal(0, 0.1, 1600).astype(np.float32)
    wav = wav_bytes(clip, 16000)
    flac_path = root / "template.flac"
    root.mkdir(parents=True, exist_ok=True)
    sf.write(flac_path, clip, 16000)
    flac = flac_path.read_bytes()
    flac_path.unlink()
    k = 0
    for s in range(speakers):
        for j in range(sessions):
            d = root / f"id{s:05d}" / f"sess{j:04d}"
            d.mkdir(parents=True, exist_ok=True)
            for u in range(per_session):
                if k == n_files:
                    return time.perf_counter() - t0
                ext = "wav" if k % 2 == 0 else "flac"
                (d / f"{u:05d}.{ext}").write_bytes(wav if ext == "wav" else flac)
                k += 1
    return time.perf_counter() - t0


def timed(fn, repeat: int = 1):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=None, help="header-reading threads")
    ap.add_argument("--keep", type=Path, default=None, help="build the tree here and keep it")
    args = ap.parse_args(argv)

    tmp = None
    if args.keep is not None:
        root = args.keep
    else:
        tmp = tempfile.mkdtemp(prefix="audiocl_bench_corpus_")
        root = Path(tmp) / "tree"
    os.environ.setdefault("AUDIOCL_HOME", str(Path(tmp or root) / "home"))
    try:
        make_s = make_tree(root, args.files)
        (root / MANIFEST_NAME).unlink(missing_ok=True)

        corpus, cold_s = timed(lambda: open_corpus(root, workers=args.workers))
        n = len(corpus)
        assert n == args.files, (n, args.files)
        (root / MANIFEST_NAME).unlink()
        _, cold1_s = timed(lambda: open_corpus(root, workers=1))
        warm, warm_s = timed(lambda: open_corpus(root), repeat=5)
        assert len(warm) == n
        # one new file in one folder: that folder's headers are read again, the rest reused
        (root / "id00000" / "sess0000" / "extra.wav").write_bytes(
            wav_bytes(np.zeros(1600, np.float32), 16000)
        )
        _, incr_s = timed(lambda: open_corpus(root))
        _, warm2_s = timed(lambda: open_corpus(root), repeat=3)

        # soundfile.info on a sample, for comparison with our header parser
        sample = [corpus.path(i) for i in range(0, n, max(1, n // 2000))]
        _, sf_s = timed(lambda: [sf.info(p) for p in sample])
        _, ours_s = timed(lambda: read_headers(sample, workers=1))

        n_cold = n
        # memory: the corpus columns (measured with tracemalloc) vs one Utterance object each
        del warm, corpus
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        corpus = open_corpus(root)
        col_bytes = tracemalloc.get_traced_memory()[0] - base
        objs = [corpus[i] for i in range(len(corpus))]
        obj_bytes = tracemalloc.get_traced_memory()[0] - base - col_bytes
        tracemalloc.stop()
        del objs
        n = len(corpus)
        per_record = col_bytes / n
        per_object = obj_bytes / n
        avg_path = float(np.mean([len(corpus.utt_id(i)) for i in range(0, n, 97)]))
        vox_per_record = per_record - avg_path + len(VOXCELEB2_PATH)
        vox_mb = VOXCELEB2_UTTERANCES * vox_per_record / 1e6
        manifest_kb = (root / MANIFEST_NAME).stat().st_size / 1024
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    files_s = n_cold / cold_s
    rows = [
        ("files (0.1 s, half WAV / half FLAC)", f"{n_cold}"),
        ("create tree", f"{make_s:.2f} s"),
        ("cold index, default threads", f"{cold_s:.2f} s = {files_s:,.0f} files/s"),
        ("cold index, 1 thread", f"{cold1_s:.2f} s = {n_cold / cold1_s:,.0f} files/s"),
        (
            "header read: ours / soundfile.info",
            f"{ours_s / len(sample) * 1e6:.1f} / {sf_s / len(sample) * 1e6:.1f} us per file",
        ),
        ("warm open (manifest cache)", f"{warm_s * 1e3:.1f} ms"),
        (
            "after adding 1 file (1 folder re-read)",
            f"{incr_s * 1e3:.1f} ms, then warm {warm2_s * 1e3:.1f} ms",
        ),
        ("manifest file", f"{manifest_kb:.0f} KiB"),
        (
            "memory per record (columns, tracemalloc)",
            f"{per_record:.1f} B (avg utt_id {avg_path:.0f} chars)",
        ),
        ("memory per record as Utterance objects", f"{per_object:.0f} B"),
        (
            "VoxCeleb2 1.1M utterances (29-char paths)",
            f"{vox_mb:.0f} MB; cold index about {VOXCELEB2_UTTERANCES / files_s / 60:.1f} min",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"bench_corpus  (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    figures = {
        "files": n_cold,
        "cold_s": round(cold_s, 3),
        "cold_files_per_s": round(files_s),
        "cold_1thread_files_per_s": round(n_cold / cold1_s),
        "header_us_ours": round(ours_s / len(sample) * 1e6, 1),
        "header_us_soundfile": round(sf_s / len(sample) * 1e6, 1),
        "warm_open_ms": round(warm_s * 1e3, 1),
        "incremental_open_ms": round(incr_s * 1e3, 1),
        "bytes_per_record": round(per_record, 1),
        "bytes_per_utterance_object": round(per_object),
        "voxceleb2_mb": round(vox_mb, 1),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
