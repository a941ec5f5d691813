"""Tar shards: written resumably and reproducibly, read by WebDataset's own tools, streamed with
each utterance once per epoch across ranks and workers, and resumed exactly."""

import dataclasses
import json
import os
import tarfile

import numpy as np
import pytest
import torch

from audiocl.app.cli import main
from audiocl.data.corpus import open_corpus
from audiocl.data.shard_stream import ShardReader, ShardStream
from audiocl.data.shard_writer import write_shards
from audiocl.data.shards import open_shards, shard_name
from audiocl.data.synth import synthesize_corpus
from audiocl.data.views import ViewBatches, make_loader, open_training_data
from audiocl.errors import AudioError, ConfigError, DataError
from audiocl.io import audio
from audiocl.modelfile import checkpoint
from audiocl.training.recipe import load_config
from audiocl.training.stages import fit
from audiocl.training.trainer import find_checkpoints


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    synthesize_corpus(
        root / "train", speakers=6, utterances=5, seed=5, duration=(0.8, 1.5), trials=False
    )
    return root


@pytest.fixture(scope="module")
def sharded(voices):
    return write_shards(open_corpus(voices / "train"), voices / "sh", shard_size=4, seed=2)


def test_every_utterance_decodes_as_its_file(voices, sharded):
    files = open_corpus(voices / "train")
    assert len(sharded) == len(files) == 30
    assert len(sharded.names) == 8  # 7 of 4 and one of 2
    for i in range(len(sharded)):
        j = files.index(sharded.corpus.utt_id(i))
        assert sharded.corpus.speakers[sharded.corpus.speaker_ids[i]] == files[j].speaker
        ref = audio.load(files.path(j))
        torch.testing.assert_close(sharded.load(i), ref, rtol=0, atol=0)
    # speakers are shuffled across shards, not one speaker per shard
    assert len({sharded.corpus.speaker_ids[i] for i in np.flatnonzero(sharded.shard == 0)}) > 1


def test_webdataset_reads_the_shards(sharded):
    wds = pytest.importorskip("webdataset")
    urls = [str(sharded.shard_path(k)) for k in range(len(sharded.names))]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == len(sharded)
    meta = json.loads(samples[0]["json"])
    assert set(meta) == {"utt_id", "speaker", "duration", "sample_rate", "source"}
    i = sharded.corpus.index(meta["utt_id"])
    assert samples[0]["flac"] == sharded.read(i)
    listing = json.loads((sharded.root / "shards.json").read_text())
    assert [s["nsamples"] for s in listing["shardlist"]] == [4] * 7 + [2]


def test_reads_that_return_less_are_continued(sharded, monkeypatch):
    want = [sharded.read(i) for i in range(len(sharded))]
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, at: real(fd, min(n, 1000), at))
    reader = ShardReader(sharded)
    assert [reader.read(i) for i in sharded.read_order().tolist()] == [
        want[i] for i in sharded.read_order().tolist()
    ]
    reader.close()


def test_writing_is_reproducible_and_resumes(voices, sharded, tmp_path):
    corpus = open_corpus(voices / "train")
    out = tmp_path / "again"
    write_shards(corpus, out, shard_size=4, seed=2)
    for k in range(len(sharded.names)):
        assert (out / shard_name(k)).read_bytes() == sharded.shard_path(k).read_bytes()
    # a write killed after some shards: only the missing ones are written again
    (out / shard_name(3)).unlink()
    (out / "index.npz").unlink()
    kept = (out / shard_name(0)).stat().st_mtime_ns
    again = write_shards(corpus, out, shard_size=4, seed=2)
    assert (out / shard_name(0)).stat().st_mtime_ns == kept
    assert (out / shard_name(3)).read_bytes() == sharded.shard_path(3).read_bytes()
    assert again.fingerprint == sharded.fingerprint
    with pytest.raises(DataError, match="another corpus or settings"):
        write_shards(corpus, out, shard_size=5, seed=2)


def test_other_formats_are_transcoded_and_bad_files_listed(tmp_path):
    src = tmp_path / "src"
    wave = torch.sin(torch.arange(8000) * 0.05) * 0.3
    for spk in ("a", "b"):
        audio.save(src / spk / "s" / "1.wav", wave, 8000)
    (src / "b" / "s" / "2.wav").write_bytes(b"RIFF" + b"\0" * 60)
    out = tmp_path / "sh"
    assert main(["shard", str(src), "--out", str(out), "--shard-size", "1", "--quiet"]) == 0
    shards = open_shards(out)
    assert len(shards) == 2
    got = shards.load(0, None)
    torch.testing.assert_close(got, audio.load(src / "a" / "s" / "1.wav", None), atol=1e-4, rtol=0)
    listing = json.loads((out / "shards.json").read_text())
    assert any(p.endswith("2.wav") for p, _ in listing["skipped"])


def test_damaged_member_names_the_shard_and_key(sharded, tmp_path):
    with pytest.raises(AudioError, match=r"shard-\d{6}\.tar:\d{9}\.flac"):
        sharded.load(0, data=b"not flac at all")
    with pytest.raises(DataError, match="not a shard folder"):
        open_shards(tmp_path)


