"""Synthetic voices: determinism, layout, distinct speakers, durations, trial list, CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import soundfile as sf

from audiocl.app.cli import main
from audiocl.data.synth import (
    synth_channel,
    synth_voice_params,
    synthesize_corpus,
    synthesize_utterance,
)
from audiocl.errors import DataError


def _voice(i: int):
    return synth_voice_params(np.random.default_rng([0, i, 0]))


def test_utterance_length_level_and_determinism():
    voice = _voice(0)
    a = synthesize_utterance(voice, np.random.default_rng(1), 1.3, 16000)
    b = synthesize_utterance(voice, np.random.default_rng(1), 1.3, 16000)
    c = synthesize_utterance(voice, np.random.default_rng(2), 1.3, 16000)
    assert a.shape == (round(1.3 * 16000),) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.isfinite(a).all() and np.abs(a).max() <= 1.0
    rms_db = 20 * np.log10(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
    assert -33 < rms_db < -17


@pytest.mark.parametrize("sample_rate", [8000, 22050, 48000])
def test_other_sample_rates(sample_rate):
    voice = _voice(3)
    ch = synth_channel(np.random.default_rng(0), sample_rate)
    w = synthesize_utterance(voice, np.random.default_rng(0), 0.7, sample_rate, ch)
    assert w.shape == (round(0.7 * sample_rate),)
    assert np.isfinite(w).all() and np.abs(w).max() > 0


def _ltas(w: np.ndarray, n_fft: int = 512) -> np.ndarray:
    """Long-term average log spectrum of the louder frames, mean removed."""
    frames = np.lib.stride_tricks.sliding_window_view(w, n_fft)[::160] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    energy = power.sum(1)
    spec = np.log(power[energy > np.median(energy)].mean(0) + 1e-10)
    return spec - spec.mean()


def test_speakers_are_distinct_and_consistent():
    """Two utterances of one voice (same channel) are more alike than utterances of two voices,
    yet not near-identical."""
    specs = {}
    for s in range(4):
        voice, ch = _voice(s), synth_channel(np.random.default_rng([0, s, 1]))
        for u in range(3):
            w = synthesize_utterance(voice, np.random.default_rng([s, u]), 1.5, 16000, ch)
            specs[s, u] = _ltas(w)

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    same = [
        cos(specs[s, a], specs[s, b])
        for s in range(4)
        for a, b in itertools.combinations(range(3), 2)
    ]
    diff = [
        cos(specs[s, a], specs[t, b])
        for s, t in itertools.combinations(range(4), 2)
        for a in range(3)
        for b in range(3)
    ]
    assert np.mean(same) > np.mean(diff) + 0.05
    assert max(same) < 0.999
    params = [_voice(i) for i in range(6)]
    assert len({round(v.f0, 3) for v in params}) == 6
    assert len({round(v.vtl, 4) for v in params}) == 6


def _read_corpus(root):
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.flac"))
    return files, {f: sf.read(root / f, dtype="float32")[0] for f in files}


def test_corpus_layout_durations_and_trials(tmp_path):
    out = synthesize_corpus(
        tmp_path / "c", speakers=3, utterances=4, seed=5, duration=(0.8, 1.2), speaker_offset=7
    )
    files, waves = _read_corpus(out)
    expected = [f"spk{s:04d}/s{u // 2}/u{u:03d}.flac" for s in (7, 8, 9) for u in range(4)]
    assert files == expected
    for f in files:
        info = sf.info(out / f)
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert 0.8 - 1e-3 <= info.duration <= 1.2 + 1e-3
    lines = (out / "trials.txt").read_text().splitlines()
    rows = [line.split() for line in lines]
    assert all(len(r) == 3 and r[0] in ("0", "1") for r in rows)
    targets = [r for r in rows if r[0] == "1"]
    nontargets = [r for r in rows if r[0] == "0"]
    assert len(targets) == 3 * 6  # all pairs within each speaker
    all_nontargets = 12 * 11 // 2 - len(targets)
    assert len(nontargets) == min(3 * len(targets), all_nontargets) == 48
    for label, a, b in rows:
        assert a in waves and b in waves and a != b
        assert (a.split("/")[0] == b.split("/")[0]) == (label == "1")
    pairs = [frozenset((a, b)) for _, a, b in rows]
    assert len(set(pairs)) == len(pairs)
    stats = json.loads((out / "synth.json").read_text())
    assert stats["files"] == 12 and stats["real_time_factor"] > 0


def test_corpus_deterministic_and_stable_under_more_speakers(tmp_path):
    kw = dict(utterances=2, seed=3, duration=(0.5, 0.7), trials=False)
    a = synthesize_corpus(tmp_path / "a", speakers=2, **kw)
    b = synthesize_corpus(tmp_path / "b", speakers=2, **kw)
    c = synthesize_corpus(tmp_path / "c", speakers=3, **kw)
    d = synthesize_corpus(tmp_path / "d", speakers=1, speaker_offset=1, **kw)
    e = synthesize_corpus(tmp_path / "e", speakers=2, **{**kw, "seed": 4})
    fa, wa = _read_corpus(a)
    fb, wb = _read_corpus(b)
    fc, wc = _read_corpus(c)
    fd, wd = _read_corpus(d)
    fe, we = _read_corpus(e)
    assert not (a / "trials.txt").exists()
    assert fa == fb and all(np.array_equal(wa[f], wb[f]) for f in fa)
    assert set(fa) < set(fc) and all(np.array_equal(wa[f], wc[f]) for f in fa)
    assert fd == [f for f in fa if f.startswith("spk0001/")]
    assert all(np.array_equal(wa[f], wd[f]) for f in fd)
    assert fe == fa and not any(
        wa[f].shape == we[f].shape and np.array_equal(wa[f], we[f]) for f in fa
    )


def test_rerun_replaces_and_foreign_folder_is_refused(tmp_path):
    kw = dict(seed=1, duration=(0.3, 0.4))
    out = synthesize_corpus(tmp_path / "c", speakers=3, utterances=4, **kw)
    synthesize_corpus(out, speakers=2, utterances=2, **kw)
    files, _ = _read_corpus(out)
    assert files == [
        "spk0000/s0/u000.flac",
        "spk0000/s1/u001.flac",
        "spk0001/s0/u000.flac",
        "spk0001/s1/u001.flac",
    ]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        synthesize_corpus(foreign, speakers=1, utterances=2)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_open_corpus_matches_trial_ids(tmp_path):
    from audiocl.data.corpus import open_corpus
    from audiocl.data.trials import read_trials

    out = synthesize_corpus(tmp_path / "c", speakers=3, utterances=3, seed=2, duration=(0.3, 0.4))
    corpus = open_corpus(out, cache=False)
    assert len(corpus) == 9 and corpus.speakers == ["spk0000", "spk0001", "spk0002"]
    ids = {u.utt_id for u in corpus}
    trials = read_trials(out / "trials.txt")
    assert all(t.enroll in ids and t.test in ids for t in trials)


def test_corpus_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        synthesize_corpus(tmp_path / "x", speakers=0)
    with pytest.raises(ValueError):
        synthesize_corpus(tmp_path / "x", speakers=2, utterances=1)
    with pytest.raises(ValueError):
        synthesize_corpus(tmp_path / "x", speakers=2, duration=(2.0, 1.0))


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(
        [
            "synth",
            str(out),
            "--speakers",
            "3",
            "--utterances",
            "3",
            "--seed",
            "1",
            "--min-seconds",
            "0.5",
            "--max-seconds",
            "0.6",
            "--speaker-offset",
            "4",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "real time" in text and "9 utterances" in text
    assert (out / "spk0004" / "s0" / "u000.flac").is_file()
    assert (out / "spk0005" / "s1" / "u002.flac").is_file()
    # 9 target pairs; all 27 non-target pairs (3x would be more than exist)
    assert len((out / "trials.txt").read_text().splitlines()) == 9 + 27
    assert main(["synth", str(tmp_path / "bad"), "--min-seconds", "3", "--max-seconds", "1"]) == 2
    assert main(["synth", str(tmp_path / "bad"), "--utterances", "1"]) == 2
