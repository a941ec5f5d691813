"""Benchmark the training input at VoxCeleb2 scale: a simulated corpus of 1,000,000 utterance
entries, read as files (a CSV manifest) and as tar shards.

    python benchmarks/bench_input.py [--entries 1000000] [--clips 400] [--real-shards 10]
        [--workers 1 2] [--batches 20] [--dir DIR] [--keep] [--parts index readers loader embed step]

The corpus: ``--clips`` synthetic utterances of 4-12 s (VoxCeleb2's mean is 7.8 s), reused under many keys so that a
million entries fit the disk. Files: a CSV manifest of ``--entries`` rows (5,000 speakers of 200
utterances) over the clips. Shards: ``--real-shards`` real tars of 1,000 members written by
``audiocl.data.shard_writer`` (FLAC members, and again with WAV members), and an index of
``--entries`` entries over 1,000 shard names, the others symlinks to the real tars (same member offsets, so every read is a real read of FLAC
bytes). The page cache holds all the audio (the tars are small), so throughput is what the CPU
delivers, not a disk or network filesystem's latency; what shards change there (a few large
sequential reads instead of one random read per crop) this machine cannot show.

Each figure is measured in a fresh process (peak RSS is that process's ``ru_maxrss``):
- index: open the manifest (no cache, then cached) and open the shard index;
- start-up: open the training data, build the input and get the first batch (1 loader worker);
- throughput: utterances/s through the DataLoader with N workers, batch 64, one 2 s crop each,
  with the default augmentation (simulated noise and reverb, speed) in the workers, with it
  left to the training device (``augment.on_device``: the workers decode, crop and draw the
  augmentation's random state) and without it (decode + crop);
- consumption: an ECAPA C=512 training step on this CPU (batch 64, 2 s), and on a GPU from the
  README's H200 figure (15.8 ms for a batch of 128 x 200 frames).
Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GPU_STEP_S, GPU_BATCH = 0.0158, 128  # README "On a GPU": ECAPA C=512, H200, fp32
SHARD_SIZE = 1000
SPEAKERS = 5000
PARTS = ("index", "readers", "loader", "embed", "step")
# where the augmentation runs -> the table's name for it
AUGMENT = {"worker": "augmented", "device": "aug. on device", "none": "decode+crop"}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------ building


def utt_id(j: int) -> str:
    """Entry ``j``'s id; speakers spread so that consecutive entries differ in speaker."""
    return f"id{(j * 7919) % SPEAKERS:05d}/{j:07d}.flac"


