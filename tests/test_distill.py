"""Distillation: the loss, the cached teacher table, and training from a frozen teacher alone
(no labels) or beside AAM, in one process and under 2-process gloo DDP."""

import math

import numpy as np
import pytest
import torch

from audiocl.config import Config
from audiocl.data.synth import synthesize_corpus
from audiocl.data.views import ViewBatches, open_training_data
from audiocl.errors import ConfigError, DataError
from audiocl.inference.embed import Embedder
from audiocl.objectives import build_objective
from audiocl.objectives.distill import Distill
from audiocl.training.recipe import load_config
from audiocl.training.stages import fit
from audiocl.training.teacher import teacher_table
from audiocl.training.trainer import Trainer, read_metrics


def test_cosine_loss_is_zero_when_the_student_says_what_the_teacher_says():
    t = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    d = Distill(8, 8, "cosine", head_init="identity")
    loss, logs = d(torch.stack([t * 3, t]), t, torch.full((6,), -1))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert logs["distill_cos"] == pytest.approx(1.0, abs=1e-6)
    worse, _ = d(torch.stack([t.roll(1, 0), t]), t, torch.full((6,), -1))
    assert worse.item() > 0.1
    with pytest.raises(ValueError, match="8-dim, the teacher's 4-dim"):
        Distill(8, 4, head_init="identity")


def test_clip_loss_prefers_the_right_pairing_and_masks_speakers_and_repeats():
    torch.manual_seed(0)
    t = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    d = Distill(16, 16, "clip", head_init="identity")
    unknown = torch.full((8,), -1)
    right, _ = d(t[None], t, unknown)
    wrong, _ = d(t.roll(1, 0)[None], t, unknown)
    assert right.item() < wrong.item()
    # every row one speaker: no negatives are left, so any student is as good as any other
    same, _ = d(t.roll(1, 0)[None], t, torch.zeros(8, dtype=torch.long))
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    # one utterance drawn twice: its copy is no negative (unmasked, the two equal logits would
    # cost each of the two rows log 2)
    with torch.no_grad():
        d.logit_scale.fill_(math.log(100.0))
    twice = torch.cat([t[:1], t[:7]])
    masked, _ = d(twice[None], twice, unknown)
    assert masked.item() < 0.05


def test_rows_the_teacher_could_not_embed_are_left_out():
    torch.manual_seed(1)
    t = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    s = torch.randn(1, 5, 8)
    d = Distill(8, 8)
    holed = t.clone()
    holed[2] = float("nan")
    keep = [0, 1, 3, 4]
    a, _ = d(s, holed, torch.full((5,), -1))
    b, _ = d(s[:, keep], t[keep], torch.full((4,), -1))
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    none, logs = d(s, torch.full((5, 8), float("nan")), torch.full((5,), -1))
    assert none.item() == 0.0 and logs == {}


def test_distillation_alone_is_an_objective_and_needs_a_teacher():
    cfg = Config()
    cfg.objective.contrastive, cfg.objective.contrastive_weight = "none", 0.0
    encoder = torch.nn.Identity()
    with pytest.raises(ValueError, match="nothing to train"):
        build_objective(cfg.objective, encoder, 8, n_classes=0)
    cfg.objective.distill.weight = 1.0
    obj = build_objective(cfg.objective, encoder, 8, n_classes=0, teacher_dim=12)
    assert obj.needs_teacher and obj.distill.head.weight.shape == (12, 8)
    emb = torch.randn(1, 4, 8, requires_grad=True)
    loss, parts = obj(emb, torch.full((4,), -1), teacher=torch.randn(4, 12))
    loss.backward()
    assert emb.grad.abs().sum() > 0 and "distill_cos" in parts
    with pytest.raises(ValueError, match="teacher"):
        obj(emb, torch.full((4,), -1))


