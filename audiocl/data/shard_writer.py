"""Write a corpus as tar shards (``audiocl shard``); the layout is in ``audiocl.data.shards``.

The utterances are shuffled once, seeded, and cut into shards of ``shard_size``, so every shard
mixes speakers and a stream that reads a few shards at a time still sees many speakers. Members
are FLAC (or, with ``audio_format="wav"``, 16-bit WAV): files already in that format are copied
as they are (a FLAC file whose header does not give its length is decoded again); others are
decoded and written 16-bit, mono, at their own rate (lossless for 16-bit PCM sources). Files
that cannot be decoded are left out and listed in ``shards.json``.

Resumable: the plan (source, seed, shard size, utterance order) is written first; each shard is
written to a temporary name and renamed, so after a kill a rerun writes only the shards that are
missing. Every tar is byte-for-byte reproducible (fixed member mode, owner and mtime).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError, DataError
from ..fileio import atomic_path, write_text_atomic
from ..io import audio
from .corpus import Corpus
from .shards import (
    AUDIO_FORMATS,
    LIST_NAME,
    ShardSet,
    member_key,
    open_shards,
    save_index,
    shard_name,
)

log = logging.getLogger(__name__)
PLAN_NAME = ".plan.json"

# one utterance to write: (position, path, utt id, speaker, duration, sample rate)
Item = tuple[int, str, str, str, float, int]
# what a written shard holds: (position, data offset, size, duration, sample rate) per member
Written = list[tuple[int, int, int, float, int]]


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o444, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


def _member_bytes(path: str, fmt: str) -> tuple[bytes, float, int]:
    """``(bytes, duration, rate)`` of an audio file as a ``fmt`` member: the file's own bytes
    when it is a ``fmt`` file whose header gives its length (a member is decoded up to that
    length, from inside its tar), else the file decoded (mono, native rate) and encoded 16-bit."""
    if path.lower().endswith("." + fmt):
        with open(path, "rb") as f:
            data = f.read()
        known = audio._parse_flac(data[:42]) if fmt == "flac" else True
        if known:
            head = audio.info(path)
            return data, head.duration, head.sample_rate
    rate = audio.info(path).sample_rate
    wave = audio.load(path, None).numpy()
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue(), len(wave) / rate, rate


def write_one(out: Path, k: int, items: list[Item], fmt: str = "flac") -> tuple[int, Written]:
    """Write shard ``k`` of ``items`` (atomic): ``(k, what it holds)``. Files it cannot decode go
    to its ``.skipped.json`` beside it, where ``_write_skips`` reads them (resumed shards too)."""
    written: Written = []
    skipped: list[tuple[str, str]] = []
    with (
        atomic_path(out / shard_name(k)) as tmp,
        tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for pos, path, utt_id, speaker, _, _ in items:
            try:
                data, duration, rate = _member_bytes(path, fmt)
            except AudioError as e:
                skipped.append((path, e.reason))
                continue
            meta = {
                "utt_id": utt_id,
                "speaker": speaker,
                "duration": round(duration, 4),
                "sample_rate": rate,
                "source": path,
            }
            info, body = _member(f"{member_key(pos)}.{fmt}", data)
            tar.addfile(info, body)
            # addfile keeps a copy of info; the data ends the tar so far, padded to a block
            padded = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            written.append((pos, tar.offset - padded, len(data), duration, rate))
            tar.addfile(*_member(f"{member_key(pos)}.json", json.dumps(meta).encode("utf-8")))
        if skipped:  # beside the tar, before it is renamed into place: a resumed write keeps it
            write_text_atomic(out / f"{shard_name(k)}.skipped.json", json.dumps(skipped))
    return k, written


def list_shard(path: Path) -> Written:
    """What an existing shard holds, read from its tar headers (a resumed write)."""
    out: Written = []
    with tarfile.open(path, "r:") as tar:
        members = tar.getmembers()
        metas = {m.name.split(".")[0]: m for m in members if m.name.endswith(".json")}
        for m in members:
            key = m.name.split(".")[0]
            if m.name.endswith(".json"):
                continue
            meta = json.loads(tar.extractfile(metas[key]).read())
            out.append((int(key), m.offset_data, m.size, meta["duration"], meta["sample_rate"]))
    return out


def _write_skips(out: Path, n_shards: int) -> list[list[str]]:
    """``[path, reason]`` of the files the shard writers could not decode."""
    found = []
    for k in range(n_shards):
        side = out / f"{shard_name(k)}.skipped.json"
        if side.exists():
            found.extend(json.loads(side.read_text(encoding="utf-8")))
    return found


def _plan(corpus: Corpus, shard_size: int, seed: int, fmt: str) -> tuple[np.ndarray, dict]:
    order = np.random.default_rng([seed, 23]).permutation(len(corpus))
    h = hashlib.sha256()
    for i in order.tolist():
        h.update(corpus.utt_id(i).encode("utf-8") + b"\0")
    plan = {
        "source": corpus.source,
        "seed": seed,
        "shard_size": shard_size,
        "audio_format": fmt,
        "utterances": len(corpus),
        "order_sha256": h.hexdigest(),
    }
    return order, plan


def write_shards(
    corpus: Corpus,
    out: str | Path,
    shard_size: int = 1000,
    seed: int = 0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    audio_format: str = "flac",
) -> ShardSet:
    """Write ``corpus`` as shards into ``out`` (resuming a killed write of the same plan) and
    return the opened set. ``progress(shards done, shards in all)`` after each shard.
    DataError when ``out`` holds shards of another corpus or settings."""
    if shard_size < 1:
        raise DataError(f"shard size must be >= 1, got {shard_size}")
    if audio_format not in AUDIO_FORMATS:
        raise DataError(f"shard audio format {audio_format!r}: choose {' or '.join(AUDIO_FORMATS)}")
    if len(corpus) == 0:
        raise DataError(f"{corpus.source}: no utterances to shard")
    out = Path(out).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    order, plan = _plan(corpus, shard_size, seed, audio_format)
    plan_path = out / PLAN_NAME
    if plan_path.exists():
        old = json.loads(plan_path.read_text(encoding="utf-8"))
        if old != plan:
            raise DataError(
                f"{out}: holds shards of another corpus or settings ({old.get('source')}, seed "
                f"{old.get('seed')}, shard size {old.get('shard_size')}); choose another --out"
            )
    elif any(out.glob("shard-*.tar")):
        raise DataError(f"{out}: holds shards written without a plan; choose another --out")
    write_text_atomic(plan_path, json.dumps(plan, indent=1))
    n_shards = -(-len(order) // shard_size)
    jobs = []
    for k in range(n_shards):
        rows = order[k * shard_size : (k + 1) * shard_size].tolist()
        jobs.append(
            [
                (
                    pos,
                    corpus.path(i),
                    corpus.utt_id(i),
                    corpus.speakers[corpus.speaker_ids[i]],
                    float(corpus.durations[i]),
                    int(corpus.sample_rates[i]),
                )
                for pos, i in zip(
                    range(k * shard_size, k * shard_size + len(rows)), rows, strict=True
                )
            ]
        )
    started = time.monotonic()
    results: dict[int, Written] = {}
    todo = []
    for k in range(n_shards):
        if (out / shard_name(k)).exists():  # renamed into place only when complete
            results[k] = list_shard(out / shard_name(k))
        else:
            todo.append(k)
    if progress:
        progress(len(results), n_shards)
    pool = ProcessPoolExecutor(workers) if workers > 1 and len(todo) > 1 else None
    try:
        mapped = (pool.map if pool else map)(
            write_one, [out] * len(todo), todo, [jobs[k] for k in todo], [audio_format] * len(todo)
        )
        for k, written in mapped:
            results[k] = written
            if progress:
                progress(len(results), n_shards)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    log.info("%d shards written in %.1f s", len(todo), time.monotonic() - started)
    return _finish(out, corpus, jobs, results, plan)


def _finish(out, corpus, jobs, results, plan) -> ShardSet:
    """The index and ``shards.json`` from what every shard holds."""
    names = [shard_name(k) for k in range(len(jobs))]
    item_of = {item[0]: item for job in jobs for item in job}
    rows = [(k, *w) for k in range(len(jobs)) for w in results[k]]
    if not rows:
        raise DataError(f"{corpus.source}: no file could be written to a shard")
    utt_ids = [item_of[r[1]][2] for r in rows]
    rank = sorted(range(len(rows)), key=utt_ids.__getitem__)
    rows = [rows[j] for j in rank]
    sharded = Corpus._build(
        [names[r[0]] for r in rows],
        [item_of[r[1]][2] for r in rows],
        [item_of[r[1]][3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
        root=str(out),
        source=str(out),
    )
    col = np.array([r[:4] for r in rows], dtype=np.int64).reshape(-1, 4)
    fingerprint = save_index(
        out, sharded, names, col[:, 0], col[:, 2], col[:, 3], col[:, 1], plan["audio_format"]
    )
    listing = {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": Path(plan["source"]).name or "audiocl",
        "shardlist": [
            {
                "url": names[k],
                "nsamples": len(results[k]),
                "filesize": (out / names[k]).stat().st_size,
            }
            for k in range(len(names))
        ],
        "audiocl": {
            **plan,
            "fingerprint": fingerprint,
            "written": len(rows),
            "speakers": len(sharded.speakers),
            "hours": round(float(sharded.durations.sum()) / 3600, 3),
        },
        "skipped": [list(x) for x in corpus.skipped] + _write_skips(out, len(jobs)),
    }
    write_text_atomic(out / LIST_NAME, json.dumps(listing, indent=1))
    return open_shards(out)