def build(root: Path, entries: int, clips: int, real_shards: int) -> None:
    from audiocl.data.corpus import open_corpus
    from audiocl.data.shard_writer import write_shards
    from audiocl.data.synth import synthesize_corpus

    if (root / "done").exists():
        return
    t0 = time.perf_counter()
    voices = synthesize_corpus(
        root / "clips", speakers=clips // 10, utterances=10, duration=(4.0, 12.0), trials=False
    )
    base = open_corpus(voices)
    paths = [base.path(i) for i in range(len(base))]
    durs = base.durations.tolist()
    # entry j: clip j % clips
    per = entries // SPEAKERS
    lines = ["path,speaker,duration,sample_rate,utt_id"]
    for j in range(entries):
        spk = utt_id(j).split("/")[0]
        lines.append(f"{paths[j % len(paths)]},{spk},{durs[j % len(paths)]:.4f},16000,{utt_id(j)}")
    (root / "files.csv").write_text("\n".join(lines) + "\n")
    print(
        f"  built manifest of {entries} entries ({per} per speaker) in {time.perf_counter() - t0:.0f} s"
    )
    # real shards: the first real_shards * SHARD_SIZE entries
    head = root / "head.csv"
    head.write_text("\n".join(lines[: real_shards * SHARD_SIZE + 1]) + "\n")
    ids = [utt_id(k) for k in range(entries)]
    pos = np.array(sorted(range(entries), key=ids.__getitem__))  # utt-id order
    for fmt, name in (("flac", "shards"), ("wav", "shards_wav")):
        real = write_shards(
            open_corpus(head), root / f"real_{fmt}", SHARD_SIZE, workers=2, audio_format=fmt
        )
        simulate(real, root / name, real_shards, ids, pos)
    (root / "done").write_text("")
    n_shards = -(-entries // SHARD_SIZE)
    print(f"  built 2 x {n_shards} shards ({real_shards} real) in {time.perf_counter() - t0:.0f} s")


def simulate(real, out: Path, real_shards: int, ids: list[str], pos: np.ndarray) -> None:
    """An index of ``len(ids)`` entries over 1,000-member shards, each (a link to) one of
    ``real``'s: the same bytes at the same offsets, under keys of their own."""
    from audiocl.data.corpus import Corpus
    from audiocl.data.shards import LIST_NAME, open_shards, save_index, shard_name

    entries = len(ids)
    order = real.read_order()
    if len(order) != real_shards * SHARD_SIZE:
        raise SystemExit("a real shard lost members")
    out.mkdir(exist_ok=True)
    n_shards = -(-entries // SHARD_SIZE)
    for k in range(n_shards):
        link = out / shard_name(k)
        if not link.exists():
            link.symlink_to(real.shard_path(k % real_shards))
    # entry j: member j % 1000 of shard j // 1000, a link to real shard (j // 1000) % real_shards
    j = np.arange(entries)
    src = order[(j // SHARD_SIZE % real_shards) * SHARD_SIZE + j % SHARD_SIZE][pos]
    corpus = Corpus._build(
        [shard_name(k) for k in (j // SHARD_SIZE)[pos].tolist()],
        [ids[k] for k in pos.tolist()],
        [ids[k].split("/")[0] for k in pos.tolist()],
        real.corpus.durations[src],
        np.full(entries, 16000),
        root=str(out),
        source=str(out),
    )
    names = [shard_name(k) for k in range(n_shards)]
    shard = (j // SHARD_SIZE)[pos]
    save_index(out, corpus, names, shard, real.offset[src], real.size[src], pos, real.audio_format)
    (out / LIST_NAME).write_text(json.dumps({"shardlist": [], "simulated": True}))
    assert len(open_shards(out)) == entries


# ------------------------------------------------------------------------------ measuring


def config(root: Path, kind: str, workers: int, augment: str):
    from audiocl.training.recipe import load_config

    source = {
        "files": "{path: files.csv, format: csv}",
        "shards": "{shards: shards}",
        "shards_wav": "{shards: shards_wav}",
    }[kind]
    return load_config(
        None,
        [
            f"data.root={root}",
            f"data.sources=[{source}]",
            "data.batch_size=64",
            "data.views=1",
            "data.crop_seconds=2.0",
            f"data.num_workers={workers}",
            f"augment.enabled={str(augment != 'none').lower()}",
            f"augment.on_device={str(augment == 'device').lower()}",
            "augment.babble_p=0",
            "objective.contrastive=none",
            "objective.contrastive_weight=0",
            "objective.aam_weight=1.0",
        ],
    )


def measure_index(root: Path, kind: str) -> dict:
    if kind.startswith("shards"):
        from audiocl.data.shards import open_shards

        t0 = time.perf_counter()
        s = open_shards(root / kind)
        return {"seconds": time.perf_counter() - t0, "entries": len(s), "peak_mb": peak_mb()}
    from audiocl.data.corpus import open_corpus

    t0 = time.perf_counter()
    c = open_corpus(root / "files.csv", cache=False)
    cold = time.perf_counter() - t0
    open_corpus(root / "files.csv")  # writes the cache
    t0 = time.perf_counter()
    open_corpus(root / "files.csv")
    warm = time.perf_counter() - t0
    return {"seconds": cold, "cached_seconds": warm, "entries": len(c), "peak_mb": peak_mb()}


def measure_loader(root: Path, kind: str, workers: int, augment: str, batches: int) -> dict:
    from audiocl.data.views import ViewBatches, make_loader, open_training_data

    cfg = config(root, kind, workers, augment)
    t0 = time.perf_counter()
    data = open_training_data(cfg.data)
    ds = ViewBatches(data, cfg.data, cfg.augment, seed=0)
    it = iter(make_loader(ds, workers))
    next(it)
    startup = time.perf_counter() - t0
    for _ in range(2 * max(1, workers)):  # every worker past its first batch
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * cfg.data.batch_size / (time.perf_counter() - t0)
    del it  # joins the workers: their peak is then the children's
    workers_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "startup_s": startup,
        "utt_per_s": rate,
        "peak_mb": peak_mb(),
        "worker_peak_mb": workers_mb,
    }


def measure_step() -> dict:
    import torch

    from audiocl.config import Config
    from audiocl.training.trainer import TrainModule, make_optimizer

    torch.set_num_threads(2)
    cfg = Config()
    cfg.model.channels = 512
    cfg.objective.contrastive, cfg.objective.contrastive_weight = "none", 0.0
    cfg.objective.aam_weight = 1.0
    module = TrainModule(cfg, 5000)
    opt = make_optimizer(cfg, module.parameters())
    wave = torch.randn(1, 64, 32000) * 0.1
    labels = torch.randint(0, 5000, (64,))
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        loss, _ = module(wave, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    step = float(np.median(times[1:]))
    return {"step_s": step, "utt_per_s": 64 / step}


def measure_readers(root: Path) -> dict:
    """Members/s reading every audio member's bytes of the real shards: the standard library's
    ``tarfile`` (streaming), ``webdataset`` (no decoding) and audiocl's index reader."""
    import tarfile

    from audiocl.data.shard_stream import ShardReader
    from audiocl.data.shards import open_shards

    real = open_shards(root / "real_flac")
    urls = [str(real.shard_path(k)) for k in range(len(real.names))]
    out = {}
    t0 = time.perf_counter()
    n = 0
    for url in urls:
        with tarfile.open(url, "r|") as tar:
            for m in tar:
                if m.name.endswith(".flac"):
                    n += len(tar.extractfile(m).read()) > 0
    out["tarfile"] = n / (time.perf_counter() - t0)
    try:
        t0 = time.perf_counter()
        import webdataset as wds

        out["webdataset_import_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        n = sum(len(x["flac"]) > 0 for x in wds.WebDataset(urls, shardshuffle=False))
        out["webdataset"] = n / (time.perf_counter() - t0)
    except ImportError:
        out["webdataset"] = None
    try:
        t0 = time.perf_counter()
        import lhotse  # noqa: F401

        out["lhotse_import_s"] = time.perf_counter() - t0
    except ImportError:
        out["lhotse_import_s"] = None
    reader = ShardReader(real)
    t0 = time.perf_counter()
    n = sum(len(reader.read(i)) > 0 for i in real.read_order().tolist())
    out["audiocl_index"] = n / (time.perf_counter() - t0)
    reader.close()
    out["members"] = n
    return out


def measure_embed(root: Path, workers: int) -> dict:
    """Files/s embedding the clips with the shipped starter model: one process (2 threads) or
    an ``EmbedPool`` of ``workers`` (the pool's start-up timed apart)."""
    from audiocl.data.corpus import open_corpus
    from audiocl.inference.embed import Embedder
    from audiocl.inference.embed_pool import EmbedderSpec, EmbedPool
    from audiocl.io.vad import SpeechGate
    from audiocl.paths import STARTER_MODEL

    clips = open_corpus(root / "clips")
    paths = [clips.path(i) for i in range(len(clips))]
    seconds = float(clips.durations.sum())
    model, gate = str(STARTER_MODEL), SpeechGate(min_speech=0.0)
    started = 0.0
    if workers == 1:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        engine = Embedder.from_file(model, gate=gate)
        engine.embed_files(paths[:8])  # warm
    else:
        t0 = time.perf_counter()
        engine = EmbedPool(EmbedderSpec(model, gate=gate), workers)
        engine.embed_files(paths[: 8 * workers])
        started = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.embed_files(paths)
    took = time.perf_counter() - t0
    if workers > 1:
        engine.close()
    return {"files_per_s": len(paths) / took, "rtf": seconds / took, "startup_s": started}


def child(args) -> int:
    root = Path(args.dir)
    what = args.child
    if what == "index":
        out = measure_index(root, args.kind)
    elif what == "loader":
        out = measure_loader(root, args.kind, args.child_workers, args.augment, args.batches)
    elif what == "readers":
        out = measure_readers(root)
    elif what == "embed":
        out = measure_embed(root, args.child_workers)
    else:
        out = measure_step()
    print(json.dumps(out))
    return 0


def run_child(argv: list[str]) -> dict:
    res = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, check=False
    )
    if res.returncode:
        raise SystemExit(f"child {argv} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--clips", type=int, default=400)
    ap.add_argument("--real-shards", type=int, default=10)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--dir", default="")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure"
    )
    ap.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    ap.add_argument("--kind", default="files", help=argparse.SUPPRESS)
    ap.add_argument("--child-workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--augment", choices=AUGMENT, default="none", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench_input_"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"bench_input  (python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {root})")
    try:
        build(root, args.entries, args.clips, args.real_shards)
        d = ["--dir", str(root), "--batches", str(args.batches)]
        fig: dict = {"entries": args.entries}
        parts = set(args.parts)
        if "index" in parts:
            for kind in ("files", "shards"):
                fig[f"index_{kind}"] = run_child(["--child", "index", "--kind", kind, *d])
        if "readers" in parts:
            fig["readers"] = run_child(["--child", "readers", *d])
        if "loader" in parts:
            rows = []
            for w in args.workers:
                for augment in AUGMENT:
                    for kind in ("files", "shards", "shards_wav"):  # side by side: their ratios
                        r = run_child(
                            ["--child", "loader", "--kind", kind, "--child-workers", str(w)]
                            + ["--augment", augment, *d]
                        )
                        r["per_worker"] = r["utt_per_s"] / w
                        rows.append({"kind": kind, "workers": w, "augment": augment, **r})
            fig["loader"] = rows
        if "embed" in parts:
            fig["embed"] = [
                {"workers": w, **run_child(["--child", "embed", "--child-workers", str(w), *d])}
                for w in sorted({1, *args.workers})
            ]
        if "step" in parts:
            fig["cpu_step"] = run_child(["--child", "step", *d])
        fig["gpu_utt_per_s"] = GPU_BATCH / GPU_STEP_S
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    _print(fig)
    print(json.dumps(fig))
    return 0


def _print(fig: dict) -> None:
    if "index_files" in fig:
        _print_index(fig)
    if "loader" in fig:
        _print_loader(fig["loader"])
    if "readers" in fig:
        _print_readers(fig["readers"])
    if "embed" in fig:
        print("  embedding the clips with the shipped starter model:")
        for e in fig["embed"]:
            print(
                f"    {e['workers']} process(es): {e['files_per_s']:.1f} files/s, {e['rtf']:.0f}x "
                "real time"
                + (f" (pool start-up {e['startup_s']:.1f} s)" if e["workers"] > 1 else "")
            )
    if "cpu_step" in fig:
        c = fig["cpu_step"]
        print(
            f"  ECAPA C=512 step here (2 threads, batch 64): {c['step_s']:.2f} s = "
            f"{c['utt_per_s']:.0f} utt/s"
        )
    print(f"  ECAPA C=512 step on an H200 (README): {fig['gpu_utt_per_s']:.0f} utt/s")


def _print_index(fig: dict) -> None:
    fi, sh = fig["index_files"], fig["index_shards"]
    print(
        f"  {'index, ' + format(fig['entries'], ',') + ' entries':<44} {'seconds':>9} {'peak MB':>9}"
    )
    print(f"  {'files: CSV manifest (no cache)':<44} {fi['seconds']:>9.2f} {fi['peak_mb']:>9.0f}")
    print(f"  {'files: CSV manifest (cached)':<44} {fi['cached_seconds']:>9.2f}")
    print(f"  {'shards: index.npz':<44} {sh['seconds']:>9.2f} {sh['peak_mb']:>9.0f}")


def _print_loader(rows: list[dict]) -> None:
    print(
        f"  {'loader (batch 64, 2 s crops)':<34} {'workers':>7} {'start s':>8} {'utt/s':>8} "
        f"{'/worker':>8} {'peak MB':>8} {'worker MB':>9}"
    )
    for r in rows:
        name = f"{r['kind']}, {AUGMENT[r['augment']]}"
        print(
            f"  {name:<34} {r['workers']:>7} {r['startup_s']:>8.2f} {r['utt_per_s']:>8.0f} "
            f"{r['per_worker']:>8.0f} {r['peak_mb']:>8.0f} {r['worker_peak_mb']:>9.0f}"
        )


def _print_readers(r: dict) -> None:
    print(f"  reading the {r['members']} members of the real shards (members/s, bytes only):")
    for name in ("tarfile", "webdataset", "audiocl_index"):
        if r.get(name):
            print(f"    {name:<16} {r[name]:>10,.0f}")
    for name in ("webdataset", "lhotse"):
        if r.get(f"{name}_import_s") is not None:
            print(f"    import {name}: {r[f'{name}_import_s']:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
