"""The training data pipeline: batches are a function of (seed, rank, step)."""

import numpy as np
import pytest
import torch

from audiocl.data.synth import synthesize_corpus
from audiocl.data.views import BatchSampler, ViewBatches, open_training_data
from audiocl.errors import ConfigError
from audiocl.training.recipe import load_config


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    synthesize_corpus(
        root / "a", speakers=3, utterances=4, seed=1, duration=(0.6, 2.5), trials=False
    )
    synthesize_corpus(
        root / "b",
        speakers=2,
        utterances=3,
        seed=2,
        duration=(0.6, 1.0),
        speaker_offset=3,
        trials=False,
    )
    return root


def config(root, *extra):
    return load_config(
        None,
        [
            f"data.root={root}",
            "data.sources=[{path: a, labelled: true}, {path: b, labelled: false}]",
            "data.crop_seconds=1.0",
            "data.batch_size=4",
            "data.views=3",
            "augment.babble_p=0.5",
            "augment.speed_p=0.5",
            *extra,
        ],
    )


def test_mixed_sources_are_labelled_per_source(root):
    data = open_training_data(config(root).data)
    assert len(data.corpus) == 12 + 6 and data.source_sizes == [12, 6]
    assert len(data.speakers) == 3
    assert (data.labels[data.source_of == 0] >= 0).all()
    assert (data.labels[data.source_of == 1] == -1).all()


def test_batches_depend_only_on_seed_rank_and_step(root):
    cfg = config(root)
    data = open_training_data(cfg.data)
    a = ViewBatches(data, cfg.data, cfg.augment, seed=5)
    b = ViewBatches(data, cfg.data, cfg.augment, seed=5, start_step=3)
    batch = a.make_batch(4)
    assert batch["wave"].shape == (3, 4, 16000) and batch["label"].shape == (4,)
    assert torch.isfinite(batch["wave"]).all()
    # the same step from another dataset object (as after a resume) is the same batch
    torch.testing.assert_close(b.make_batch(4)["wave"], batch["wave"], rtol=0, atol=0)
    # views of one utterance differ (independent crops and augmentations), steps differ
    assert not torch.equal(batch["wave"][0], batch["wave"][1])
    assert not torch.equal(a.make_batch(5)["wave"], batch["wave"])
    first = next(iter(b))
    assert first["step"] == 3


def test_babble_source_gives_requested_shape(root):
    cfg = config(root)
    ds = ViewBatches(open_training_data(cfg.data), cfg.data, cfg.augment, seed=0)
    out = ds.babble(5, 40000, torch.Generator().manual_seed(0))
    assert out.shape == (5, 40000) and out.abs().sum() > 0


def test_ranks_draw_disjoint_batches_and_balance_shifts_sources():
    source_of = np.repeat([0, 1], [90, 10])
    r0 = BatchSampler(source_of, 8, seed=1, rank=0, world_size=2)
    r1 = BatchSampler(source_of, 8, seed=1, rank=1, world_size=2)
    for step in range(3):
        assert not set(r0.indices(step)) & set(r1.indices(step))
    flat = BatchSampler(source_of, 10, seed=1, balance=0.0)
    drawn = np.concatenate([flat.indices(s) for s in range(flat.per_epoch)])
    share = (source_of[drawn] == 1).mean()
    assert 0.35 < share < 0.65  # equal odds per source instead of 10%


def test_multicrop_batches_add_shorter_local_crops(root):
    cfg = config(root, "data.local_views=4", "data.local_crop_seconds=0.5")
    data = open_training_data(cfg.data)
    batch = ViewBatches(data, cfg.data, cfg.augment, seed=5).make_batch(2)
    assert batch["wave"].shape == (3, 4, 16000) and batch["local"].shape == (4, 4, 8000)
    assert torch.isfinite(batch["local"]).all()
    again = ViewBatches(data, cfg.data, cfg.augment, seed=5).make_batch(2)
    torch.testing.assert_close(again["local"], batch["local"], rtol=0, atol=0)
    assert not torch.equal(batch["local"][0], batch["local"][1])
    plain = config(root)
    assert "local" not in ViewBatches(data, plain.data, plain.augment, seed=5).make_batch(2)


def test_crop_mix_draws_each_steps_crop_length_from_the_mix(root):
    cfg = config(root, "data.crop_mix=[0.5, 1.0, 1.5]")
    data = open_training_data(cfg.data)
    ds = ViewBatches(data, cfg.data, cfg.augment, seed=5)
    lengths = [ds.make_batch(step)["wave"].shape[-1] for step in range(12)]
    assert set(lengths) == {8000, 16000, 24000}
    # a function of the seed and the step: a resumed run and every rank see the same lengths
    other = ViewBatches(data, cfg.data, cfg.augment, seed=5, start_step=7, rank=1, world_size=2)
    assert [other.make_batch(step)["wave"].shape[-1] for step in range(12)] == lengths
    # a step of the mix's crop_seconds length is the batch a run without the mix draws
    plain = config(root)
    step = lengths.index(16000)
    torch.testing.assert_close(
        ds.make_batch(step)["wave"],
        ViewBatches(data, plain.data, plain.augment, seed=5).make_batch(step)["wave"],
        rtol=0,
        atol=0,
    )
    with pytest.raises(ConfigError, match="crop_mix"):
        config(root, "data.crop_mix=[1.0, 0]")
    with pytest.raises(ConfigError, match="shorter than two feature windows"):
        config(root, "data.crop_mix=[1.0, 0.01]")