@pytest.mark.parametrize(
    "setting, message",
    [
        (["objective.distill.weight=1"], "needs objective.distill.teacher"),
        (["objective.distill.weight=-1", "objective.distill.teacher=t.pt"], ">= 0"),
        (["objective.distill.loss=mse"], "objective.distill.loss"),
        (["objective.distill.temperature=0"], "> 0"),
        (["objective.distill.teachr=t.pt"], "unknown config key objective.distill.teachr"),
        (["objective.aam_init=mean"], "objective.aam_init"),
        (["objective.distill.head_init=eye"], "objective.distill.head_init"),
        (["objective.aam_init=init", "objective.aam_weight=1"], "needs .*train.init"),
        (["objective.aam_init=teacher", "objective.aam_weight=1"], "needs .*distillation"),
    ],
)
def test_bad_distill_settings_are_config_errors(setting, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, setting)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    synthesize_corpus(
        root / "train", speakers=6, utterances=3, seed=5, duration=(0.8, 1.4), trials=False
    )
    return root


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, make_tiny_model):
    return make_tiny_model(tmp_path_factory.mktemp("teacher") / "teacher.pt", seed=7)


TINY = [
    "model.channels=48",
    "model.res2net_scale=2",
    "model.embed_dim=24",
    "data.crop_seconds=0.5",
    "data.views=1",
    "data.batch_size=6",
    "data.num_workers=0",
    "optim.warmup_steps=2",
    "optim.lr=0.005",
    "train.log_every=2",
    "train.threads=1",
    "objective.contrastive=none",
    "objective.contrastive_weight=0",
]


def distill_config(corpus, teacher, cache, *extra, labelled=False):
    return load_config(
        None,
        [
            f"data.root={corpus}",
            f"data.sources=[{{path: train, labelled: {str(labelled).lower()}}}]",
            *TINY,
            f"objective.distill.teacher={teacher}",
            "objective.distill.weight=1",
            f"objective.distill.cache={cache}",
            *extra,
        ],
    )


def test_teacher_table_holds_each_speed_and_is_computed_once(
    corpus, teacher, tmp_path, monkeypatch
):
    cfg = distill_config(
        corpus,
        teacher,
        tmp_path / "cache",
        "augment.speed_p=0.5",
        "augment.speed_as_new_speaker=true",
        "objective.aam_weight=1",
        labelled=True,
    )
    data = open_training_data(cfg.data)
    table = teacher_table(cfg, data.corpus, quiet=True)
    assert table.shape == (len(data.corpus), 3, 16) and table.dtype == np.float16
    assert np.isfinite(table).all()
    # row 0 is the teacher's own embedding of the whole, unchanged file
    emb = Embedder.from_file(teacher)
    own = emb.embed_waves([emb.load(data.corpus[0].path)])
    assert float(own[0] @ table[0, 0].astype(np.float32)) > 0.999
    # speed copies are other recordings to the teacher
    cos = (table[:, 0].astype(np.float32) * table[:, 1].astype(np.float32)).sum(1)
    assert cos.max() < 0.9999

    calls = []
    monkeypatch.setattr(Embedder, "embed_waves", lambda self, waves: calls.append(1))
    again = teacher_table(cfg, data.corpus, quiet=True)
    assert not calls, "a cached teacher table was embedded again"
    np.testing.assert_array_equal(again, table)

    # batches carry the row of each example's speed copy
    views = ViewBatches(data, cfg.data, cfg.augment, seed=0, teacher=table)
    batch = views.make_batch(3)
    idx = views.sampler.indices(3)
    n = len(data.speakers)
    speed = torch.div(batch["label"], n, rounding_mode="floor")  # 0 = unchanged, k = copy k-1
    want = table[idx, speed.numpy()].astype(np.float32)
    np.testing.assert_array_equal(batch["teacher"].numpy(), want)


def test_a_student_learns_the_teacher_from_unlabelled_audio(corpus, teacher, tmp_path):
    cfg = distill_config(corpus, teacher, tmp_path / "cache", "train.steps=60", "train.log_every=1")
    run = fit(cfg, tmp_path / "run", quiet=True)
    cos = [r["distill_cos"] for r in read_metrics(run) if "distill_cos" in r]
    assert "aam" not in read_metrics(run)[-1]
    assert np.mean(cos[-10:]) > np.mean(cos[:5]) + 0.2, cos


