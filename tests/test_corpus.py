"""corpus.py: VoxCeleb folders, Kaldi dirs, CSV manifests, the manifest cache, concat."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audiocl.data.corpus as corpus_mod
from audiocl.data.corpus import (
    MANIFEST_NAME,
    Corpus,
    Utterance,
    _load_cache,
    open_corpus,
    read_headers,
)
from audiocl.errors import DataError


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOCL_HOME", str(tmp_path / "home"))


def write(path: Path, seconds: float, sr: int = 16000, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * sr))
    sf.write(path, np.full((n, channels), 0.1, np.float32), sr)


def make_tree(root: Path) -> dict[str, float]:
    """3 speakers x 2 sessions x 2 utterances, wav and flac; returns utt_id -> duration."""
    durs = {}
    for s in range(3):
        for k in range(2):
            for u in range(2):
                ext = ".wav" if u == 0 else ".flac"
                rel = f"id{s:05d}/sess{k}/{u:05d}{ext}"
                d = 0.5 + 0.1 * s + 0.05 * k + 0.01 * u
                write(root / rel, d)
                durs[rel] = d
    return durs


class Spy:
    """Counts header reads through corpus.read_headers."""

    def __init__(self, monkeypatch):
        self.paths: list[str] = []
        real = corpus_mod.read_headers

        def spy(paths, workers=None):
            self.paths.extend(paths)
            return real(paths, workers)

        monkeypatch.setattr(corpus_mod, "read_headers", spy)


def test_voxceleb_folder_records(tmp_path):
    root = tmp_path / "vox"
    durs = make_tree(root)
    write(root / "id00002" / "sess1" / "stereo.wav", 1.0, sr=44100, channels=2)
    durs["id00002/sess1/stereo.wav"] = 1.0
    (root / "id00000" / "notes.txt").write_text("not audio")
    write(root / "id00000" / ".hidden" / "x.wav", 1.0)
    c = open_corpus(root)
    assert len(c) == 13
    assert [u.utt_id for u in c] == sorted(durs)
    assert c.speakers == ["id00000", "id00001", "id00002"]
    for i, u in enumerate(c):
        assert isinstance(u, Utterance)
        assert u.speaker == u.utt_id.split("/")[0]
        assert u.path == str(root / u.utt_id) and os.path.isabs(u.path)
        assert u.duration == pytest.approx(durs[u.utt_id], abs=1e-4)
        assert u.sample_rate == (44100 if "stereo" in u.utt_id else 16000)
        assert c.speakers[c.speaker_ids[i]] == u.speaker
        assert c.durations[i] == pytest.approx(u.duration)
    assert c.durations.dtype == np.float32
    u = c.find("id00001/sess0/00001.flac")
    assert u.speaker == "id00001" and u.duration == pytest.approx(0.61, abs=1e-4)
    assert "id00001/sess0/00001.flac" in c and "nope.wav" not in c
    with pytest.raises(DataError, match="nope.wav"):
        c.find("nope.wav")
    groups = c.by_speaker()
    assert sorted(groups) == c.speakers
    assert sum(map(len, groups.values())) == len(c)
    assert all(c[i].speaker == s for s, idx in groups.items() for i in idx)
    assert c[-1] == c[len(c) - 1]
    with pytest.raises(IndexError):
        c[len(c)]
    with pytest.raises(ValueError):
        c.speaker_ids[0] = 5  # read-only view
    assert c.nbytes <= sum(len(k) + 20 for k in durs) + 8


def test_cache_second_open_reads_no_headers(tmp_path, monkeypatch):
    root = tmp_path / "vox"
    make_tree(root)
    first = open_corpus(root)
    assert (root / MANIFEST_NAME).is_file()
    spy = Spy(monkeypatch)
    walks = []
    real_walk = corpus_mod._walk
    monkeypatch.setattr(corpus_mod, "_walk", lambda r: walks.append(r) or real_walk(r))
    second = open_corpus(root)
    assert spy.paths == [] and walks == []  # a stat per folder, no listing, no header
    assert list(second) == list(first)
    assert second.speakers == first.speakers


def test_cache_invalidated_and_updated_incrementally(tmp_path, monkeypatch):
    root = tmp_path / "vox"
    make_tree(root)
    open_corpus(root)
    spy = Spy(monkeypatch)
    write(root / "id00003" / "s" / "new.wav", 0.8)  # new speaker
    c = open_corpus(root)
    assert spy.paths == [str(root / "id00003/s/new.wav")]
    assert c.find("id00003/s/new.wav").duration == pytest.approx(0.8)
    assert len(c) == 13 and "id00003" in c.speakers
    # removing a file
    os.remove(root / "id00000/sess0/00000.wav")
    spy.paths.clear()
    c = open_corpus(root)
    assert len(c) == 12 and "id00000/sess0/00000.wav" not in c
    # only the changed folder is read again; the other 5 folders come from the cache
    assert spy.paths == [str(root / "id00000/sess0/00001.flac")]
    # replacing a file by rename (how tools write files) re-reads its folder
    write(root / "tmp.wav", 2.5)
    os.replace(root / "tmp.wav", root / "id00001/sess1/00000.wav")
    c = open_corpus(root)
    assert c.find("id00001/sess1/00000.wav").duration == pytest.approx(2.5)
    # and the cache now holds that state
    spy.paths.clear()
    assert list(open_corpus(root)) == list(c) and spy.paths == []


def test_cache_false_writes_nothing(tmp_path):
    root = tmp_path / "vox"
    make_tree(root)
    assert len(open_corpus(root, cache=False)) == 12
    assert not (root / MANIFEST_NAME).exists()


def test_read_only_root_caches_in_data_dir(tmp_path, monkeypatch):
    root = tmp_path / "vox"
    make_tree(root)
    real = corpus_mod.atomic_path

    def refuse_in_root(path):
        if Path(path).parent == root:
            raise PermissionError(13, "Read-only file system", str(path))
        return real(path)

    monkeypatch.setattr(corpus_mod, "atomic_path", refuse_in_root)
    first = open_corpus(root)
    assert not (root / MANIFEST_NAME).exists()
    cached = list((tmp_path / "home" / "manifests").glob("*.npz"))
    assert len(cached) == 1
    spy = Spy(monkeypatch)
    assert list(open_corpus(root)) == list(first) and spy.paths == []


def test_corrupt_cache_is_rebuilt(tmp_path):
    root = tmp_path / "vox"
    make_tree(root)
    open_corpus(root)
    (root / MANIFEST_NAME).write_bytes(b"garbage")
    assert len(open_corpus(root)) == 12
    # the garbage was replaced by a readable manifest, which the next open uses as it is
    assert _load_cache(root, "voxceleb") is not None
    rebuilt = (root / MANIFEST_NAME).read_bytes()
    assert rebuilt != b"garbage"
    assert len(open_corpus(root)) == 12
    assert (root / MANIFEST_NAME).read_bytes() == rebuilt


def test_bad_and_short_files_are_skipped_and_listed(tmp_path):
    root = tmp_path / "vox"
    make_tree(root)
    (root / "id00000/sess0/bad.wav").write_text("text, not audio")
    (root / "id00000/sess0/empty.flac").write_bytes(b"")
    write(root / "loose.wav", 1.0)  # not inside a speaker folder
    write(root / "id00009/s/short.wav", 0.1)  # only utterance of its speaker
    c = open_corpus(root, min_duration=0.3)
    reasons = {Path(p).name: r for p, r in c.skipped}
    assert set(reasons) == {"bad.wav", "empty.flac", "loose.wav", "short.wav"}
    assert "cannot decode" in reasons["bad.wav"]
    assert "empty" in reasons["empty.flac"]
    assert "speaker folder" in reasons["loose.wav"]
    assert "shorter than 0.3 s" in reasons["short.wav"]
    assert len(c) == 12 and "id00009" not in c.speakers
    assert c.speakers[int(c.speaker_ids.max())] == "id00002"
    # without a minimum the short file is kept; the bad ones stay skipped (also from the cache)
    c = open_corpus(root)
    assert len(c) == 13 and len(c.skipped) == 3


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        open_corpus(tmp_path / "empty")
    with pytest.raises(ValueError, match="voxceleb"):
        open_corpus(tmp_path, format="zip")


def test_parallel_header_reads_match_serial(tmp_path):
    root = tmp_path / "vox"
    make_tree(root)
    (root / "bad.wav").write_text("x")
    paths = sorted(str(p) for p in root.rglob("*.*")) * 10
    assert read_headers(paths, workers=4) == read_headers(paths, workers=1)


# ----------------------------------------------------------------------------- Kaldi


def test_kaldi_dir(tmp_path, monkeypatch):
    audio = tmp_path / "audio"
    write(audio / "a.wav", 1.0)
    write(audio / "b.flac", 0.5, sr=8000)
    kd = tmp_path / "data" / "train"
    kd.mkdir(parents=True)
    (kd / "wav.scp").write_text(f"utt_b {audio / 'b.flac'}\nutt_a ../../audio/a.wav\n")
    (kd / "utt2spk").write_text("utt_a alice\nutt_b bob\n")
    c = open_corpus(kd)
    assert [(u.utt_id, u.speaker, u.sample_rate) for u in c] == [
        ("utt_a", "alice", 16000),
        ("utt_b", "bob", 8000),
    ]
    assert c[0].path == str(audio / "a.wav")
    assert c.find("utt_b").duration == pytest.approx(0.5)
    spy = Spy(monkeypatch)
    assert list(open_corpus(kd)) == list(c) and spy.paths == []  # cached
    # utt2dur: durations taken from it, no header reads
    (kd / "utt2dur").write_text("utt_a 1.0\nutt_b 0.5\n")
    c2 = open_corpus(kd)
    assert spy.paths == [] and c2.find("utt_a").duration == pytest.approx(1.0)


def test_kaldi_errors(tmp_path):
    kd = tmp_path / "kd"
    kd.mkdir()
    (kd / "wav.scp").write_text("u1 /x/a.wav\nu2 sox in.wav -t wav - |\n")
    (kd / "utt2spk").write_text("u1 s1\nu2 s2\n")
    with pytest.raises(DataError, match=r"wav.scp:line 2: piped commands are not supported"):
        open_corpus(kd)
    (kd / "wav.scp").write_text("u1 /x/a.wav\nu3 /x/b.wav\n")
    with pytest.raises(DataError, match="'u3' has no speaker"):
        open_corpus(kd)
    (kd / "utt2spk").unlink()
    with pytest.raises(DataError, match="no utt2spk"):
        open_corpus(kd)


# ----------------------------------------------------------------------------- CSV


def test_csv_manifest_with_and_without_header(tmp_path, monkeypatch):
    write(tmp_path / "wavs" / "a.wav", 1.0)
    write(tmp_path / "wavs" / "b.wav", 0.75)
    (tmp_path / "m.csv").write_text("wavs/a.wav,spk1\nwavs/b.wav,spk2\n")
    c = open_corpus(tmp_path / "m.csv")
    assert [(u.utt_id, u.speaker, round(u.duration, 3)) for u in c] == [
        ("wavs/a.wav", "spk1", 1.0),
        ("wavs/b.wav", "spk2", 0.75),
    ]
    assert c[0].path == str(tmp_path / "wavs" / "a.wav")
    spy = Spy(monkeypatch)
    (tmp_path / "h.csv").write_text(
        "speaker,path,duration,gender\nspk1,wavs/a.wav,1.0,f\nspk2,wavs/b.wav,0.75,m\n"
    )
    c = open_corpus(tmp_path / "h.csv")
    assert spy.paths == []  # durations given: no headers read
    assert [(u.speaker, u.duration, u.sample_rate) for u in c] == [
        ("spk1", 1.0, 0),
        ("spk2", 0.75, 0),
    ]
    # positional duration column without a header
    (tmp_path / "d.csv").write_text("# comment\n\nwavs/a.wav,s,1.5\n")
    assert open_corpus(tmp_path / "d.csv")[0].duration == 1.5


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("path,speaker\na.wav\n", "line 2: expected path,speaker"),
        ("a.wav,s,1.0\nb.wav,s,long\n", "line 2: duration"),
        ("a.wav,\n", "line 1: empty path or speaker"),
    ],
)
def test_csv_malformed_lines(tmp_path, text, match):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        open_corpus(tmp_path / "bad.csv")


def test_save_manifest_roundtrip(tmp_path):
    root = tmp_path / "vox"
    make_tree(root)
    c = open_corpus(root, cache=False)
    c.save_manifest(root / "all.csv")
    back = open_corpus(root / "all.csv")
    assert [(u.utt_id, u.speaker, u.path, u.sample_rate) for u in back] == [
        (u.utt_id, u.speaker, u.path, u.sample_rate) for u in c
    ]
    np.testing.assert_allclose(back.durations, c.durations, atol=1e-4)
    # outside the CSV's folder: absolute paths
    c.save_manifest(tmp_path / "elsewhere" / "m.csv")
    assert str(root) in (tmp_path / "elsewhere" / "m.csv").read_text()
    assert [u.path for u in open_corpus(tmp_path / "elsewhere" / "m.csv")] == [u.path for u in c]


# ----------------------------------------------------------------------------- concat


def test_concat_with_and_without_prefixes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_tree(a)
    make_tree(b)
    ca, cb = open_corpus(a), open_corpus(b)
    mixed = Corpus.concat([ca, cb], prefixes=["vox", "cn"])
    assert len(mixed) == 24 and len(mixed.speakers) == 6
    u = mixed.find("cn/id00001/sess0/00000.wav")
    assert u.speaker == "cn/id00001" and u.path == str(b / "id00001/sess0/00000.wav")
    assert mixed.find("vox/id00001/sess0/00000.wav").path == str(a / "id00001/sess0/00000.wav")
    with pytest.raises(DataError, match="duplicate utterance id"):
        Corpus.concat([ca, cb])
    # without prefixes, a speaker in both corpora is one speaker
    write(tmp_path / "c" / "id00001" / "x" / "extra.wav", 1.0)
    merged = Corpus.concat([ca, open_corpus(tmp_path / "c")])
    assert len(merged.speakers) == 3 and len(merged.by_speaker()["id00001"]) == 5
    with pytest.raises(ValueError):
        Corpus.concat([ca, cb], prefixes=["x"])


def test_from_utterances_and_subset(tmp_path):
    utts = [
        Utterance(f"u{i}", f"s{i % 3}", str(tmp_path / f"d{i % 2}" / f"u{i}.wav"), 1.0 + i, 16000)
        for i in range(7)
    ]
    c = Corpus.from_utterances(reversed(utts))
    assert list(c) == sorted(utts, key=lambda u: u.utt_id)
    sub = c.subset([0, 3])
    assert [u.utt_id for u in sub] == ["u0", "u3"] and sub.speakers == ["s0"]
    # new speaker names, one per index in any order (pseudo-speakers), survive a manifest
    named = c.subset([5, 1, 3], ["b", "a", "b"])
    assert [(u.utt_id, u.speaker) for u in named] == [("u1", "a"), ("u3", "b"), ("u5", "b")]
    assert named.speakers == ["a", "b"]
    named.save_manifest(tmp_path / "m.csv")
    back = open_corpus(tmp_path / "m.csv")
    assert [(u.utt_id, u.speaker, u.path) for u in back] == [
        (u.utt_id, u.speaker, u.path) for u in named
    ]
    with pytest.raises(ValueError, match="one new speaker name per distinct index"):
        c.subset([1, 1], ["a", "b"])
