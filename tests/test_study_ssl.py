"""studies/study_ssl.py end to end on a tiny synthetic copy of the shared data's layout: a row
trains for its step budget, is scored on the clean and noisy dev sets, is not run again, and
``--rescore`` scores it again."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from audiocl.data.synth import synthesize_corpus

SCRIPT = Path(__file__).resolve().parents[1] / "studies" / "study_ssl.py"
SETS = ["librispeech-tc100", "arabic-commands", "fsdd", "speechocean762"]
TINY = [
    "model.channels=32",
    "model.res2net_scale=2",
    "model.embed_dim=16",
    "objective.head_hidden=32",
    "objective.head_dim=16",
    "data.crop_seconds=0.5",
    "data.batch_size=4",
    "augment.enabled=false",
    "train.threads=1",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    for i, name in enumerate(SETS):
        synthesize_corpus(
            root / "train" / name,
            speakers=3,
            utterances=2,
            seed=5,
            duration=(0.8, 1.2),
            speaker_offset=10 * i,
            trials=False,
        )
    synthesize_corpus(
        root / "dev" / "hsb-commonvoice", speakers=3, utterances=2, seed=5, speaker_offset=100
    )
    return root


def study(data, out, *extra):
    rates = out.parent / "rates.json"
    rates.write_text(json.dumps({"seconds_per_step": {"clip": 20.0}}))
    cmd = [sys.executable, str(SCRIPT), "--study", "objectives", "--only", "clip"]
    cmd += ["--data", str(data), "--minutes", "1", "--rates", str(rates), "--out", str(out)]
    cmd += ["--noisy", str(data / "dev" / "hsb-commonvoice"), *extra]
    for s in TINY:
        cmd += ["--set", s]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_row_trains_its_budget_and_is_scored_on_both_dev_sets(data, tmp_path):
    out = tmp_path / "study"
    printed = study(data, out)
    row = json.loads((out / "clip" / "results.json").read_text())
    assert row["steps"] == 3  # 1 minute at 20 s a step
    for key in ("clean", "noisy"):
        assert 0.0 <= row[key]["eer"] <= 1.0 and 0.0 <= row[key]["min_dcf_0.01"] <= 1.0
    assert "| clip |" in printed
    assert json.loads(printed.strip().splitlines()[-1])["results"][0]["row"] == "clip"
    # a finished row is not trained again; --rescore scores it again and keeps its training
    model = out / "clip" / "model.pt"
    before = model.stat().st_mtime_ns
    row["clean"]["eer"] = -1.0
    (out / "clip" / "results.json").write_text(json.dumps(row))
    study(data, out)
    assert json.loads((out / "clip" / "results.json").read_text())["clean"]["eer"] == -1.0
    study(data, out, "--rescore")
    again = json.loads((out / "clip" / "results.json").read_text())
    assert again["clean"]["eer"] >= 0.0 and again["steps"] == 3
    assert model.stat().st_mtime_ns == before
