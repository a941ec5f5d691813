"""Noise/RIR split (audiocl.data.noise_split) and the noisy dev set (scripts/make_noisy_dev.py)."""

import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocl.config import AugmentConfig
from audiocl.data.augment import AddNoise, Reverb, build_augment, load_noise_bank, load_rir_bank
from audiocl.data.noise_split import group_of, split_folder, split_names
from audiocl.data.synth import synthesize_corpus
from audiocl.data.trials import read_trials
from audiocl.errors import ConfigError, DataError
from audiocl.training.recipe import load_config

SR = 16000
# The names of /work/shared/data/noise (names only; the data is not read here).
REAL_NOISE = [
    *(
        f"felix_{n}.flac"
        for n in [
            "air_conditioner",
            "doing_the_dishes",
            "dude_miaowing",
            "exercise_bike",
            "forest_1",
            "forest_2",
            "music",
            "rain",
            "running_tap",
            "water",
            "white_1",
            "white_2",
            "white_3",
            "wind",
        ]
    ),
    *(f"household_aircon_{i}.flac" for i in range(3)),
    *(f"household_dishwasher_{i}.flac" for i in range(4)),
    *(f"household_street_{i}.flac" for i in range(2)),
    *(f"household_vacuuming_{i}.flac" for i in range(3)),
]


def _script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "make_noisy_dev.py"
    spec = importlib.util.spec_from_file_location("make_noisy_dev", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(path: Path, wave: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype(np.float32), SR, subtype="PCM_16")


def _sine(freq: float, n: int = 8000, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / SR)


# ----------------------------------------------------------------------------- split


def test_group_of():
    assert group_of("household_aircon_2.flac") == "household_aircon"
    assert group_of("felix_white_1.flac") == "felix_white"
    assert group_of("felix_rain.flac") == "felix_rain"
    assert group_of("sb_rir1.flac") == "sb_rir1"
    assert group_of("sub/x_10.wav") == "sub/x"


def test_split_is_stable_for_the_real_noise_names():
    """Fixed by SHA-256 of the names: the same in every process (PYTHONHASHSEED) and release."""
    s = split_names(REAL_NOISE)
    assert s.heldout == [
        "felix_forest_1.flac",
        "felix_forest_2.flac",
        "felix_rain.flac",
        "felix_wind.flac",
        "household_dishwasher_0.flac",
        "household_dishwasher_1.flac",
        "household_dishwasher_2.flac",
        "household_dishwasher_3.flac",
    ]


def test_split_covers_all_disjoint_groups_together_order_free():
    s = split_names(REAL_NOISE)
    assert set(s.train) | set(s.heldout) == set(REAL_NOISE)
    assert not set(s.train) & set(s.heldout)
    assert s.train and s.heldout
    held_groups = {group_of(n) for n in s.heldout}
    assert not held_groups & {group_of(n) for n in s.train}
    for _ in range(5):
        shuffled = REAL_NOISE[:]
        random.shuffle(shuffled)
        assert split_names(shuffled) == s
    # 15 groups; 8 of 26 files held out (fraction 0.3 -> 7.8 files)
    assert len(held_groups) == 4 and len(s.heldout) == 8


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.99])
def test_both_sides_non_empty(fraction):
    for names in (["a.flac", "b.flac"], [f"n{i}.flac" for i in range(9)]):
        s = split_names(names, fraction)
        assert s.train and s.heldout


def test_split_needs_two_groups_and_a_valid_fraction():
    with pytest.raises(DataError):
        split_names(["x_0.flac", "x_1.flac"])
    with pytest.raises(ValueError):
        split_names(["a.flac", "b.flac"], 1.0)


def test_split_folder_depends_on_names_only(tmp_path):
    names = ["rain.flac", "tap_0.flac", "tap_1.flac", "wind.flac", "hum.wav", "bus_3.flac"]
    for k, folder in enumerate((tmp_path / "a", tmp_path / "elsewhere" / "b")):
        for j, n in enumerate(sorted(names, reverse=bool(k))):
            _write(folder / n, _sine(200 + 100 * j + 7 * k))
    (tmp_path / "a" / "README.md").write_text("not audio")
    assert split_folder(tmp_path / "a") == split_folder(tmp_path / "elsewhere" / "b")
    assert split_folder(tmp_path / "a") == split_names(names)


