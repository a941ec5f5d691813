"""Pseudo-speaker labels: the second stage of a self-supervised recipe (``pseudo_labels``).

The first stage (e.g. DINO, no labels) trains into ``RUN/pretrain``. Its model embeds every
training utterance, spherical k-means groups the embeddings into pseudo-speakers, and a second
run trains on them (AAM) from the first stage's encoder. With ``rounds: 2`` that run's model
labels the data again (better embeddings, better clusters) for a third run from it::

    RUN/pretrain/            the first stage's run directory (config, metrics, checkpoints, model)
    RUN/round1/              the first round when there are two (same layout as RUN)
    RUN/pseudo_labels.csv    a CSV manifest of the pseudo-speakers: the last round's only source
    RUN/pseudo_labels.json   what the clustering found (cluster sizes, files left out)
    RUN/model.pt             the last round's model: the recipe's result

A round's CSV is written last and atomically, so its presence means the stage before it is
done: a resumed run goes straight on to the round.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..config import Config, PseudoLabelConfig
from ..data.corpus import Corpus
from ..errors import DataError
from ..fileio import write_text_atomic
from ..inference.embed import Embedder
from ..io.vad import SpeechGate
from .cluster import spherical_kmeans

log = logging.getLogger(__name__)

MANIFEST = "pseudo_labels.csv"
PRETRAIN = "pretrain"


def embed_corpus(
    model: Path, corpus: Corpus, device: torch.device, quiet: bool = False
) -> np.ndarray:
    """Every utterance of ``corpus`` through the model file ``model`` -> ``(N, D)``; a row is
    NaN where its file cannot be read. Under DDP each rank embeds every world-th file and all
    ranks get the whole matrix."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    mine = list(range(rank, len(corpus), world))
    # every training utterance gets a row (the corpus already applied data.min_seconds); short
    # keyword clips would not pass the speech gate's minimum
    embedder = Embedder.from_file(model, device=device, gate=SpeechGate(min_speech=0.0))
    bar = None
    if rank == 0 and not quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(mine), unit="file", desc="pseudo-labels: embedding")
    try:
        part = embedder.embed_files(
            [corpus.path(i) for i in mine],
            progress=bar.update if bar else None,
            on_error=lambda _i, _e: None,
        )
    finally:
        if bar:
            bar.close()
    if world == 1:
        return part
    parts: list = [None] * world
    dist.all_gather_object(parts, (mine, part))
    out = np.full((len(corpus), part.shape[1]), np.nan, dtype=np.float32)
    for rows, emb in parts:
        out[rows] = emb
    return out


def assign(embeddings: np.ndarray, cfg: PseudoLabelConfig, seed: int) -> tuple[np.ndarray, dict]:
    """``(N, D)`` (NaN rows: unreadable files) -> pseudo-speaker ids ``(N,)``, -1 for a file
    left out (unreadable, or in a cluster smaller than ``min_cluster_size``), and a summary."""
    ok = np.flatnonzero(np.isfinite(embeddings).all(axis=1))
    if len(ok) < cfg.clusters:
        raise DataError(
            f"pseudo_labels: {len(ok)} readable training utterances cannot make "
            f"{cfg.clusters} clusters"
        )
    found = spherical_kmeans(
        torch.from_numpy(embeddings[ok]), cfg.clusters, cfg.kmeans_iters, seed
    ).numpy()
    sizes = np.bincount(found, minlength=cfg.clusters)
    big = np.flatnonzero(sizes >= cfg.min_cluster_size)
    renumber = np.full(cfg.clusters, -1)
    renumber[big] = np.arange(len(big))
    labels = np.full(len(embeddings), -1, dtype=np.int64)
    labels[ok] = renumber[found]
    kept = sizes[big]
    summary = {
        "utterances": len(embeddings),
        "unreadable": len(embeddings) - len(ok),
        "clusters": cfg.clusters,
        "clusters_kept": len(big),
        "utterances_kept": int(kept.sum()),
        "largest_cluster": int(sizes.max()),
        "median_cluster": float(np.median(kept)) if len(kept) else 0.0,
    }
    return labels, summary


def write_manifest(path: Path, corpus: Corpus, labels: np.ndarray) -> None:
    """A labelled CSV manifest of the utterances with a pseudo-speaker (atomic)."""
    keep = np.flatnonzero(labels >= 0)
    corpus.subset(keep, [f"p{k:06d}" for k in labels[keep]]).save_manifest(path)


def label_with(
    model: Path, corpus: Corpus, out_dir: Path, cfg: Config, device, quiet: bool
) -> None:
    """Pseudo-speakers of ``corpus`` from ``model``: ``out_dir/pseudo_labels.json``, then the
    manifest (last: it marks the labels as done)."""
    emb = embed_corpus(model, corpus, device, quiet)
    if not dist.is_initialized() or dist.get_rank() == 0:
        labels, summary = assign(emb, cfg.pseudo_labels, cfg.train.seed)
        if not quiet:
            log.info(
                "pseudo-labels from %s: %d of %d utterances in %d pseudo-speakers "
                "(largest %d, median %g)",
                model,
                summary["utterances_kept"],
                summary["utterances"],
                summary["clusters_kept"],
                summary["largest_cluster"],
                summary["median_cluster"],
            )
        write_text_atomic(out_dir / "pseudo_labels.json", json.dumps(summary, indent=1))
        write_manifest(out_dir / MANIFEST, corpus, labels)
    if dist.is_initialized():
        dist.barrier()
