"""Pseudo-speaker labels: the second stage of a self-supervised recipe (``pseudo_labels``).

The first stage (e.g. DINO, no labels) trains into ``RUN/pretrain``. Its model embeds every
training utterance, spherical k-means groups the embeddings into pseudo-speakers, and a second
run trains on them (AAM) from the first stage's encoder into ``RUN`` itself::

    RUN/pretrain/            the first stage's run directory (config, metrics, checkpoints, model)
    RUN/pseudo_labels.csv    path,speaker,duration,sample_rate: the second stage's only source
    RUN/pseudo_labels.json   what the clustering found (cluster sizes, files left out)
    RUN/model.pt             the second stage's model: the recipe's result

The CSV is written last and atomically, so its presence means the first stage is done: a
resumed run goes straight on to the second stage.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .cluster import spherical_kmeans
from .config import Config, PseudoLabelConfig, pseudo_label_stage
from .corpus import Corpus
from .embed import Embedder
from .errors import ConfigError, DataError
from .fileio import write_text_atomic

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
    embedder = Embedder.from_file(model, device=device)
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
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "speaker", "duration", "sample_rate"])
    dur, sr = corpus.durations, corpus.sample_rates
    for i in np.flatnonzero(labels >= 0):
        w.writerow([corpus.path(i), f"p{labels[i]:06d}", f"{dur[i]:.4f}", int(sr[i])])
    write_text_atomic(path, buf.getvalue())


def fit_two_stages(
    cfg: Config, run_dir: Path, resume: bool, quiet: bool, record_last: bool
) -> Path:
    """First stage into ``run_dir/pretrain``, pseudo-labels, second stage into ``run_dir``."""
    from .train import Trainer, find_checkpoints

    pre, manifest = run_dir / PRETRAIN, run_dir / MANIFEST
    if not resume and (find_checkpoints(run_dir) or find_checkpoints(pre)):
        raise ConfigError(
            f"{run_dir} already holds checkpoints: pass --resume to continue it, "
            "or choose another --out"
        )
    stage2 = pseudo_label_stage(cfg, str(manifest.resolve()), str((pre / "model.pt").resolve()))
    if not (resume and manifest.exists()):
        first = dataclasses.replace(cfg, pseudo_labels=PseudoLabelConfig())
        trainer = Trainer(first, pre, resume=resume, quiet=quiet)
        trainer.run(record_last=False)
        corpus = trainer.data.corpus
        emb = embed_corpus(pre / "model.pt", corpus, trainer.device, quiet)
        if trainer.rank == 0:
            labels, summary = assign(emb, cfg.pseudo_labels, cfg.train.seed)
            if not quiet:
                print(
                    f"pseudo-labels: {summary['utterances_kept']} of {summary['utterances']} "
                    f"utterances in {summary['clusters_kept']} pseudo-speakers (largest "
                    f"{summary['largest_cluster']}, median {summary['median_cluster']:g})"
                )
            write_text_atomic(run_dir / "pseudo_labels.json", json.dumps(summary, indent=1))
            write_manifest(manifest, corpus, labels)
        if dist.is_initialized():
            dist.barrier()
    return Trainer(stage2, run_dir, resume=resume, quiet=quiet).run(record_last)