def test_label_fraction_keeps_a_fixed_share_of_speakers(root):
    srcs = (
        "data.sources=[{path: a, labelled: true, label_fraction: 0.34}, {path: b, labelled: false}]"
    )
    data = open_training_data(config(root, srcs).data)
    assert len(data.corpus) == 18 and len(data.speakers) == 1  # round(0.34 * 3) = 1 of 3
    labelled = data.labels >= 0
    assert labelled.sum() == 4 and (data.source_of[labelled] == 0).all()
    # the same speaker in every run, whatever the order of the other sources
    other = open_training_data(
        config(
            root,
            "data.sources=[{path: b, labelled: false}, {path: a, labelled: true, "
            "label_fraction: 0.34}]",
        ).data
    )
    assert [s.split(":", 1)[1] for s in other.speakers] == [
        s.split(":", 1)[1] for s in data.speakers
    ]
    only = open_training_data(config(root, srcs, "data.labelled_only=true").data)
    assert len(only.corpus) == 4 and (only.labels >= 0).all() and only.source_sizes == [4, 0]
    from audiocl.errors import ConfigError

    with pytest.raises(ConfigError, match="label_fraction"):
        config(root, "data.sources=[{path: a, label_fraction: 0}]")


def test_disjoint_starts_do_not_overlap_when_there_is_room():
    from audiocl.data.views import disjoint_starts

    rng = np.random.default_rng(0)
    for _ in range(200):
        total = int(rng.integers(300, 1000))
        starts = disjoint_starts(total, 100, 3, rng)
        assert all(b - a >= 100 for a, b in zip(starts, starts[1:], strict=False))
        assert starts[0] >= 0 and starts[-1] + 100 <= total
    # not enough room: evenly spread, first at 0 and last at the end
    assert disjoint_starts(250, 100, 3, rng) == [0, 75, 150]


def test_disjoint_crops_share_no_samples(root):
    cfg = config(
        root,
        "data.disjoint_crops=true",
        "data.views=2",
        "augment.enabled=false",
        "data.crop_seconds=0.25",
    )
    data = open_training_data(cfg.data)
    ds = ViewBatches(data, cfg.data, cfg.augment, seed=1)
    long = int(np.argmax(data.corpus.durations))  # 2.5 s at most: room for two 0.25 s crops
    crops = ds.read_crops(long, np.random.default_rng(0), 2, 4000, disjoint=True)
    wave = __import__("audiocl.io.audio").io.audio.load(data.corpus[long].path, 16000)
    found = [
        int(
            np.flatnonzero(
                np.all(
                    np.lib.stride_tricks.sliding_window_view(wave.numpy(), 4000) == c.numpy(),
                    axis=1,
                )
            )[0]
        )
        for c in crops
    ]
    assert abs(found[1] - found[0]) >= 4000


def test_speed_copies_are_new_classes_and_views_share_the_speed(root, monkeypatch):
    from audiocl.data.augment import SpeedPerturb
    from audiocl.data.views import num_classes

    cfg = config(root, "augment.speed_as_new_speaker=true", "augment.speed_p=0.67")
    data = open_training_data(cfg.data)
    n = len(data.speakers)
    assert num_classes(data, cfg.augment) == 3 * n
    assert num_classes(data, config(root).augment) == n
    seen = []
    original = SpeedPerturb.perturb

    def spy(self, wave, choice, generator):
        seen.append(choice.clone())
        return original(self, wave, choice, generator)

    monkeypatch.setattr(SpeedPerturb, "perturb", spy)
    ds = ViewBatches(data, cfg.data, cfg.augment, seed=3)
    assert not any(isinstance(a, SpeedPerturb) for a in ds.augment.augmentations)
    shifted = 0
    for step in range(6):
        seen.clear()
        batch = ds.make_batch(step)
        (choice,) = seen  # applied once, to every view together
        per_view = choice.reshape(3, 4)
        assert (per_view == per_view[0]).all()
        base = torch.from_numpy(data.labels[ds.sampler.indices(step)])
        label = batch["label"]
        assert torch.equal(label < 0, base < 0)  # unlabelled rows stay unlabelled
        kept = base >= 0
        assert torch.equal(label[kept], base[kept] + (per_view[0][kept] + 1) * n)
        assert label.max() < 3 * n
        shifted += int((label >= n).sum())
    assert shifted > 0


def test_hold_out_leaves_speakers_out_of_training(root):
    from audiocl.data.corpus import open_corpus
    from audiocl.data.views import held_out_speakers

    srcs = "data.sources=[{path: a, labelled: true, hold_out: 1}, {path: b, labelled: false}]"
    data = open_training_data(config(root, srcs).data)
    names = open_corpus(root / "a").speakers
    (held,) = held_out_speakers(names, 1)
    assert len(data.speakers) == 2 and not any(s.endswith(names[held]) for s in data.speakers)
    assert len(data.corpus) == 12 - 4 + 6  # its 4 utterances are gone
    assert not any(f"/{names[held]}/" in data.corpus.path(i) for i in range(len(data.corpus)))
    # the same speaker every time, and never all of them
    assert held_out_speakers(names, 1).tolist() == [held]
    with pytest.raises(Exception, match="would leave none"):
        open_training_data(
            config(root, "data.sources=[{path: a, labelled: true, hold_out: 3}]").data
        )
