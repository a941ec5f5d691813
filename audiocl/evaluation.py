"""Evaluation of an encoder on a trial list: embed each distinct file once, score, measure.

``evaluate_trials`` is the small in-process path used by training (dev EER) and the quickstart;
``audiocl eval`` builds on the same pieces and adds caching, AS-Norm, plots and reports.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .embed import Embedder
from .metrics import compute_metrics
from .trials import Trial, read_trials


def trial_files(trials: list[Trial]) -> list[str]:
    """Distinct file ids of a trial list, in first-seen order."""
    return list(dict.fromkeys(f for t in trials for f in (t.enroll, t.test)))


def score_with(emb: np.ndarray, index: dict[str, int], trials: list[Trial]) -> np.ndarray:
    """Cosine scores ``(N,)`` of ``trials`` from normalised embeddings ``emb (M, D)``."""
    a = np.fromiter((index[t.enroll] for t in trials), dtype=np.int64, count=len(trials))
    b = np.fromiter((index[t.test] for t in trials), dtype=np.int64, count=len(trials))
    return np.einsum("nd,nd->n", emb[a], emb[b])


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
    scores = score_with(emb, {f: i for i, f in enumerate(files)}, trials)
    labels = np.array([t.label for t in trials])
    return compute_metrics(scores, labels)
