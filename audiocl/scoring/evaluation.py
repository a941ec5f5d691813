"""Evaluation of an encoder on a trial list: embed each distinct file once, score, measure,
report. One pipeline, ``run_evaluation``: ``audiocl eval`` and ``Model.evaluate`` call it with a
cache and a cohort; training's dev figure and the quickstart through ``evaluate_trials``.
The pieces it uses live in their own modules: ``embedding_cache``, ``cohort``,
``embeddings_file``, ``scoring``, ``metrics``, ``plots``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.trials import Trial, read_trials
from ..errors import AudioError, DataError
from ..fileio import write_text_atomic
from ..inference.embed import Embedder
from ..inference.embedding_cache import EmbeddingCache, embed_paths
from ..io.vad import SpeechGate
from .cohort import MAX_COHORT, cohort_embeddings
from .metrics import compute_metrics
from .scores import as_norm_trials, score_pairs, trial_indices


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
    """Raw EER and minDCF of ``encoder`` on a trial list (``compute_metrics``' dict): the dev
    figure of a training run and the quickstart's. It is ``run_evaluation`` without a cache,
    leaving out trials of unusable files (one bad dev file must not stop a training run) and
    with the speech check off (short dev files are scored; ``audiocl eval`` checks them)."""
    embedder = Embedder(fbank, encoder, sample_rate, device, gate=SpeechGate(min_speech=0.0))
    return run_evaluation(embedder, trials_path, audio_root, skip_bad=True).metrics["raw"]


# ------------------------------------------------------------------------ embedding cache


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
    calibration: dict | None = None  # the record whose LLR mapping was measured, if any

    def apply_calibration(self, record: dict | None, note: str | None = None) -> None:
        """Measure ``record``'s LLR mapping on the raw scores: ``cllr`` and ``act_dcf_<p>``
        into ``metrics["raw"]`` (and its AS-Norm mapping, when it has one, on the AS-Norm
        scores), and what was used into ``metrics["calibration_used"]``."""
        from .calibration import calibrated_metrics

        if not record or not record.get("llr"):
            return
        self.calibration = record
        self.metrics["raw"].update(calibrated_metrics(record, self.raw, self.labels))
        if record.get("as_norm_llr") and self.as_norm is not None:
            on_norm = {"llr": record["as_norm_llr"]}
            self.metrics["as_norm"].update(calibrated_metrics(on_norm, self.as_norm, self.labels))
        used = {"trials": record.get("trials"), "calibrated": record.get("calibrated")}
        self.metrics["calibration_used"] = {**used, **({"note": note} if note else {})}


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


def _embed_trial_files(
    embedder: Embedder,
    files: list[str],
    root: Path,
    trials_path: Path,
    skip_bad: bool,
    cache: EmbeddingCache | None,
    progress: Callable | None,
    engine=None,
) -> tuple[np.ndarray, dict[str, str], int]:
    """``(embeddings (F, D) with NaN rows for unusable files, {file: reason}, n from cache)``.
    Missing files are found before any embedding is spent; without ``skip_bad`` the first
    unusable file stops the run, named with the first trial line that uses it."""
    paths = [root / f for f in files]
    bad: dict[str, str] = {}

    def fail(i: int, err: AudioError) -> None:
        if not skip_bad:
            where = find_trial_line(trials_path, files[i])
            used = f"{trials_path}:line {where[0]}: '{where[1]}'" if where else str(trials_path)
            raise AudioError(
                err.path,
                f"{err.reason} (used by {used}; --skip-bad leaves out the trials of unusable "
                "files)",
            )
        bad[files[i]] = err.reason

    for i, p in enumerate(paths):
        if not p.is_file():
            fail(i, AudioError(p, "file not found" if not p.exists() else "not a file"))
    ok = [i for i, f in enumerate(files) if f not in bad]
    update = progress(len(ok), "embedding trial files") if progress else None
    emb_ok, n_cached = embed_paths(
        embedder, [paths[i] for i in ok], cache, update, lambda j, e: fail(ok[j], e), engine=engine
    )
    matrix = np.full((len(files), emb_ok.shape[1]), np.nan, dtype=np.float32)
    matrix[ok] = emb_ok
    return matrix, bad, n_cached


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
    engine=None,
) -> EvalResult:
    """Score a trial list with ``embedder``: EER and minDCF raw, and with AS-Norm if a cohort.

    Each distinct file is embedded once (``cache`` makes re-runs free). A missing or unreadable
    file raises ``AudioError`` naming the file and the first trial using it, unless ``skip_bad``:
    then the trials using it are left out and counted. ``cohort``: folder, list of audio paths,
    or an ``.npz`` from ``audiocl embed`` made with the same model. ``progress(total, what)``
    may return a callback ``update(n)`` for a progress bar. ``engine``: what embeds the trial
    files in place of ``embedder`` (an ``EmbedPool`` of the same model).
    """
    trials_path, root = Path(trials_path), Path(audio_root)
    trials = read_trials(trials_path)
    if not trials:
        raise DataError(f"{trials_path}: no trials")
    if not root.is_dir():
        raise DataError(f"{root}: audio root is not a folder")
    files = trial_files(trials)
    t0 = time.monotonic()
    matrix, bad, n_cached = _embed_trial_files(
        embedder, files, root, trials_path, skip_bad, cache, progress, engine
    )
    seconds = time.monotonic() - t0
    kept = [t for t in trials if t.enroll not in bad and t.test not in bad]
    if not kept:
        raise DataError(f"{trials_path}: every trial uses an unusable file ({len(bad)} bad files)")
    ei, ti, labels = trial_indices(kept, {f: i for i, f in enumerate(files)})
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
            "embedded": len(files) - len(bad) - n_cached,
            "cached": n_cached,
            "seconds": round(seconds, 2),
        },
        "raw": compute_metrics(raw, labels),
        "as_norm": None,
        "cohort": None,
    }
    normed = None
    if cohort is not None:
        cohort_emb, info = cohort_embeddings(
            embedder, cohort, cache, skip_bad, max_cohort, seed, progress
        )
        normed = as_norm_trials(matrix, ei, ti, cohort_emb, top_k=top_k, scores=raw)
        report["as_norm"] = compute_metrics(normed, labels)
        report["cohort"] = {**info, "top_k": min(top_k, len(cohort_emb))}
    result = EvalResult(kept, labels, raw, normed, report, bad)
    result.apply_calibration(embedder.calibration)
    return result


def write_report(result: EvalResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """``scores.txt``, ``metrics.json``, ``det.png``, ``scores.png`` and ``calibration.png``
    in ``out_dir``.

    ``scores.txt``: one line per kept trial, ``label enroll test raw_score [as_norm_score]``.
    ``calibration.png``: the applied-probability-of-error curves of the raw scores (actual with
    the model's LLR mapping, when it has one, against the best in hindsight).
    """
    from .calibration import ape_curve
    from .metrics import det_curve
    from .plots import plot_ape, plot_det, plot_score_hist

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = ("scores.txt", "metrics.json", "det.png", "scores.png", "calibration.png")
    files = {name: out / name for name in names}
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
    plot_ape(files["calibration.png"], ape_curve(result.raw, result.labels, result.calibration))
    return files
