"""AS-Norm cohorts: which files (a folder, a list of paths, or an embeddings file), a seeded
sample of them above a maximum, and their embeddings."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import AudioError, DataError, NoSpeechError
from ..inference.embed import Embedder
from ..inference.embedding_cache import EmbeddingCache, embed_paths
from ..inference.embeddings_file import load_embeddings
from ..io.pathlist import read_path_list

# AS-Norm keeps only the top-k cohort scores per embedding: a few thousand files are plenty
MAX_COHORT = 2000


def sample_rows(total: int, max_rows: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded uniform sample of ``max_rows`` of ``total``; None if all fit."""
    if total <= max_rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))


def cohort_paths(
    source: str | os.PathLike, max_files: int = MAX_COHORT, seed: int = 0
) -> tuple[list[Path], int]:
    """Audio files of a cohort and how many the source holds.

    ``source`` is a folder (indexed with ``corpus.open_corpus``: VoxCeleb layout, Kaldi dir), a
    CSV manifest, or a text file with one audio path per line (``audiocl.io.pathlist``; relative
    paths are relative to the list's folder). Above ``max_files``, a seeded sample.
    """
    src = Path(source)
    if not src.exists():
        raise DataError(f"{src}: cohort not found (give a folder of audio or a list of paths)")
    if src.is_file() and src.suffix.lower() not in (".csv",):
        paths = [Path(p) for p in read_path_list(src, "cohort list")]
        paths = [p if p.is_absolute() else src.parent / p for p in paths]
        if not paths:
            raise DataError(f"{src}: the cohort list names no files")
    else:
        from ..data.corpus import open_corpus

        corpus = open_corpus(src)
        paths = [Path(corpus.path(i)) for i in range(len(corpus))]
        if not paths:
            raise DataError(f"{src}: the cohort folder holds no audio files")
    total = len(paths)
    pick = sample_rows(total, max_files, seed)
    if pick is not None:
        paths = [paths[i] for i in pick]
    return paths, total


def cohort_embeddings(
    embedder: Embedder,
    cohort: str | os.PathLike,
    cache: EmbeddingCache | None,
    skip_bad: bool,
    max_cohort: int = MAX_COHORT,
    seed: int = 0,
    progress: Callable | None = None,
) -> tuple[np.ndarray, dict]:
    """``(embeddings (C, D), info)`` of a cohort: an embeddings file made by the same model, or
    the audio of ``cohort_paths`` embedded (through ``cache``). ``info``: source, available,
    size, skipped."""
    src = Path(cohort)
    if src.suffix.lower() == ".npz":
        ids, emb, _ = load_embeddings(src, embedder.model_id)
        total = len(ids)
        pick = sample_rows(total, max_cohort, seed)
        if pick is not None:
            emb = emb[pick]
        return emb, {"source": str(src), "available": total, "size": len(emb), "skipped": 0}
    paths, total = cohort_paths(src, max_cohort, seed)
    bad = []

    def fail(i, err):
        # a cohort is a sample of other speakers: one without enough speech is just left out
        if not skip_bad and not isinstance(err, NoSpeechError):
            raise AudioError(err.path, f"{err.reason} (cohort file; --skip-bad leaves it out)")
        bad.append(i)

    update = progress(len(paths), "embedding cohort") if progress else None
    emb, _ = embed_paths(embedder, paths, cache, update, fail)
    emb = emb[np.all(np.isfinite(emb), axis=1)]
    if len(emb) < 2:
        raise DataError(f"{src}: the AS-Norm cohort needs at least 2 usable files, got {len(emb)}")
    return emb, {"source": str(src), "available": total, "size": len(emb), "skipped": len(bad)}
