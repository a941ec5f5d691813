"""Evaluation of an encoder on a trial list: embed each distinct file once, score, measure.

``evaluate_trials`` is the small in-process path used by training (dev EER) and the quickstart;
``audiocl eval`` builds on the same pieces and adds caching, AS-Norm, plots and reports.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .embed import Embedder
from .errors import AudioError, DataError
from .fileio import atomic_path, write_text_atomic
from .metrics import compute_metrics
from .scoring import as_norm_trials, score_pairs, trial_indices
from .trials import Trial, read_trials


def trial_files(trials: list[Trial]) -> list[str]:
    """Distinct file ids of a trial list, in first-seen order."""
    return list(dict.fromkeys(f for t in trials for f in (t.enroll, t.test)))


def evaluate_trials(
    fbank: torch.nn.Module,
    encoder: torch.nn.Module,
    trials_path: str | os.PathLike,
    audio_root: str | os.PathLike,
    sample_rate: int = 16000,
    device: str | torch.device = "cpu",
) -> dict:
    """EER and minDCF of ``encoder`` on a trial list; the modules are left in eval mode."""
    trials = read_trials(trials_path)
    files = trial_files(trials)
    embedder = Embedder(fbank, encoder, sample_rate, device)
    emb = embedder.embed_files([Path(audio_root) / f for f in files])
    enroll, test, labels = trial_indices(trials, {f: i for i, f in enumerate(files)})
    return compute_metrics(score_pairs(emb, enroll, test), labels)


# ------------------------------------------------------------------------ embedding cache


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
    from .paths import data_dir

    return data_dir() / "cache" / "embeddings"


def embed_paths(
    embedder: Embedder,
    paths: Sequence[str | os.PathLike],
    cache: EmbeddingCache | None = None,
    progress: Callable[[int], None] | None = None,
    on_error: Callable[[int, AudioError], None] | None = None,
    save_every: float = 60.0,
) -> tuple[np.ndarray, int]:
    """Embeddings ``(N, D)`` of ``paths``, taken from ``cache`` where present.

    Returns ``(embeddings, n_cached)``. Rows of files that failed (reported to ``on_error``) are
    NaN. New embeddings are added to the cache, which is saved every ``save_every`` seconds and
    at the end (also when an error stops the run), so an interrupted run keeps its work.
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

            emb = embedder.embed_files([paths[i] for i in idx], progress=progress, on_error=report)
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


# ---------------------------------------------------------------------------------- cohort

MAX_COHORT = 2000


def cohort_paths(
    source: str | os.PathLike, max_files: int = MAX_COHORT, seed: int = 0
) -> tuple[list[Path], int]:
    """Audio files of an AS-Norm cohort and how many the source holds.

    ``source`` is a folder (indexed with ``corpus.open_corpus``: VoxCeleb layout, Kaldi dir) or a
    text file with one audio path per line (relative paths are relative to the list's folder;
    blank lines and ``#`` comments ignored), or a CSV manifest. Above ``max_files`` a seeded
    uniform sample of ``max_files`` files is used (AS-Norm keeps only the top-k cohort scores per
    embedding, so a few thousand cohort files are plenty).
    """
    src = Path(source)
    if not src.exists():
        raise DataError(f"{src}: cohort not found (give a folder of audio or a list of paths)")
    if src.is_file() and src.suffix.lower() not in (".csv",):
        paths = []
        for raw_line in src.read_text(encoding="utf-8").splitlines():
            line = raw_line.split("#", 1)[0].strip()
            if not line:
                continue
            p = Path(line)
            paths.append(p if p.is_absolute() else src.parent / p)
        if not paths:
            raise DataError(f"{src}: the cohort list names no files")
    else:
        from .corpus import open_corpus

        corpus = open_corpus(src)
        paths = [Path(corpus.path(i)) for i in range(len(corpus))]
        if not paths:
            raise DataError(f"{src}: the cohort folder holds no audio files")
    total = len(paths)
    if total > max_files:
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(total, size=max_files, replace=False))
        paths = [paths[i] for i in pick]
    return paths, total


