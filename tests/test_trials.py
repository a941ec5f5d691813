"""trials.py: VoxCeleb / Kaldi trial lists, malformed lines, generation from a corpus."""

from __future__ import annotations

import pytest

from audiocl.data.corpus import Corpus, Utterance
from audiocl.data.trials import Trial, make_trials, read_trials, write_trials
from audiocl.errors import DataError

VOX = """1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav
0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav
"""


def corpus(speakers: int, per_speaker: int) -> Corpus:
    return Corpus.from_utterances(
        Utterance(f"s{s}/u{u}.wav", f"s{s}", f"/data/s{s}/u{u}.wav", 2.0, 16000)
        for s in range(speakers)
        for u in range(per_speaker)
    )


def test_read_voxceleb_format(tmp_path):
    (tmp_path / "t.txt").write_text("# header comment\n\n" + VOX)
    assert read_trials(tmp_path / "t.txt") == [
        Trial(1, "id10270/x6uYqmx31kE/00001.wav", "id10270/8jEAjG6SegY/00008.wav"),
        Trial(0, "id10270/x6uYqmx31kE/00001.wav", "id10300/ize_eiCFEg0/00003.wav"),
    ]


def test_read_kaldi_format(tmp_path):
    (tmp_path / "trials").write_text("a b target\na  c\tnontarget\n")
    assert read_trials(tmp_path / "trials") == [Trial(1, "a", "b"), Trial(0, "a", "c")]


@pytest.mark.parametrize("fmt", ["voxceleb", "kaldi"])
def test_write_read_roundtrip(tmp_path, fmt):
    trials = [Trial(1, "x/a.wav", "x/b.wav"), Trial(0, "x/a.wav", "y/c.wav")]
    write_trials(tmp_path / "t.txt", trials, fmt=fmt)
    assert read_trials(tmp_path / "t.txt") == trials
    text = (tmp_path / "t.txt").read_text()
    assert text.startswith("1 x/a.wav") if fmt == "voxceleb" else "nontarget" in text
    with pytest.raises(ValueError):
        write_trials(tmp_path / "u.txt", trials, fmt="csv")
    with pytest.raises(ValueError):
        write_trials(tmp_path / "u.txt", [Trial(1, "a b", "c")])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (VOX + "1 only_two\n", r"t.txt:line 3: expected 3 fields"),
        (VOX + "2 a.wav b.wav\n", r"t.txt:line 3: label must be 0 or 1"),
        ("a b target\nc d maybe\n", r"t.txt:line 2: label must be 'target' or 'nontarget'"),
        ("x y z\n", r"t.txt:line 1: neither VoxCeleb"),
        ("\n# nothing\n", "no trials"),
    ],
)
def test_malformed_lines_name_the_line(tmp_path, text, match):
    (tmp_path / "t.txt").write_text(text)
    with pytest.raises(DataError, match=match) as exc:
        read_trials(tmp_path / "t.txt")
    assert "\n" not in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_trials(tmp_path / "nope.txt")


def test_make_all_pairs():
    c = corpus(3, 3)
    trials = make_trials(c)
    assert len(trials) == 9 * 8 // 2
    assert sum(t.label for t in trials) == 3 * 3  # 3 target pairs per speaker
    for t in trials:
        assert t.label == int(c.find(t.enroll).speaker == c.find(t.test).speaker)
        assert t.enroll < t.test  # each unordered pair once, corpus order
    assert len({(t.enroll, t.test) for t in trials}) == len(trials)


def test_make_sampled_nontarget_ratio_seeded():
    c = corpus(10, 4)
    trials = make_trials(c, nontarget_ratio=3.0, seed=1)
    target = [t for t in trials if t.label]
    nontarget = [t for t in trials if not t.label]
    assert len(target) == 10 * 6
    assert len(nontarget) == 180
    assert all(c.find(t.enroll).speaker != c.find(t.test).speaker for t in nontarget)
    assert all(c.find(t.enroll).speaker == c.find(t.test).speaker for t in target)
    assert len({(t.enroll, t.test) for t in trials}) == len(trials)
    assert make_trials(c, nontarget_ratio=3.0, seed=1) == trials
    assert make_trials(c, nontarget_ratio=3.0, seed=2) != trials


def test_make_ratio_capped_and_dense():
    c = corpus(3, 2)  # 3 target pairs, 12 non-target pairs
    assert sum(1 - t.label for t in make_trials(c, nontarget_ratio=100.0)) == 12
    assert sum(1 - t.label for t in make_trials(c, nontarget_ratio=3.0)) == 9  # dense draw
    assert sum(1 - t.label for t in make_trials(c, nontarget_ratio=0.0)) == 0
    with pytest.raises(ValueError):
        make_trials(c, nontarget_ratio=-1.0)