def test_an_epoch_uses_every_utterance_once_across_all_streams(sharded):
    for streams in (1, 2, 4):  # e.g. 2 ranks x 2 loader workers
        for epoch in (0, 3):
            seen = [
                ShardStream(sharded, seed=7, stream=g, streams=streams, buffer=3).order(epoch)
                for g in range(streams)
            ]
            flat = np.concatenate(seen)
            assert sorted(flat.tolist()) == list(range(len(sharded)))
    a = ShardStream(sharded, 7, 0, 1, 3)
    assert a.order(0) != a.order(1)  # a new order every epoch
    with pytest.raises(DataError, match="8 shards for 9 input streams"):
        ShardStream(sharded, 7, 0, 9, 3)


def test_a_stream_reads_each_shard_once_front_to_back(sharded):
    stream = ShardStream(sharded, seed=1, stream=0, streams=2, buffer=4)
    reader = ShardReader(sharded)
    items = stream.items(0, reader)
    n = stream.epoch_length(0)
    reads = []
    inner = reader.read
    reader.read = lambda i: reads.append(i) or inner(i)
    got = [next(items) for _ in range(n)]
    assert reader.opened == len(stream.epoch_shards(0))
    shard_of = sharded.shard[reads]
    assert (np.diff(np.flatnonzero(np.diff(shard_of))) > 0).all()  # shards one after another
    for k in set(shard_of.tolist()):
        offs = sharded.offset[np.array(reads)[shard_of == k]]
        assert (np.diff(offs) > 0).all()  # each front to back
    assert [i for i, _ in got] == stream.order(0)  # the buffer mixes: not the read order
    assert [i for i, _ in got] != reads


def test_a_stream_resumes_at_any_position(sharded):
    stream = ShardStream(sharded, seed=4, stream=1, streams=2, buffer=5)
    items = stream.items(0)
    straight = [next(items) for _ in range(40)]  # more than two epochs of this stream
    for start in (1, 7, stream.epoch_length(0), 33):
        resumed = stream.items(start)
        again = [next(resumed) for _ in range(40 - start)]
        assert again == straight[start:]


def shard_config(root, *extra):
    return load_config(
        None,
        [
            f"data.root={root}",
            "data.sources=[{shards: sh}]",
            "model.channels=32",
            "model.res2net_scale=2",
            "model.embed_dim=16",
            "objective.head_hidden=16",
            "objective.head_dim=8",
            "features.n_mels=40",
            "data.crop_seconds=0.5",
            "data.batch_size=4",
            "data.shuffle_buffer=3",
            "augment.speed_p=0.5",
            "augment.babble_p=0.5",
            "optim.warmup_steps=2",
            "train.log_every=2",
            "train.deterministic=true",
            "train.threads=1",
            *extra,
        ],
    )


def test_loader_workers_give_the_same_batches_from_any_start(voices, sharded):
    cfg = shard_config(voices, "data.num_workers=2", "data.local_views=1")
    data = open_training_data(cfg.data)
    assert data.shards is not None

    def batches(start, n):
        ds = ViewBatches(data, cfg.data, cfg.augment, seed=1, start_step=start)
        it = iter(make_loader(ds, 2))
        return [next(it) for _ in range(n)]

    straight = batches(0, 9)
    assert [b["step"] for b in straight] == list(range(9))
    for start in (3, 4):
        for a, b in zip(straight[start:], batches(start, 9 - start), strict=False):
            assert a["step"] == b["step"]
            torch.testing.assert_close(a["wave"], b["wave"], rtol=0, atol=0)
            torch.testing.assert_close(a["local"], b["local"], rtol=0, atol=0)
            assert torch.equal(a["label"], b["label"])


