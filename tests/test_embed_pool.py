"""Embedding long lists: worker processes give the single process's rows in order, parts make
a killed run go on where it stopped, and eval --workers scores as one process does."""

import json

import numpy as np
import pytest

from audiocl.app.cli import main
from audiocl.data.synth import synthesize_corpus
from audiocl.errors import DataError
from audiocl.inference.embed import Embedder
from audiocl.inference.embed_pool import EmbedderSpec, EmbedPool, embed_in_parts, parts_dir
from audiocl.io.vad import SpeechGate


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_tiny_model):
    root = tmp_path_factory.mktemp("pool")
    voices = synthesize_corpus(root / "v", speakers=4, utterances=3, duration=(1.0, 1.5))
    files = sorted(str(p) for p in voices.rglob("*.flac"))
    model = make_tiny_model(root / "m.pt")
    return root, voices, files, model


def test_workers_give_the_rows_of_one_process(setup, tmp_path):
    root, _, files, model = setup
    (tmp_path / "bad.flac").write_bytes(b"not audio")
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([*files[:5], str(tmp_path / "bad.flac"), *files[5:]]) + "\n")
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    args = ["embed", "--list", str(listing), "--model", str(model), "--skip-bad", "--quiet"]
    assert main([*args, "--out", str(one)]) == 0
    assert main([*args, "--out", str(two), "--workers", "2", "--chunk", "4"]) == 0
    a, b = np.load(one), np.load(two)
    assert a["ids"].tolist() == b["ids"].tolist() == files  # the bad file left out, order kept
    np.testing.assert_allclose(a["embeddings"], b["embeddings"], rtol=0, atol=1e-5)
    assert not parts_dir(two).exists()  # merged, then removed


class _Dies:
    """An engine that embeds ``lives`` calls, then fails as a killed run would."""

    def __init__(self, embedder, lives):
        self.embedder, self.lives, self.calls = embedder, lives, 0

    def embed_files(self, paths, progress=None, on_error=None):
        self.calls += 1
        if self.calls > self.lives:
            raise KeyboardInterrupt
        return self.embedder.embed_files(paths, progress=progress, on_error=on_error)


def test_a_killed_run_goes_on_from_its_last_part(setup, tmp_path):
    _, _, files, model = setup
    embedder = Embedder.from_file(model, gate=SpeechGate(min_speech=0.0))
    out = tmp_path / "e.npz"
    with pytest.raises(KeyboardInterrupt):
        embed_in_parts(_Dies(embedder, 2), files, files, out, embedder.model_id, chunk=3)
    assert sorted(p.name for p in parts_dir(out).glob("part-*.npz")) == [
        "part-000000.npz",
        "part-000001.npz",
    ]
    again = _Dies(embedder, 99)
    emb, bad = embed_in_parts(again, files, files, out, embedder.model_id, chunk=3)
    assert again.calls == 2 and not bad  # 12 files in parts of 3: only the last two
    np.testing.assert_allclose(emb, embedder.embed_files(files), rtol=0, atol=1e-6)
    with pytest.raises(DataError, match="another run"):
        embed_in_parts(embedder, files[:5], files[:5], out, embedder.model_id, chunk=3)


def test_the_pool_raises_the_first_bad_file_without_skip(setup, tmp_path):
    _, _, files, model = setup
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF")
    from audiocl.errors import AudioError

    with EmbedPool(EmbedderSpec(str(model)), workers=2) as pool:
        with pytest.raises(AudioError, match="bad.wav"):
            pool.embed_files([files[0], str(bad)])
        seen = []
        emb = pool.embed_files([str(bad), files[1]], on_error=lambda i, e: seen.append(i))
    assert seen == [0] and np.isnan(emb[0]).all() and np.isfinite(emb[1]).all()


def test_eval_with_workers_scores_as_one_process(setup, tmp_path):
    _, voices, _, model = setup
    reports = []
    for w in ("1", "2"):
        out = tmp_path / f"eval{w}"
        args = ["eval", "--trials", str(voices / "trials.txt"), "--audio-root", str(voices)]
        assert main([*args, "--model", str(model), "--out", str(out), "--no-cache",
                     "--workers", w, "--quiet", "--min-speech", "0"]) == 0  # fmt: skip
        reports.append(json.loads((out / "metrics.json").read_text()))
    assert reports[0]["raw"]["eer"] == pytest.approx(reports[1]["raw"]["eer"], abs=1e-9)
