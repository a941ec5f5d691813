import contextlib
import multiprocessing as mp
import sqlite3

import numpy as np
import pytest

from audiocl.errors import StoreError
from audiocl.inference.store import SpeakerStore

D = 16


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _emb(seed, n=None):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, D) if n else D).astype(np.float32)


def _dump(path):
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return (
            conn.execute("SELECT * FROM speakers ORDER BY name").fetchall(),
            conn.execute("SELECT * FROM meta ORDER BY key").fetchall(),
        )


def test_enroll_add_replace_normalised_mean(tmp_path):
    store = SpeakerStore(tmp_path / "s.db", "model-a")
    e1, e2, e3 = _emb(1, 2), _emb(2), _emb(3, 3)
    r = store.enroll("alice", e1, files=["a1.wav", "a2.wav"])
    assert r.count == 2 and r.files == ("a1.wav", "a2.wav") and r.dim == D
    assert r.model_id == "model-a" and r.embedding.dtype == np.float32
    np.testing.assert_allclose(r.embedding, _unit(_unit(e1).sum(0)), atol=1e-6)
    r = store.enroll("alice", e2, files=["a3.wav"], mode="add")
    assert r.count == 3 and r.files == ("a1.wav", "a2.wav", "a3.wav")
    np.testing.assert_allclose(r.embedding, _unit(_unit(e1).sum(0) + _unit(e2)), atol=1e-6)
    assert np.linalg.norm(r.embedding) == pytest.approx(1.0, abs=1e-6)
    created = r.created
    r = store.enroll("alice", e3, files=["b.wav"], mode="replace")
    assert r.count == 3 and r.files == ("b.wav",) and r.created == created
    np.testing.assert_allclose(r.embedding, _unit(_unit(e3).sum(0)), atol=1e-6)
    with pytest.raises(StoreError, match="mode"):
        store.enroll("alice", e2, mode="merge")
    with pytest.raises(StoreError, match="dim"):
        store.enroll("alice", np.ones(D + 1))
    with pytest.raises(StoreError, match="NaN"):
        store.enroll("bob", np.full(D, np.nan))
    with pytest.raises(StoreError, match="zeros"):
        store.enroll("bob", np.zeros(D))
    with pytest.raises(StoreError, match="name"):
        store.enroll(" bob", e2)


def test_list_get_remove_rename_and_reopen(tmp_path):
    path = tmp_path / "deep" / "dir" / "s.db"
    store = SpeakerStore(path, "m")
    for i, name in enumerate(["carol", "alice", "bob"]):
        store.enroll(name, _emb(i), files=[f"{name}.wav"])
    assert [r.name for r in store.list()] == ["alice", "bob", "carol"]
    assert len(store) == 3 and "bob" in store and "dave" not in store
    store.rename("bob", "robert")
    assert [r.name for r in store.list()] == ["alice", "carol", "robert"]
    assert store.get("robert").files == ("bob.wav",)
    with pytest.raises(StoreError, match="unknown speaker 'bob'"):
        store.get("bob")
    with pytest.raises(StoreError, match="already exists"):
        store.rename("alice", "carol")
    with pytest.raises(StoreError, match="unknown"):
        store.rename("nobody", "x")
    removed = store.remove("carol")
    assert removed.name == "carol"
    with pytest.raises(StoreError, match="unknown"):
        store.remove("carol")
    # Reopen: everything persisted, byte for byte.
    again = SpeakerStore(path, "m")
    assert [r.name for r in again.list()] == ["alice", "robert"]
    np.testing.assert_array_equal(again.get("alice").embedding, store.get("alice").embedding)
    assert again.get("alice").to_dict()["files"] == ["alice.wav"]
    # list/get/rename/remove need no model
    assert [r.name for r in SpeakerStore(path).list()] == ["alice", "robert"]