def test_bank_parts_are_the_split(tmp_path):
    """``part="train"`` and ``part="heldout"`` load disjoint files that together are all files,
    the two parts of ``split_folder``; every file has its own length, so spans identify files."""
    names = ["a.flac", "b_0.flac", "b_1.flac", "c.flac", "d.flac", "sub/e.wav", "f_2.flac"]
    length = {n: 1600 + 160 * i for i, n in enumerate(names)}
    for i, n in enumerate(names):
        _write(tmp_path / n, _sine(300 + 100 * i, length[n]))
    s = split_folder(tmp_path)
    assert s.train and s.heldout

    def lengths(part):
        return sorted(load_noise_bank(tmp_path, SR, part=part)[1][:, 1].tolist())

    assert lengths("train") == sorted(length[n] for n in s.train)
    assert lengths("heldout") == sorted(length[n] for n in s.heldout)
    assert sorted(lengths("train") + lengths("heldout")) == lengths("all")
    assert len(lengths("all")) == len(names)
    assert load_rir_bank(tmp_path, SR, part="train").shape[0] == len(s.train)
    assert load_rir_bank(tmp_path, SR, part="heldout").shape[0] == len(s.heldout)


def _band_fractions(r: np.ndarray, freqs_hz=(1000, 3000, 5000)) -> dict:
    spec = np.abs(np.fft.rfft(r * np.hanning(len(r)))) ** 2
    freqs = np.fft.rfftfreq(len(r), 1 / SR)
    return {f: spec[np.abs(freqs - f) < 30].sum() / spec.sum() for f in freqs_hz}


def test_build_augment_files_train_uses_only_training_files(data_root):
    """``augment.files: train``: noise is the training 3 kHz sine (never the held-out 1 kHz one),
    reverb uses the training RIRs (ringing at 5 kHz, never the held-out unit impulses)."""
    cfg = AugmentConfig(
        files="train",
        noise_dir="noise",
        rir_dir=str(data_root / "rir"),  # one relative to root, one absolute
        noise_p=1.0,
        reverb_p=1.0,
        speed_p=0.0,
        gain_p=0.0,
        babble_p=0.0,
    )
    chain = build_augment(cfg, data_root, SR)
    assert [type(a) for a in chain.augmentations] == [Reverb, AddNoise]
    reverb, noise = chain.augmentations
    n_split, r_split = split_folder(data_root / "noise"), split_folder(data_root / "rir")
    assert noise.bank[1].shape[0] == len(n_split.train)
    assert reverb.rirs.shape[0] == len(r_split.train)

    # an impulse through the reverb: the training RIRs ring at 5 kHz (a held-out one is identity)
    impulse = torch.zeros(8, 4000)
    impulse[:, 200] = 1.0  # off sample 0, which the Hann window zeroes
    h = reverb(impulse, torch.Generator().manual_seed(1))
    for row in h.numpy().astype(np.float64):
        assert _band_fractions(row)[5000] > 0.3

    # the whole chain on a 200 Hz tone: what is added (beyond the tone) is the 3 kHz sine only
    x = torch.tensor(_sine(200, 8000), dtype=torch.float32).repeat(16, 1)
    y = chain(x, torch.Generator().manual_seed(0))
    for xr, yr in zip(x.numpy().astype(np.float64), y.numpy().astype(np.float64), strict=True):
        r = yr - float(yr @ xr / (xr @ xr)) * xr
        band = _band_fractions(r)
        assert band[3000] > 0.5 and band[1000] < 1e-3, band


def test_augment_files_is_validated():
    assert load_config(None, ["augment.files=train"]).augment.files == "train"
    with pytest.raises(ConfigError, match="augment.files"):
        load_config(None, ["augment.files=bogus"])


