"""Embedding in worker processes, and embedding files written in resumable parts.

``EmbedPool(spec, workers).embed_files(paths, ...)`` has the signature of
``Embedder.embed_files``: the files are cut into small tasks that worker processes (each with its
own embedder, built from ``spec``, and ``threads // workers`` torch threads) embed in turn; the
rows come back in order. Workers start with ``spawn``: a forked child of a process whose OpenMP
pool already ran can hang.

``embed_in_parts`` writes the embeddings of a long list as ``OUT.parts/part-NNNNNN.npz`` of
``chunk`` files each (atomic), then merges them into ``OUT``: a run killed at file 600,000 of a
million starts again at its last unfinished part, not at the first file.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AudioError, DataError
from ..fileio import atomic_path, write_text_atomic
from ..io.vad import SpeechGate
from .embed import Embedder

TASK_FILES = 16  # files per task: small, so the progress is smooth and the workers stay even


@dataclass(frozen=True)
class EmbedderSpec:
    """How a worker builds its embedder: ``Embedder.from_file(model, backend=..., gate=...)``."""

    model: str
    backend: str = "auto"
    gate: SpeechGate = field(default_factory=lambda: SpeechGate(min_speech=0.0))

    def build(self) -> Embedder:
        return Embedder.from_file(self.model, backend=self.backend, gate=self.gate)


_worker: Embedder | None = None


def _init(spec: EmbedderSpec, threads: int) -> None:
    import torch

    global _worker
    torch.set_num_threads(threads)
    _worker = spec.build()


def _embed_task(paths: list[str]) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """``(embeddings (n, D), NaN rows for the files in the errors, [(row, path, reason)])``."""
    errors: list[tuple[int, str, str]] = []
    emb = _worker.embed_files(paths, on_error=lambda j, e: errors.append((j, e.path, e.reason)))
    return emb, errors


class EmbedPool:
    """``workers`` processes embedding with the model of ``spec`` (see the module)."""

    def __init__(self, spec: EmbedderSpec, workers: int, threads: int | None = None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        threads = threads or os.cpu_count() or 1
        ctx = mp.get_context("spawn")
        self.workers = workers
        self._pool = ctx.Pool(workers, _init, (spec, max(1, threads // workers)))

    def embed_files(
        self,
        paths: Sequence[str | os.PathLike],
        progress: Callable[[int], None] | None = None,
        on_error: Callable[[int, AudioError], None] | None = None,
    ) -> np.ndarray:
        """Files -> ``(N, D)``, as ``Embedder.embed_files``: an unusable file raises its
        ``AudioError`` unless ``on_error(index, error)`` is given (then its row is NaN)."""
        paths = [str(p) for p in paths]
        tasks = [paths[i : i + TASK_FILES] for i in range(0, len(paths), TASK_FILES)]
        out = []
        for k, (emb, errors) in enumerate(self._pool.imap(_embed_task, tasks)):
            for j, path, reason in errors:
                err = AudioError(path, reason)
                if on_error is None:
                    raise err
                on_error(k * TASK_FILES + j, err)
            out.append(emb)
            if progress:
                progress(len(tasks[k]))
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        dim = max(e.shape[1] for e in out)
        return np.concatenate(
            [e if e.shape[1] == dim else np.full((len(e), dim), np.nan) for e in out]
        ).astype(np.float32)

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()

    def __enter__(self) -> EmbedPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parts_dir(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def embed_in_parts(
    engine,
    ids: Sequence[str],
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    model_id: str,
    chunk: int = 1000,
    progress: Callable[[int], None] | None = None,
    on_error: Callable[[int, AudioError], None] | None = None,
) -> tuple[np.ndarray, dict[int, str]]:
    """Embed ``paths`` with ``engine`` (an ``Embedder`` or an ``EmbedPool``) in parts of
    ``chunk`` files kept in ``OUT.parts`` (see the module); returns ``(embeddings (N, D), {row:
    reason} of the files skipped)``. Parts a killed run finished are read, not embedded again.
    DataError when ``OUT.parts`` belongs to another list or model."""
    folder = parts_dir(out)
    h = hashlib.sha256()
    for i in ids:
        h.update(str(i).encode("utf-8") + b"\0")
    plan = {"model_id": model_id, "files": len(ids), "chunk": chunk, "list_sha256": h.hexdigest()}
    plan_path = folder / "plan.json"
    if plan_path.exists():
        old = json.loads(plan_path.read_text(encoding="utf-8"))
        if old != plan:
            raise DataError(
                f"{folder}: holds the parts of another run (other files, model or chunk); "
                "remove it, or run with the same arguments to finish it"
            )
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(plan_path, json.dumps(plan))
    embs, bad = [], {}
    for k, lo in enumerate(range(0, len(paths), chunk)):
        part = folder / f"part-{k:06d}.npz"
        if part.exists():
            with np.load(part, allow_pickle=False) as z:
                emb = np.asarray(z["embeddings"], dtype=np.float32)
                rows, reasons = z["bad_rows"].tolist(), z["bad_reasons"].tolist()
            if progress:
                progress(len(emb))
        else:
            failed: dict[int, str] = {}

            def report(j, err, lo=lo, failed=failed):
                if on_error is None:
                    raise err
                failed[lo + j] = err.reason
                on_error(lo + j, err)

            emb = engine.embed_files(paths[lo : lo + chunk], progress=progress, on_error=report)
            rows, reasons = list(failed), list(failed.values())
            with atomic_path(part) as tmp, open(tmp, "wb") as f:
                np.savez(
                    f,
                    embeddings=emb,
                    bad_rows=np.array(rows, dtype=np.int64),
                    bad_reasons=np.array(reasons, dtype=str),
                )
        embs.append(emb)
        bad.update(zip(rows, reasons, strict=True))
    dim = max((e.shape[1] for e in embs), default=0)
    full = np.full((len(paths), dim), np.nan, dtype=np.float32)
    lo = 0
    for e in embs:
        if e.shape[1] == dim:
            full[lo : lo + len(e)] = e
        lo += len(e)
    return full, bad


def remove_parts(out: str | os.PathLike) -> None:
    """Drop ``OUT.parts`` once ``OUT`` is written."""
    shutil.rmtree(parts_dir(out), ignore_errors=True)