def test_identify_and_score(tmp_path):
    store = SpeakerStore(tmp_path / "s.db", "m")
    centers = {f"spk{i}": _emb(100 + i) for i in range(8)}
    for name, c in centers.items():
        store.enroll(name, c)
    probe = centers["spk3"] + 0.1 * _emb(999)
    ranked = store.identify(probe, top=3)
    assert len(ranked) == 3 and ranked[0][0] == "spk3"
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)
    expected = {n: float(_unit(c) @ _unit(probe)) for n, c in centers.items()}
    for name, s in ranked:
        assert s == pytest.approx(expected[name], abs=1e-6)
    assert len(store.identify(probe, top=50)) == 8
    assert store.score("spk3", probe) == pytest.approx(expected["spk3"], abs=1e-6)
    assert -1.0 <= store.score("spk0", probe) <= 1.0
    with pytest.raises(StoreError, match="unknown speaker"):
        store.score("nobody", probe)
    with pytest.raises(StoreError):
        store.identify(np.ones(D + 2))
    with pytest.raises(StoreError, match="no speakers"):
        SpeakerStore(tmp_path / "empty.db", "m").identify(probe)


def test_other_model_is_refused(tmp_path):
    path = tmp_path / "s.db"
    SpeakerStore(path, "model-a").enroll("alice", _emb(1))
    other = SpeakerStore(path, "model-b")
    for call in (
        lambda: other.identify(_emb(2)),
        lambda: other.score("alice", _emb(2)),
        lambda: other.enroll("bob", _emb(3)),
    ):
        with pytest.raises(StoreError) as info:
            call()
        assert "model-a" in str(info.value) and "model-b" in str(info.value)
    assert [r.name for r in other.list()] == ["alice"]  # managing still works
    other.remove("alice")
    other.enroll("bob", _emb(3))  # empty store: a new model may move in
    assert SpeakerStore(path, "model-b").identify(_emb(3))[0][0] == "bob"
    with pytest.raises(StoreError, match="without a model"):
        SpeakerStore(path).identify(_emb(3))


def test_failed_transaction_leaves_db_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    store = SpeakerStore(path, "m")
    store.enroll("alice", _emb(1), files=["a.wav"])
    before = _dump(path)

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    # _set_meta runs after the speaker row has been written, inside the same transaction.
    monkeypatch.setattr(SpeakerStore, "_set_meta", staticmethod(boom))
    with pytest.raises(RuntimeError):
        store.enroll("alice", _emb(2), files=["b.wav"], mode="add")
    with pytest.raises(RuntimeError):
        store.enroll("bob", _emb(3))
    monkeypatch.undo()
    assert _dump(path) == before
    assert store.get("alice").count == 1 and "bob" not in store
    with pytest.raises(StoreError):
        store.rename("alice", "")  # refused before any change
    assert _dump(path) == before


def test_default_path(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOCL_HOME", str(tmp_path / "home"))
    store = SpeakerStore(None, "m")
    assert store.path == tmp_path / "home" / "speakers.db"
    store.enroll("x", _emb(0))
    assert store.path.is_file()


def test_not_a_database(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="bad.db"):
        SpeakerStore(bad, "m")
    with pytest.raises(StoreError, match="directory"):
        SpeakerStore(tmp_path, "m")


N_WORKERS, N_SHARED = 4, 10


def _worker(path, worker, start):
    start.wait()
    store = SpeakerStore(path, "m")
    for j in range(N_SHARED):
        store.enroll("shared", _emb(10_000 + 100 * worker + j), files=[f"w{worker}_{j}.wav"])
        store.enroll(f"w{worker}_s{j}", _emb(worker * 100 + j), files=[f"own{j}.wav"])


def test_concurrent_enrolment_loses_nothing(tmp_path):
    path = str(tmp_path / "s.db")
    # No store yet: the workers also race to create the file and its schema.
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(N_WORKERS)  # all workers begin together, once imported
    procs = [ctx.Process(target=_worker, args=(path, w, start)) for w in range(N_WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * N_WORKERS
    store = SpeakerStore(path, "m")
    names = {r.name for r in store.list()}
    assert names == {"shared"} | {f"w{w}_s{j}" for w in range(N_WORKERS) for j in range(N_SHARED)}
    shared = store.get("shared")
    assert shared.count == N_WORKERS * N_SHARED
    assert sorted(shared.files) == sorted(
        f"w{w}_{j}.wav" for w in range(N_WORKERS) for j in range(N_SHARED)
    )
    total = sum(
        _unit(_emb(10_000 + 100 * w + j)) for w in range(N_WORKERS) for j in range(N_SHARED)
    )
    np.testing.assert_allclose(shared.embedding, _unit(total), atol=1e-6)