def test_shard_training_resumes_exactly_and_checks_the_input(voices, sharded, tmp_path):
    extra = [
        "train.steps=6",
        "train.ckpt_every=3",
        "train.keep_last=3",
        "data.num_workers=2",
        "objective.contrastive=simclr",
        "objective.aam_weight=0.5",
        "data.sources=[{shards: sh, hold_out: 1}]",
    ]
    from test_train import straight_and_crashed

    cfg = shard_config(voices, *extra)
    run = straight_and_crashed(cfg, tmp_path, 6)
    state = checkpoint.load(find_checkpoints(run)[-1])["input"]
    assert state["kind"] == "shards" and state["streams_per_rank"] == 2
    assert state["positions"] == [8, 4]  # step 3: stream 0 made steps 0 and 2, stream 1 step 1
    with pytest.raises(ConfigError, match="streams_per_rank=2.*the same data.num_workers"):
        fit(shard_config(voices, *extra, "data.num_workers=1"), run, resume=True, quiet=True)
    fit(cfg, run, resume=True, quiet=True)
    a = checkpoint.load(tmp_path / "straight" / "model.pt")["encoder"]
    b = checkpoint.load(run / "model.pt")["encoder"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_held_out_speakers_never_reach_a_stream(voices, sharded):
    cfg = shard_config(voices, "data.sources=[{shards: sh, hold_out: 2}]", "data.num_workers=0")
    data = open_training_data(cfg.data)
    assert len(data.corpus) == 20 and len(data.shards) == 20
    stream = ShardStream(data.shards, 0, 0, 1, 3)
    names = {data.corpus.utt_id(i) for i in stream.order(0)}
    assert len(names) == 20
    held = set(sharded.corpus.speakers) - set(data.corpus.speakers)
    assert len(held) == 2
    assert not any(name.split("/")[0] in held for name in names)


def test_shards_are_the_only_source(voices):
    with pytest.raises(ConfigError, match="only source"):
        shard_config(voices, "data.sources=[{shards: sh}, {path: train}]")
    with pytest.raises(ConfigError, match="one of path"):
        shard_config(voices, "data.sources=[{shards: sh, path: train}]")


def test_tar_listing_matches_the_index(sharded):
    with tarfile.open(sharded.shard_path(0)) as tar:
        names = tar.getnames()
    assert len(names) == 8 and names[0].endswith(".flac") and names[1].endswith(".json")


def test_teacher_embeddings_from_shards_match_the_files(voices, sharded, tmp_path, make_tiny_model):
    from audiocl.training.teacher import teacher_table

    teacher = make_tiny_model(tmp_path / "teacher.pt")
    extra = [
        f"objective.distill.teacher={teacher}",
        "objective.distill.weight=1.0",
        f"objective.distill.cache={tmp_path / 'cache'}",
    ]
    cfg = shard_config(voices, *extra)
    files = open_corpus(voices / "train")
    by_file = teacher_table(cfg, files, quiet=True)
    by_shard = teacher_table(cfg, sharded.corpus, quiet=True, shards=sharded)
    rows = [files.index(sharded.corpus.utt_id(i)) for i in range(len(sharded))]
    np.testing.assert_allclose(by_shard, by_file[rows], rtol=0, atol=1e-3)
    keys = {sharded.cache_key(i) for i in range(len(sharded))}
    assert len(keys) == len(sharded)


def test_two_gloo_ranks_train_on_shards(voices, sharded, tmp_path):
    from test_train import _train_two_gloo_processes

    cfg = shard_config(
        voices,
        "train.steps=3",
        "train.ckpt_every=3",
        "data.num_workers=0",
        "objective.contrastive=moco",
        "objective.moco_queue=16",
        "objective.aam_weight=1.0",
    )
    _train_two_gloo_processes([cfg], tmp_path)  # and the replicas stay identical
    state = checkpoint.load(find_checkpoints(tmp_path / "run0")[-1])["input"]
    assert state["world_size"] == 2 and state["positions"] == [12]


@pytest.mark.parametrize("speed_classes", [False, True])
def test_augmenting_on_the_device_gives_the_workers_batch(voices, sharded, speed_classes):
    extra = [
        "data.num_workers=0",
        "data.local_views=1",
        "augment.babble_p=0",
        "augment.speed_p=0.7",
    ]
    if speed_classes:
        extra.append("augment.speed_as_new_speaker=true")
    cfg = shard_config(voices, *extra)
    data = open_training_data(cfg.data)
    in_worker = ViewBatches(data, cfg.data, cfg.augment, seed=5)
    on_device = dataclasses.replace(cfg.augment, on_device=True)
    deferred = ViewBatches(data, cfg.data, on_device, seed=5)
    for a, b in zip(iter(in_worker), iter(deferred), strict=False):
        assert "aug_state" in b and "aug_state" not in a
        assert not torch.equal(a["wave"], b["wave"])  # b's crops are not augmented yet
        done = deferred.augment_batch(b, torch.device("cpu"))
        torch.testing.assert_close(done["wave"], a["wave"], rtol=0, atol=0)
        torch.testing.assert_close(done["local"], a["local"], rtol=0, atol=0)
        assert torch.equal(a["label"], b["label"])
        if a["step"] == 2:
            break


def test_a_run_augments_on_the_device_with_babble_from_the_batch(voices, sharded, tmp_path):
    cfg = shard_config(voices, "train.steps=2", "data.num_workers=0", "augment.on_device=true")
    fit(cfg, tmp_path / "run", quiet=True)
    assert checkpoint.load(tmp_path / "run" / "model.pt")["step"] == 2


def test_wav_members_decode_as_the_flac_ones(voices, sharded, tmp_path):
    corpus = open_corpus(voices / "train")
    wav = write_shards(corpus, tmp_path / "wav", shard_size=4, seed=2, audio_format="wav")
    assert wav.audio_format == "wav" and wav.member_name(0).endswith(".wav")
    assert (wav.offset != sharded.offset).any()  # other bytes in the tars
    for i in (0, 7, 29):
        torch.testing.assert_close(wav.load(i), sharded.load(i), rtol=0, atol=0)
    (tmp_path / "wav" / "index.npz").unlink()  # resumed: the index from the tars' listings
    again = write_shards(corpus, tmp_path / "wav", shard_size=4, seed=2, audio_format="wav")
    assert (again.offset == wav.offset).all() and again.audio_format == "wav"
    with pytest.raises(DataError, match="another corpus or settings"):
        write_shards(corpus, tmp_path / "wav", shard_size=4, seed=2)  # flac: another plan
