"""Pseudo-speaker labels: spherical k-means, the cluster manifest, and the two-stage run."""

import csv
import json

import numpy as np
import pytest
import torch
from test_train import MULTICROP, corpus, tiny_config  # noqa: F401  (corpus is a fixture)

from audiocl.config import PseudoLabelConfig
from audiocl.errors import ConfigError
from audiocl.modelfile import checkpoint
from audiocl.training.cluster import spherical_kmeans
from audiocl.training.pseudo_labels import assign
from audiocl.training.recipe import load_config
from audiocl.training.stages import fit


def blobs(k=6, per=40, dim=16, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=1)
    x = centres.repeat_interleave(per, 0) + spread * torch.randn(k * per, dim, generator=g)
    return x, torch.arange(k).repeat_interleave(per)


def same_partition(a, b):
    """True when the two labelings group the points identically (ids may differ)."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_kmeans_recovers_separated_speakers():
    x, truth = blobs()
    for seed in range(5):
        assert same_partition(spherical_kmeans(x, 6, seed=seed), truth), seed
    # invariant to the scale of each row: clustering is on the cosine
    scaled = x * torch.rand(len(x), 1, generator=torch.Generator().manual_seed(2)).add(0.5)
    assert same_partition(spherical_kmeans(scaled, 6, seed=1), truth)


def test_kmeans_uses_every_cluster_and_checks_k():
    x, _ = blobs(k=2, per=10)
    labels = spherical_kmeans(x, 7, seed=0)  # more clusters than groups: none left empty
    assert sorted(set(labels.tolist())) == list(range(7))
    with pytest.raises(ValueError, match="8 clusters asked of 7 points"):
        spherical_kmeans(x[:7], 8)


def test_assign_leaves_out_unreadable_files_and_small_clusters():
    x, truth = blobs(k=3, per=10)
    x = torch.cat([x, x[:1] * -1.0]).numpy()  # one lone point far from every group
    x[5] = np.nan
    labels, summary = assign(x, PseudoLabelConfig(clusters=4, min_cluster_size=2), seed=0)
    assert labels[5] == -1 and labels[-1] == -1
    assert set(labels.tolist()) == {-1, 0, 1, 2}
    assert same_partition(torch.from_numpy(labels[:30][labels[:30] >= 0]), truth[labels[:30] >= 0])
    assert summary["unreadable"] == 1 and summary["clusters_kept"] == 3
    assert summary["utterances_kept"] == 29


STAGE2 = (
    "pseudo_labels.stage2={objective: {contrastive: none, contrastive_weight: 0, "
    "aam_weight: 1.0}, data: {views: 1, local_views: 0}, train: {steps: 2}}"
)


def test_stage2_is_checked_when_the_config_is_loaded():
    with pytest.raises(ConfigError, match="pseudo_labels.stage2: unknown config key objective.x"):
        load_config(None, ["pseudo_labels.clusters=4", "pseudo_labels.stage2={objective: {x: 1}}"])
    with pytest.raises(ConfigError, match="aam_weight > 0"):
        load_config(None, ["pseudo_labels.clusters=4"])
    with pytest.raises(ConfigError, match="clusters is 0"):
        load_config(None, [STAGE2])


def dino_then_pseudo_speakers(root, *extra):
    """DINO on unlabelled synthetic speech, then AAM on 4 pseudo-speakers (2 steps each)."""
    return tiny_config(
        root,
        "data.sources=[{path: train, labelled: false}]",
        "objective.contrastive=dino",
        *MULTICROP,
        "train.steps=2",
        "pseudo_labels.clusters=4",
        STAGE2,
        *extra,
    )


def test_two_stage_run_trains_on_pseudo_speakers_and_resumes(corpus, tmp_path):  # noqa: F811
    cfg = dino_then_pseudo_speakers(corpus)
    run = fit(cfg, tmp_path / "run", quiet=True)
    pre = checkpoint.load(run / "pretrain" / "model.pt")
    assert pre["speakers"] == [] and pre["config"]["objective"]["contrastive"] == "dino"
    rows = list(csv.DictReader((run / "pseudo_labels.csv").read_text().splitlines()))
    summary = json.loads((run / "pseudo_labels.json").read_text())
    assert len(rows) == summary["utterances_kept"] and summary["utterances"] == 18
    names = sorted({r["speaker"] for r in rows})
    final = checkpoint.load(run / "model.pt")
    assert final["speakers"] == names and len(names) == summary["clusters_kept"] >= 2
    assert final["config"]["objective"]["aam_weight"] == 1.0
    assert final["config"]["train"]["init"] == str((run / "pretrain" / "model.pt").resolve())
    assert final["config"]["pseudo_labels"]["clusters"] == 0
    # a finished run resumes to itself without clustering again; a fresh one is refused
    stamp = (run / "pseudo_labels.csv").stat().st_mtime_ns
    fit(cfg, run, resume=True, quiet=True)
    assert (run / "pseudo_labels.csv").stat().st_mtime_ns == stamp
    assert checkpoint.load(run / "model.pt")["step"] == final["step"]
    with pytest.raises(ConfigError, match="--resume"):
        fit(cfg, run, quiet=True)


def test_second_round_labels_with_the_first_rounds_model(corpus, tmp_path):  # noqa: F811
    cfg = dino_then_pseudo_speakers(corpus, "pseudo_labels.rounds=2")
    run = fit(cfg, tmp_path / "run", quiet=True)
    first = checkpoint.load(run / "round1" / "model.pt")
    assert first["config"]["train"]["init"] == str((run / "pretrain" / "model.pt").resolve())
    final = checkpoint.load(run / "model.pt")
    assert final["config"]["train"]["init"] == str((run / "round1" / "model.pt").resolve())
    # each round clustered all 18 utterances, with its own model
    for d in (run / "round1", run):
        assert json.loads((d / "pseudo_labels.json").read_text())["utterances"] == 18
    assert final["speakers"] == sorted(
        {r["speaker"] for r in csv.DictReader((run / "pseudo_labels.csv").read_text().splitlines())}
    )