# ----------------------------------------------------------------------------- noisy dev set


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Fake data root: a tiny synthetic dev set; held-out noise is a 1 kHz sine, training noise
    a 3 kHz sine; the held-out RIRs are unit impulses, the training ones ring at 5 kHz."""
    root = tmp_path_factory.mktemp("data")
    synthesize_corpus(root / "dev" / "toy", speakers=2, utterances=2, seed=3, duration=(0.7, 1.3))
    noise_names = ["hum.flac", "fan_0.flac", "fan_1.flac", "tap.flac", "wind.flac", "bus.flac"]
    rir_names = ["room1.flac", "room2.flac", "hall.flac", "clap.flac"]
    n_split, r_split = split_names(noise_names), split_names(rir_names)
    for n in noise_names:  # 8000 samples: a whole number of periods, tiles seamlessly
        _write(root / "noise" / n, _sine(1000 if n in n_split.heldout else 3000))
    t = np.arange(4000) / SR
    for n in rir_names:
        if n in r_split.heldout:
            h = np.zeros(4000)
            h[0] = 0.9
        else:
            h = 0.9 * np.exp(-t / 0.05) * np.cos(2 * np.pi * 5000 * t)
        _write(root / "rir" / n, h)
    return root


def _run(data_root, out, seed=0):
    args = ["--data", str(data_root), "--out", str(out), "--set", "dev/toy", "--seed", str(seed)]
    return _script().main(args)


def test_noisy_dev_uses_only_heldout_files(data_root, tmp_path, capsys):
    assert _run(data_root, tmp_path / "o") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    src, dest = data_root / "dev" / "toy", tmp_path / "o" / "toy-noisy"
    assert (dest / "trials.txt").read_bytes() == (src / "trials.txt").read_bytes()
    trials = read_trials(src / "trials.txt")
    files = sorted({t.enroll for t in trials} | {t.test for t in trials})
    assert summary["written"] == len(files) == 4
    assert 0 <= summary["snr_db_min"] <= summary["snr_db_max"] <= 15
    settings = json.loads((dest / "noisy.json").read_text())["settings"]
    assert (
        summary["noise_heldout"] == settings["noise"] == split_folder(data_root / "noise").heldout
    )
    assert summary["rir_heldout"] == settings["rir"] == split_folder(data_root / "rir").heldout
    assert not (tmp_path / "o" / "splits").exists()
    for rel in files:
        x, _ = sf.read(str(src / rel), dtype="float64")
        y, sr = sf.read(str(dest / rel), dtype="float64")
        assert sr == SR and y.shape == x.shape
        assert np.abs(y).max() <= 0.99 + 1e-4
        # identity RIR held out: y = a * x + held-out noise; the rest must be a 1 kHz sine
        a = float(y @ x / (x @ x))
        r = y - a * x
        spec = np.abs(np.fft.rfft(r * np.hanning(len(r)))) ** 2
        freqs = np.fft.rfftfreq(len(r), 1 / SR)
        band = {f: spec[np.abs(freqs - f) < 30].sum() / spec.sum() for f in (1000, 3000, 5000)}
        assert band[1000] > 0.98 and band[3000] < 1e-4 and band[5000] < 1e-4, (rel, band)


def test_noisy_dev_deterministic_and_resumable(data_root, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _run(data_root, a)
    dest = a / "toy-noisy"
    victim = sorted(dest.glob("spk*/*/*.flac"))[0]
    victim.unlink()
    before = {p: p.stat().st_mtime_ns for p in dest.glob("spk*/*/*.flac")}
    capsys.readouterr()
    _run(data_root, a)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == 1 and summary["skipped"] == 3
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    _run(data_root, b)
    for p in dest.glob("spk*/*/*.flac"):
        assert p.read_bytes() == (b / "toy-noisy" / p.relative_to(dest)).read_bytes()
    manifest = json.loads((dest / "noisy.json").read_text())
    assert len(manifest["files"]) == 4
    # another seed into the same folder is refused, a new folder gives other audio
    with pytest.raises(DataError, match="other settings"):
        _run(data_root, a, seed=1)
    _run(data_root, tmp_path / "c", seed=1)
    rel = victim.relative_to(dest)
    assert (tmp_path / "c" / "toy-noisy" / rel).read_bytes() != (dest / rel).read_bytes()