def load_embeddings_npz(path: str | os.PathLike, model_id: str | None = None):
    """``(ids, embeddings (N, D), model_id)`` from an ``audiocl embed`` file; ModelError when
    ``model_id`` is given and differs."""
    from .errors import ModelError

    try:
        with np.load(path, allow_pickle=False) as z:
            ids = z["ids"].tolist()
            emb = np.asarray(z["embeddings"], dtype=np.float32)
            mid = str(z["model_id"])
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: not an audiocl embeddings file ({e})") from None
    if model_id is not None and mid != model_id:
        raise ModelError(
            f"{path}: embeddings were made by model {mid!r}, not by the current model "
            f"{model_id!r}; embed the files again with this model"
        )
    return ids, emb, mid


# ------------------------------------------------------------------------------ evaluation


@dataclass
class EvalResult:
    """What ``run_evaluation`` found. ``raw``/``as_norm``: ``(N,)`` scores of the kept trials;
    ``metrics``: the JSON-ready report (what ``metrics.json`` holds)."""

    trials: list[Trial]
    labels: np.ndarray
    raw: np.ndarray
    as_norm: np.ndarray | None
    metrics: dict
    bad_files: dict[str, str] = field(default_factory=dict)


def find_trial_line(trials_path: str | os.PathLike, file: str) -> tuple[int, str] | None:
    """``(line number, line)`` of the first trial line of ``trials_path`` naming ``file``."""
    try:
        with open(trials_path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                fields = line.split()
                if len(fields) == 3 and not line.lstrip().startswith("#") and file in fields:
                    return n, line.strip()
    except OSError:
        pass
    return None


def run_evaluation(
    embedder: Embedder,
    trials_path: str | os.PathLike,
    audio_root: str | os.PathLike,
    cohort: str | os.PathLike | None = None,
    top_k: int = 300,
    skip_bad: bool = False,
    cache: EmbeddingCache | None = None,
    max_cohort: int = MAX_COHORT,
    seed: int = 0,
    progress: Callable[[int, str], Callable[[int], None] | None] | None = None,
) -> EvalResult:
    """Score a trial list with ``embedder``: EER and minDCF raw, and with AS-Norm if a cohort.

    Each distinct file is embedded once (``cache`` makes re-runs free). A missing or unreadable
    file raises ``AudioError`` naming the file and the first trial using it, unless ``skip_bad``:
    then the trials using it are left out and counted. ``cohort``: folder, list of audio paths,
    or an ``.npz`` from ``audiocl embed`` made with the same model. ``progress(total, what)``
    may return a callback ``update(n)`` for a progress bar.
    """
    trials_path, root = Path(trials_path), Path(audio_root)
    trials = read_trials(trials_path)
    if not trials:
        raise DataError(f"{trials_path}: no trials")
    if not root.is_dir():
        raise DataError(f"{root}: audio root is not a folder")
    files = trial_files(trials)
    paths = [root / f for f in files]

    bad: dict[str, str] = {}

    def fail(i: int, err: AudioError) -> None:
        f = files[i]
        if not skip_bad:
            where = find_trial_line(trials_path, f)
            used = f"{trials_path}:line {where[0]}: '{where[1]}'" if where else str(trials_path)
            raise AudioError(
                err.path,
                f"{err.reason} (used by {used}; --skip-bad leaves out the trials of unusable "
                "files)",
            )
        bad[f] = err.reason

    # Missing files fail before any embedding is spent.
    for i, p in enumerate(paths):
        if not p.is_file():
            fail(i, AudioError(p, "file not found" if not p.exists() else "not a file"))
    ok = [i for i, f in enumerate(files) if f not in bad]

    t0 = time.monotonic()
    update = progress(len(ok), "embedding trial files") if progress else None
    emb_ok, n_cached = embed_paths(
        embedder, [paths[i] for i in ok], cache, update, lambda j, e: fail(ok[j], e)
    )
    matrix = np.full((len(files), emb_ok.shape[1]), np.nan, dtype=np.float32)
    matrix[ok] = emb_ok
    seconds = time.monotonic() - t0

    kept = [t for t in trials if t.enroll not in bad and t.test not in bad]
    if not kept:
        raise DataError(f"{trials_path}: every trial uses an unusable file ({len(bad)} bad files)")
    index = {f: i for i, f in enumerate(files)}
    ei, ti, labels = trial_indices(kept, index)
    raw = score_pairs(matrix, ei, ti)
    report: dict = {
        "model_id": embedder.model_id,
        "model": str(embedder.path) if embedder.path else None,
        "trials": str(trials_path),
        "audio_root": str(root),
        "n_trials": len(kept),
        "n_trials_listed": len(trials),
        "skipped_trials": len(trials) - len(kept),
        "bad_files": [{"file": f, "reason": r} for f, r in bad.items()],
        "files": {
            "embedded": len(ok) - n_cached - sum(files[i] in bad for i in ok),
            "cached": n_cached,
            "seconds": round(seconds, 2),
        },
        "raw": compute_metrics(raw, labels),
        "as_norm": None,
        "cohort": None,
    }
    normed = None
    if cohort is not None:
        cohort_emb, info = _cohort_embeddings(
            embedder, cohort, cache, skip_bad, max_cohort, seed, progress
        )
        normed = as_norm_trials(matrix, ei, ti, cohort_emb, top_k=top_k, scores=raw)
        report["as_norm"] = compute_metrics(normed, labels)
        report["cohort"] = {**info, "top_k": min(top_k, len(cohort_emb))}
    return EvalResult(kept, labels, raw, normed, report, bad)


def _cohort_embeddings(embedder, cohort, cache, skip_bad, max_cohort, seed, progress):
    src = Path(cohort)
    if src.suffix.lower() == ".npz":
        ids, emb, _ = load_embeddings_npz(src, embedder.model_id)
        total = len(ids)
        if total > max_cohort:
            emb = emb[np.sort(np.random.default_rng(seed).choice(total, max_cohort, replace=False))]
        return emb, {"source": str(src), "available": total, "size": len(emb), "skipped": 0}
    paths, total = cohort_paths(src, max_cohort, seed)
    bad = []

    def fail(i, err):
        if not skip_bad:
            raise AudioError(err.path, f"{err.reason} (cohort file; --skip-bad leaves it out)")
        bad.append(i)

    update = progress(len(paths), "embedding cohort") if progress else None
    emb, _ = embed_paths(embedder, paths, cache, update, fail)
    emb = emb[np.all(np.isfinite(emb), axis=1)]
    if len(emb) < 2:
        raise DataError(f"{src}: the AS-Norm cohort needs at least 2 usable files, got {len(emb)}")
    return emb, {"source": str(src), "available": total, "size": len(emb), "skipped": len(bad)}


def write_report(result: EvalResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """``scores.txt``, ``metrics.json``, ``det.png`` and ``scores.png`` in ``out_dir``.

    ``scores.txt``: one line per kept trial, ``label enroll test raw_score [as_norm_score]``.
    """
    from .metrics import det_curve
    from .plots import plot_det, plot_score_hist

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / name for name in ("scores.txt", "metrics.json", "det.png", "scores.png")}
    header = "# label enroll test cosine" + (" as_norm" if result.as_norm is not None else "")
    lines = [header]
    for k, t in enumerate(result.trials):
        line = f"{t.label} {t.enroll} {t.test} {result.raw[k]:.6f}"
        if result.as_norm is not None:
            line += f" {result.as_norm[k]:.6f}"
        lines.append(line)
    write_text_atomic(files["scores.txt"], "\n".join(lines) + "\n")
    write_text_atomic(files["metrics.json"], json.dumps(result.metrics, indent=2) + "\n")
    curves = {"cosine": det_curve(result.raw, result.labels)[:2]}
    if result.as_norm is not None:
        curves["AS-Norm"] = det_curve(result.as_norm, result.labels)[:2]
    plot_det(files["det.png"], curves)
    m = result.metrics["raw"]
    plot_score_hist(
        files["scores.png"],
        result.raw,
        result.labels,
        thresholds={"EER": m["eer_threshold"], "minDCF(0.01)": m["min_dcf_0.01_threshold"]},
        title="Cosine scores",
    )
    return files
