"""The per-user cache of file embeddings (one ``.npz`` per model and speech gate), and
``embed_paths``, which embeds a list of files through it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import AudioError
from ..fileio import atomic_path
from .embed import Embedder


class EmbeddingCache:
    """Embeddings of files by one model, kept across runs in ``DIR/<model_id>.npz``.

    A file's key is its absolute path, modification time (ns) and size, so an edited or replaced
    file is embedded again and a renamed one is not mistaken for another. Writes are atomic
    (temp file + rename) and merge with what another process saved meanwhile, so concurrent runs
    may lose each other's new entries (they are recomputed later) but never corrupt the file.
    """

    def __init__(self, directory: str | os.PathLike, model_id: str):
        if not model_id:
            raise ValueError("an embedding cache needs the model's id")
        self.path = Path(directory) / f"{model_id}.npz"
        self.model_id = model_id
        self._rows: dict[str, np.ndarray] = {}
        self._dirty = False
        self._rows.update(self._read())

    def _read(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            return {}
        try:
            with np.load(self.path, allow_pickle=False) as z:
                if str(z["model_id"]) != self.model_id:
                    return {}
                return dict(zip(z["keys"].tolist(), z["embeddings"], strict=True))
        except Exception:  # a damaged cache is only a cache: start again
            return {}

    @staticmethod
    def key(path: str | os.PathLike) -> str | None:
        """``abspath|mtime_ns|size``; None when the file cannot be stat'ed."""
        p = Path(path).absolute()
        try:
            st = p.stat()
        except OSError:
            return None
        return f"{p}|{st.st_mtime_ns}|{st.st_size}"

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str | None) -> np.ndarray | None:
        return None if key is None else self._rows.get(key)

    def put(self, key: str | None, emb: np.ndarray) -> None:
        if key is not None and np.all(np.isfinite(emb)):
            self._rows[key] = np.asarray(emb, dtype=np.float32)
            self._dirty = True

    def save(self) -> None:
        """Write the cache (merged with the file's current content) if anything was added."""
        if not self._dirty:
            return
        merged = self._read()
        merged.update(self._rows)
        self._rows = merged
        keys = list(merged)
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                keys=np.array(keys, dtype=str),
                embeddings=np.stack([merged[k] for k in keys]).astype(np.float32),
                model_id=np.array(self.model_id),
            )
        self._dirty = False


def default_cache_dir() -> Path:
    """``data_dir()/cache/embeddings``: shared by every ``audiocl eval`` run of this user."""
    from ..paths import data_dir

    return data_dir() / "cache" / "embeddings"


def embed_paths(
    embedder: Embedder,
    paths: Sequence[str | os.PathLike],
    cache: EmbeddingCache | None = None,
    progress: Callable[[int], None] | None = None,
    on_error: Callable[[int, AudioError], None] | None = None,
    save_every: float = 60.0,
    engine=None,
) -> tuple[np.ndarray, int]:
    """Embeddings ``(N, D)`` of ``paths``, taken from ``cache`` where present.

    Returns ``(embeddings, n_cached)``. Rows of files that failed (reported to ``on_error``) are
    NaN. New embeddings are added to the cache, which is saved every ``save_every`` seconds and
    at the end (also when an error stops the run), so an interrupted run keeps its work.
    ``engine``: what embeds in place of ``embedder`` (an ``EmbedPool`` of its model).
    """
    keys = [EmbeddingCache.key(p) for p in paths] if cache is not None else [None] * len(paths)
    found = {i: e for i, k in enumerate(keys) if (e := cache.get(k) if cache else None) is not None}
    todo = [i for i in range(len(paths)) if i not in found]
    dim = embedder.embed_dim or (next(iter(found.values())).shape[0] if found else 0)
    out = None
    try:
        if progress and found:
            progress(len(found))
        last_save = time.monotonic()
        step = 256  # files embedded between cache checkpoints
        parts = []
        for lo in range(0, len(todo), step):
            idx = todo[lo : lo + step]

            def report(j, err, idx=idx):
                if on_error is None:
                    raise err
                on_error(idx[j], err)

            emb = (engine or embedder).embed_files(
                [paths[i] for i in idx], progress=progress, on_error=report
            )
            parts.append((idx, emb))
            if cache is not None:
                for i, e in zip(idx, emb, strict=True):
                    cache.put(keys[i], e)
                if time.monotonic() - last_save > save_every:
                    cache.save()
                    last_save = time.monotonic()
        if parts:
            dim = parts[0][1].shape[1]
        out = np.full((len(paths), dim), np.nan, dtype=np.float32)
        for i, e in found.items():
            out[i] = e
        for idx, emb in parts:
            if emb.size:
                out[idx] = emb
    finally:
        if cache is not None:
            cache.save()
    return out, len(found)
