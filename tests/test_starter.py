"""The starter model shipped in the package: small enough, calibrated, carrying its licence and
attribution, and the default model of a fresh install (until the user trains one)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from audiocl.modelfile import checkpoint
from audiocl.paths import STARTER_MODEL

pytestmark = pytest.mark.skipif(not STARTER_MODEL.is_file(), reason="no starter model shipped")


def test_starter_model_file():
    assert STARTER_MODEL.stat().st_size <= 15 * 2**20
    data = checkpoint.load(STARTER_MODEL)
    assert data["format"] == checkpoint.MODEL_FORMAT
    assert "CC BY 4.0" in data["license"] and "speechocean762" in data["attribution"]
    cal = data["calibration"]
    assert cal and cal["scale"] == "cosine" and "held-out" in cal["trials"]
    assert -1.0 < cal["eer_threshold"] < 1.0
    # what `audiocl adapt` gives an adapted starter: measured centred, so a lower threshold
    adapted = data["adapted_calibration"]
    assert "centred" in adapted["trials"] and adapted["n_target"] == cal["n_target"]
    assert -1.0 < adapted["eer_threshold"] < cal["eer_threshold"]
    # and LLRs: rising with the score, fitted on the same held-out speakers, with a
    # false-accept table reaching 1% (15,120 non-target trials)
    for c in (cal, adapted):
        assert c["llr"]["a"] > 0 and c["llr"]["cllr"] < 0.5
        assert c["far"]["n_nontarget"] == c["n_nontarget"] and c["far"]["min_far"] < 0.01


def test_fresh_install_verifies_with_the_starter_model(tmp_path):
    from audiocl.data.synth import synthesize_corpus

    root = synthesize_corpus(tmp_path / "v", speakers=2, utterances=2, duration=(2.0, 3.0))
    a, b = sorted(str(p) for p in root.rglob("*.flac"))[:2]
    env = {k: v for k, v in os.environ.items() if k not in ("AUDIOCL_STARTER", "AUDIOCL_MODEL")}
    env["AUDIOCL_HOME"] = str(tmp_path / "fresh-home")  # nothing trained there
    out = subprocess.run(
        [sys.executable, "-m", "audiocl", "verify", a, b, "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode in (0, 1), out.stdout + out.stderr  # a decision, not "unknown" (4)
    import json

    result = json.loads(out.stdout)
    assert result["model"]["source"].startswith("starter model")
    assert result["decision"] in ("same", "different") and np.isfinite(result["score"])


def test_adapted_starter_keeps_a_decision(tmp_path, capsys):
    """`audiocl adapt` on the starter gives a model that still decides: its adapted thresholds."""
    import json

    from audiocl.app.cli import main
    from audiocl.data.synth import synthesize_corpus

    root = synthesize_corpus(tmp_path / "v", speakers=5, utterances=4, duration=(1.0, 2.0))
    out = tmp_path / "adapted.pt"
    assert main(["adapt", str(root), "--model", str(STARTER_MODEL), "--out", str(out)]) == 0
    capsys.readouterr()
    a, b = sorted(str(p) for p in root.rglob("*.flac"))[:2]
    rc = main(["verify", a, b, "--model", str(out), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert rc in (0, 1) and result["decision"] in ("same", "different")
    adapted = checkpoint.load(STARTER_MODEL)["adapted_calibration"]
    m = adapted["llr"]  # the default rule: the Bayes threshold of the adapted LLRs at prior 0.5
    assert result["threshold"] == pytest.approx(-m["b"] / m["a"])
    assert result["llr"] == pytest.approx(m["a"] * result["score"] + m["b"], abs=1e-6)
    assert "Bayes threshold at prior 0.5" in result["threshold_source"]
