"""Files saved by an earlier audiocl still load: a ``model.pt`` and a ``speakers.db`` made before
the package moved into subpackages (``scripts/make_compat_fixtures.py``) give the same model id,
embedding, verification and identification as when they were written."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import audiocl

FIXTURES = Path(__file__).parent / "fixtures" / "compat"
SAMPLES = Path(__file__).parents[1] / "sample_audio"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def saved(tmp_path):
    """The saved files, copied so that nothing a test does can change the fixtures."""
    for name in ("model.pt", "speakers.db"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    return tmp_path


def test_saved_model_embeds_as_when_it_was_written(saved):
    model = audiocl.load_model(saved / "model.pt")
    assert model.model_id == EXPECTED["model_id"]
    emb = model.embed(SAMPLES / "alice_2.flac")
    np.testing.assert_allclose(emb, EXPECTED["embedding_alice_2"], atol=1e-5)


def test_saved_store_verifies_and_identifies_as_when_it_was_written(saved):
    model = audiocl.load_model(saved / "model.pt")
    store = model.store(saved / "speakers.db")
    assert sorted(r.name for r in store.list()) == ["alice", "bob"]
    got = store.verify("alice", SAMPLES / "alice_2.flac").to_dict()
    want = EXPECTED["verify_alice_2"]
    assert got["score"] == pytest.approx(want["score"], abs=1e-5)
    assert {k: got[k] for k in ("same", "threshold", "threshold_source", "decision")} == {
        k: want[k] for k in ("same", "threshold", "threshold_source", "decision")
    }
    ranked = store.identify(SAMPLES / "bob_2.flac")
    assert [n for n, _ in ranked] == [n for n, _ in EXPECTED["identify_bob_2"]]
    np.testing.assert_allclose(
        [s for _, s in ranked], [s for _, s in EXPECTED["identify_bob_2"]], atol=1e-5
    )


def test_public_surface():
    """What the README documents: ``import audiocl`` without torch, its lazy names, the CLI."""
    import subprocess
    import sys

    code = (
        "import json, sys, audiocl; assert 'torch' not in sys.modules; "
        "print(json.dumps(audiocl.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names = {"load_model", "Model", "Speakers", "Verification", "SpeakerStore", "Embedder"}
    assert names <= set(json.loads(out.stdout))
    for name in names:
        assert callable(getattr(audiocl, name))
    help_text = subprocess.run(
        [sys.executable, "-m", "audiocl", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("train", "enroll", "verify", "identify", "eval", "import", "export"):
        assert command in help_text
