"""A distillation teacher's embeddings of every training utterance, computed once and cached.

``teacher_table(cfg, corpus) -> (N, K, Dt)`` float16: row ``i`` holds the frozen teacher's
embedding of utterance ``i``, whole and clean, at each of ``K`` speeds: ``[:, 0]`` unchanged,
``[:, k]`` at ``augment.speeds[k - 1]`` when each speed copy is a speaker of its own
(``augment.speed_as_new_speaker``: a slowed crop is then distilled towards the slowed
utterance, not towards its original voice). A file the teacher cannot embed has NaN rows, which
the objective leaves out.

The embeddings are kept in an ``EmbeddingCache`` per teacher id and speed (the file's path,
modification time and size are its key), so a second run, a resumed one, or another recipe with
the same teacher and files does not embed again; the cost is paid before the first step, never
inside one. The speech gate is off: the teacher sees what the student is trained on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..data.corpus import Corpus
from ..data.shard_stream import ShardReader
from ..data.shards import ShardSet
from ..errors import AudioError, ConfigError
from ..inference.embed import Embedder
from ..inference.embedding_cache import EmbeddingCache, default_cache_dir
from ..io import audio
from ..io.vad import SpeechGate

log = logging.getLogger(__name__)
# a cache file is rewritten whole, so it is saved at most this often while embedding
SAVE_EVERY_S = 60.0


def teacher_speeds(cfg: Config) -> list[float]:
    """The speeds the table holds: 1.0, then each speed copy's factor when it is a class."""
    a = cfg.augment
    return [1.0, *a.speeds] if a.enabled and a.speed_as_new_speaker else [1.0]


def load_teacher(path: str | Path, device: str = "cpu") -> Embedder:
    """The teacher model file at ``path`` as an embedder without a speech gate."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"objective.distill.teacher: {p}: no such model file")
    return Embedder.from_file(p, device=device, gate=SpeechGate(min_speech=0.0))


def _at_speed(wave: torch.Tensor, speed: float, sr: int) -> torch.Tensor:
    """``wave (S,)`` played ``speed`` times faster (tempo and pitch, as ``SpeedPerturb``)."""
    if speed == 1.0:
        return wave
    return audio.resample(wave[None], int(round(sr * speed)), sr)[0]


def teacher_table(
    cfg: Config,
    corpus: Corpus,
    quiet: bool = False,
    group_seconds: float = 300.0,
    shards: ShardSet | None = None,
    model: str | None = None,
) -> np.ndarray:
    """``(N, K, Dt)`` float16 teacher embeddings of ``corpus``'s utterances (see the module);
    with ``shards`` (whose corpus ``corpus`` is) the audio is read from the tars, each front to
    back. ``model``: embed with ``train.init``'s model file instead of the distillation teacher
    (``objective.aam_init: init``), cached the same way."""
    d = cfg.objective.distill
    path, what = (
        (d.teacher, "objective.distill.teacher") if model is None else (model, "train.init")
    )
    teacher = load_teacher(path, cfg.train.device if cfg.train.device == "cuda" else "cpu")
    if teacher.sample_rate != cfg.data.sample_rate:
        raise ConfigError(
            f"{what}: {path} runs at {teacher.sample_rate} Hz, the "
            f"training data at {cfg.data.sample_rate} Hz"
        )
    speeds = teacher_speeds(cfg)
    cache_dir = Path(d.cache).expanduser() if d.cache else default_cache_dir() / "teachers"
    caches = [EmbeddingCache(cache_dir, f"{teacher.cache_id}-x{s:g}") for s in speeds]
    if shards is None:
        keys = [EmbeddingCache.key(corpus.path(i)) for i in range(len(corpus))]
    else:
        keys = [shards.cache_key(i) for i in range(len(corpus))]
    todo = [i for i, k in enumerate(keys) if any(c.get(k) is None for c in caches)]
    if shards is not None:
        todo = shards.read_order(np.array(todo, dtype=np.int64)).tolist()
    started, sr = time.monotonic(), cfg.data.sample_rate
    if todo and not quiet:
        log.info(
            "teacher %s: embedding %d of %d training utterances at %d speed(s)",
            path,
            len(todo),
            len(keys),
            len(speeds),
        )
    reader = ShardReader(shards) if shards is not None else None
    group: list[int] = []
    samples, saved = 0, [time.monotonic()]

    def flush() -> None:
        waves = []
        for i in group:
            try:
                if shards is None:
                    waves.append(audio.load(corpus.path(i), sr))
                else:
                    waves.append(shards.load(i, sr, data=reader.read(i)))
            except AudioError as e:
                log.warning("teacher: %s", e)
                waves.append(None)
        ok = [j for j, w in enumerate(waves) if w is not None]
        for cache, speed in zip(caches, speeds, strict=True):
            embs = teacher.embed_waves([_at_speed(waves[j], speed, sr) for j in ok])
            for j, e in zip(ok, embs, strict=True):
                cache.put(keys[group[j]], e)
        if time.monotonic() - saved[0] >= SAVE_EVERY_S:  # a kill loses a minute, not the run
            for cache in caches:
                cache.save()
            saved[0] = time.monotonic()

    for i in todo:
        group.append(i)
        samples += int(corpus[i].duration * sr)
        if samples >= group_seconds * sr:
            flush()
            group, samples = [], 0
    if group:
        flush()
    if reader is not None:
        reader.close()
    for cache in caches:
        cache.save()
    dim = next((c.get(k).shape[0] for c in caches for k in keys if c.get(k) is not None), 0)
    if dim == 0:
        raise ConfigError(f"{what}: {path} embedded no training file")
    table = np.full((len(keys), len(speeds), dim), np.nan, dtype=np.float16)
    for k, cache in enumerate(caches):
        for i, key in enumerate(keys):
            row = cache.get(key)
            if row is not None:
                table[i, k] = row
    if todo and not quiet:
        log.info("teacher embeddings ready in %.0f s", time.monotonic() - started)
    return table