def test_distillation_beside_aam_under_two_gloo_processes(corpus, teacher, tmp_path):
    from test_train import _train_two_gloo_processes

    cfg = distill_config(
        corpus,
        teacher,
        tmp_path / "cache",
        "train.steps=4",
        "objective.aam_weight=1",
        "objective.distill.loss=both",
        "train.deterministic=true",
        labelled=True,
    )
    _train_two_gloo_processes([cfg], tmp_path)
    last = read_metrics(tmp_path / "run0")[-1]
    assert "aam" in last and "distill" in last and "distill_logit_scale" in last


def test_fine_tuning_the_teacher_starts_each_aam_class_at_its_teacher_mean(
    corpus, teacher, tmp_path
):
    def trainer(*extra, out="run"):
        cfg = distill_config(
            corpus,
            teacher,
            tmp_path / "cache",
            "objective.aam_weight=1",
            "augment.speed_p=0.5",
            "augment.speed_as_new_speaker=true",
            *extra,
            labelled=True,
        )
        return Trainer(cfg, tmp_path / out, quiet=True)

    same_size = ["model.channels=32", "model.embed_dim=16", "features.n_mels=40"]
    imprinted = trainer(*same_size, f"train.init={teacher}", "objective.aam_init=teacher")
    randomly = trainer(*same_size, f"train.init={teacher}", out="random")
    table, labels, n = imprinted.teacher, imprinted.data.labels, len(imprinted.data.speakers)
    assert table.shape[1] == 3
    # nearest class centre of each utterance's teacher embedding (at each speed copy)
    rows = torch.from_numpy(table.astype(np.float32)).permute(1, 0, 2)  # (K, N, D)
    want = torch.from_numpy(labels)[None] + torch.arange(3)[:, None] * n
    for t in (imprinted, randomly):
        w = torch.nn.functional.normalize(t.module.objective.aam.weight.detach(), dim=1)
        t.accuracy = float(((rows @ w.t()).argmax(-1) == want).float().mean())
    assert imprinted.accuracy > 3 * randomly.accuracy, (imprinted.accuracy, randomly.accuracy)
    w = imprinted.module.objective.aam.weight.detach()
    for c in (0, n + 1, 2 * n + 2):  # speaker c % n at speed copy c // n
        mean = rows[c // n][torch.from_numpy(labels) == c % n].mean(0)
        assert float(torch.nn.functional.cosine_similarity(w[c], mean, dim=0)) > 0.9999
    # the model the run starts from, embedded like a teacher: here the same file, the same start
    by_init = trainer(*same_size, f"train.init={teacher}", "objective.aam_init=init", out="init")
    torch.testing.assert_close(
        by_init.module.objective.aam.weight, imprinted.module.objective.aam.weight
    )
    with pytest.raises(ConfigError, match="aam_init: teacher: .* 16-dim, the student's 24-dim"):
        trainer("objective.aam_init=teacher", out="wider")
    unlabelled = distill_config(
        corpus,
        teacher,
        tmp_path / "cache",
        *same_size,
        "objective.aam_weight=1",
        "objective.aam_init=teacher",
    )
    with pytest.raises(DataError, match="no source is labelled"):
        Trainer(unlabelled, tmp_path / "unlabelled", quiet=True)
    with pytest.raises(ConfigError, match="head_init: identity: .* 16-dim, the student's 24"):
        trainer("objective.distill.head_init=identity", out="wider")


def test_fine_tuning_the_teacher_starts_its_distillation_head_as_the_identity(
    corpus, teacher, tmp_path
):
    cfg = distill_config(
        corpus,
        teacher,
        tmp_path / "cache",
        "model.channels=32",
        "model.embed_dim=16",
        "features.n_mels=40",
        f"train.init={teacher}",
        "objective.distill.head_init=identity",
    )
    head = Trainer(cfg, tmp_path / "run", quiet=True).module.objective.distill.head.weight
    assert torch.equal(head.detach(), torch.eye(16))
