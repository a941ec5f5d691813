"""kill -9 at random moments of every writer (issue 28): what it writes is afterwards its old
state or its new one, whole and readable, never a mix; and two processes enrolling into one
store at once lose no update.

One harness process (this file run as a script) imports torch and audiocl once, with one
thread, and ``fork``s a child per kill (a fresh process would spend ~2 s importing torch): the
child runs the writer in a loop, each iteration writing a distinguishable state ``t`` (``t + 1``
files enrolled, calibrated on ``trials-t.txt``, ...) and logging ``t`` once it returned. The
test kills it after a seeded random delay, spanning two iterations or, every other kill, inside
one of the iteration's atomic writes, then checks that the output holds the last logged state
or the one being written, and at the end that the writer still works. ``audiocl export`` gets
a stand-in graph (``_onnx_stand_in``): tracing takes 14 s, and the write is what is tested.

``AUDIOCL_FAULT_KILLS`` kills per writer (default 4), ``AUDIOCL_FAULT_SEED`` the delays' seed.
"""

import contextlib
import functools
import json
import os
import random
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from audiocl.modelfile import checkpoint

KILLS = int(os.environ.get("AUDIOCL_FAULT_KILLS", "4"))
SEED = int(os.environ.get("AUDIOCL_FAULT_SEED", "0"))
N_MODELS = 3
STORE_ROUNDS = 30


def _cli(*args) -> None:
    from audiocl.app.cli import main

    code = main([str(a) for a in args])
    assert code == 0, f"audiocl {' '.join(map(str, args))}: exit code {code}"


def _png_whole(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")


@functools.cache
def _encoder(path: str) -> dict:
    return checkpoint.load(path)["encoder"]


def _same_weights(state: dict, ref: dict) -> bool:
    return state.keys() == ref.keys() and all(torch.equal(state[k], ref[k]) for k in ref)


def _model(ctx, i) -> str:
    return ctx["models"][i % N_MODELS]


# ------------------------------------------------------------------------------------ writers
# Each writer: ``write(ctx, t)`` (in the harness or a child) leaves state ``t``; ``observe(ctx)``
# (in the test) reads the whole output, asserting what must hold of any state, and returns what
# tells the states apart, which ``expect(ctx, t)`` predicts.


class Enroll:
    """``audiocl enroll`` one more file into a SQLite store: state t holds t + 1 files."""

    def write(self, ctx, t):
        audio = ctx["audio"][t % len(ctx["audio"])]
        _cli("enroll", audio, "--name", "alice", "--db", ctx["db"], "--model", ctx["models"][0])

    def observe(self, ctx):
        with contextlib.closing(sqlite3.connect(ctx["db"])) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            rows = conn.execute("SELECT name, embedding, emb_sum, count, files FROM speakers")
            rows = rows.fetchall()
        assert [r[0] for r in rows] == ["alice"], rows
        _, emb, total, count, files = rows[0]
        files = json.loads(files)
        audio = ctx["audio"]
        assert files == [str(Path(audio[j % len(audio)]).absolute()) for j in range(count)]
        total = np.frombuffer(total, dtype=np.float64)
        emb = np.frombuffer(emb, dtype=np.float32)
        np.testing.assert_allclose(emb, total / np.linalg.norm(total), atol=1e-6)
        return count - 1

    def expect(self, ctx, t):
        return t


class Calibrate:
    """``audiocl eval --calibrate``: state t is the model calibrated on ``trials-t.txt``; the
    report written after it (scores, metrics, plots) must be whole too."""

    def write(self, ctx, t):
        trials = Path(ctx["dir"]) / f"trials-{t}.txt"
        trials.write_text(Path(ctx["trials"]).read_text())
        report = Path(ctx["dir"]) / "report"
        audio = ["--trials", trials, "--audio-root", ctx["voices"], "--out", report]
        cache = ["--cache", Path(ctx["dir"]) / "cache", "--quiet", "--json"]
        _cli("eval", *audio, *cache, "--calibrate", "--model", ctx["out"])

    @staticmethod
    def _tag(cal) -> int:
        return int(Path(cal["trials"]).stem.split("-")[1])

    def observe(self, ctx):
        data = checkpoint.load(ctx["out"])
        assert data["format"] == checkpoint.MODEL_FORMAT
        assert _same_weights(data["encoder"], _encoder(ctx["models"][0])), "weights changed"
        cal = data["calibration"]
        assert np.isfinite(cal["llr"]["a"]) and np.isfinite(cal["eer_threshold"])
        report = Path(ctx["dir"]) / "report"
        metrics = json.loads((report / "metrics.json").read_text())
        assert self._tag(metrics["calibration"]) <= self._tag(cal)
        lines = (report / "scores.txt").read_text().splitlines()
        assert len(lines) == 1 + metrics["n_trials"] and all(len(x.split()) == 4 for x in lines[1:])
        for png in ("det.png", "scores.png", "calibration.png"):
            assert _png_whole(report / png), f"{png} is not a whole PNG"
        return self._tag(cal)

    def expect(self, ctx, t):
        return t


class Adapt:
    """``audiocl adapt``: state t is centred on the first 20 + t % 4 recordings."""

    def write(self, ctx, t):
        audio = ctx["audio"][: 20 + t % 4]
        _cli("adapt", *audio, "--out", ctx["out"], "--model", ctx["models"][0], "--quiet")

    def observe(self, ctx):
        data = checkpoint.load(ctx["out"])
        base = checkpoint.load(ctx["models"][0])
        assert data["format"] == checkpoint.MODEL_FORMAT
        assert _same_weights(data["encoder"], base["encoder"]), "weights changed"
        domain = data["domain"]
        assert domain["base_model_id"] == base["model_id"] != data["model_id"]
        assert domain["mean"].shape == (16,) and torch.isfinite(domain["mean"]).all()
        return domain["files"]

    def expect(self, ctx, t):
        return 20 + t % 4


class Average:
    """``audiocl average`` of models t and t + 1 (of three); the weights are checked."""

    def write(self, ctx, t):
        _cli("average", _model(ctx, t), _model(ctx, t + 1), "--out", ctx["out"], "--json")

    def observe(self, ctx):
        data = checkpoint.load(ctx["out"])
        files = [e["file"] for e in data["averaged_from"]]
        a, b = (_encoder(f) for f in files)
        mean = {k: ((a[k].double() + b[k].double()) / 2).to(a[k].dtype) for k in a}
        mean.update({k: b[k] for k in b if not b[k].is_floating_point()})
        assert _same_weights(data["encoder"], mean), f"not the mean of {files}"
        return tuple(Path(f).name for f in files)

    def expect(self, ctx, t):
        return tuple(Path(_model(ctx, t + i)).name for i in range(2))


class Ensemble:
    """``audiocl ensemble`` of two models with weights 1 and t + 1."""

    def write(self, ctx, t):
        members = ctx["models"][:2]
        _cli("ensemble", *members, "--weights", 1, t + 1, "--out", ctx["out"], "--json")

    def observe(self, ctx):
        data = checkpoint.load(ctx["out"])
        for i, member in enumerate(ctx["models"][:2]):
            prefix = f"members.{i}."
            mine = {k[len(prefix) :]: v for k, v in data["encoder"].items() if k.startswith(prefix)}
            assert _same_weights(mine, _encoder(member)), f"member {i} differs"
        return round(data["ensemble_weights"][1], 9)

    def expect(self, ctx, t):
        return round((t + 1) / (t + 2), 9)


def _onnx_stand_in(data: dict) -> bytes:
    """A real ONNX file of the model's size and metadata, standing in for the traced graph:
    torch.onnx takes 14 s per export here, and what is under test is export's write."""
    from onnx import TensorProto, helper, numpy_helper

    from audiocl.interop.export import metadata

    seed = int(data["model_id"], 16)
    weights = np.random.default_rng(seed).standard_normal(1 << 20).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["waveform"], ["embedding"])],
        "stand_in",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, "S"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, "S"])],
        [numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(model, metadata(data))
    return model.SerializeToString()


class Export:
    """``audiocl export`` of model t % 2 (its graph made by ``_onnx_stand_in``)."""

    def prepare(self, ctx):
        from audiocl.interop import export

        export.to_onnx_bytes = _onnx_stand_in

    def write(self, ctx, t):
        _cli("export", ctx["models"][t % 2], "--onnx", ctx["out"], "--no-check", "--json")

    def observe(self, ctx):
        import onnx

        model = onnx.load(ctx["out"])
        onnx.checker.check_model(model)
        assert list(model.graph.initializer[0].dims) == [1 << 20]
        return {p.key: p.value for p in model.metadata_props}["audiocl_model_id"]

    def expect(self, ctx, t):
        return checkpoint.load(ctx["models"][t % 2])["model_id"]


def _cache_rows(keys) -> np.ndarray:
    """The embedding the cache test stores under each ``base-i`` / ``new-i`` key."""
    idx = np.array([int(k.split("-")[1]) * (1 if k[0] == "b" else -1) for k in keys])
    return (idx[:, None] + np.arange(16) / 16).astype(np.float32)


class Cache:
    """The embedding cache: 20000 rows, and state t adds row ``new-t`` (one save each)."""

    BASE = 20_000

    def write(self, ctx, t):
        from audiocl.inference.embedding_cache import EmbeddingCache

        cache = EmbeddingCache(ctx["dir"], "fault-cache")
        keys = [f"base-{i}" for i in range(self.BASE)] if t == 0 else []
        for key, row in zip([*keys, f"new-{t}"], _cache_rows([*keys, f"new-{t}"]), strict=True):
            cache.put(key, row)
        cache.save()

    def observe(self, ctx):
        with np.load(ctx["out"], allow_pickle=False) as z:
            keys, emb, model_id = z["keys"].tolist(), z["embeddings"], str(z["model_id"])
        assert model_id == "fault-cache" and len(keys) == len(emb) == len(set(keys))
        np.testing.assert_array_equal(emb, _cache_rows(keys))
        new = len(keys) - self.BASE
        assert set(keys) == {f"base-{i}" for i in range(self.BASE)} | {
            f"new-{i}" for i in range(new)
        }
        return new - 1

    def expect(self, ctx, t):
        return t


_TRAINER = {}


class Checkpoints:
    """``Trainer.save()``: state t is step t + 1 (a checkpoint, model.pt, pruning to 2); a
    save removes the temp files of the saves killed before it."""

    cleans_temps = True

    def prepare(self, ctx):
        from audiocl.training.recipe import load_config
        from audiocl.training.trainer import Trainer

        voices = Path(ctx["voices"])
        cfg = load_config(
            None,
            [
                f"data.root={voices.parent}",
                f"data.sources=[{{path: {voices.name}, labelled: true}}]",
                "model.channels=32",
                "model.res2net_scale=2",
                "model.embed_dim=16",
                "features.n_mels=40",
                "data.num_workers=0",
                "train.keep_last=2",
                "train.keep_freed_memory=false",
            ],
        )
        _TRAINER["trainer"] = Trainer(cfg, Path(ctx["dir"]) / "run", quiet=True)

    def write(self, ctx, t):
        trainer = _TRAINER["trainer"]
        trainer.step = t + 1
        trainer.save()

    def observe(self, ctx):
        from audiocl.training.trainer import find_checkpoints

        run = Path(ctx["dir"]) / "run"
        step = checkpoint.load(run / "model.pt")["step"]
        found = find_checkpoints(run)
        # more than keep_last where kills struck between a save and its pruning: the next prunes
        assert len(found) >= 2, [p.name for p in found]
        for p in found:
            data = checkpoint.load(p)
            assert data["format"] == checkpoint.CHECKPOINT_FORMAT
            assert p.name == f"ckpt-{data['step']:07d}.pt" and "optimizer" in data
        assert checkpoint.load(found[-1])["step"] in (step, step + 1)
        return step - 1

    def expect(self, ctx, t):
        return t


def _vector(name: str) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(name.encode())).standard_normal(16)


class Concurrent:
    """One of two processes sharing a store (``ctx["who"]``: A or B), each op in a store opened
    afresh as the CLI does; logs every committed op. A adds to s0..s9 and t0..t4; B adds to
    s0..s9 and removes then re-enrolls (``replace``) t0..t4."""

    def write(self, ctx, t):
        from audiocl.errors import UnknownSpeakerError
        from audiocl.inference.store import SpeakerStore

        who = ctx["who"]
        time.sleep(max(0.0, ctx["start_at"] - time.time()))
        with open(ctx["ops"], "a", encoding="utf-8") as log:
            for r in range(STORE_ROUNDS):
                for name in [f"s{i}" for i in range(10)] + [f"t{i}" for i in range(5)]:
                    file = f"{who}-{r}-{name}"
                    mode = "replace" if who == "B" and name[0] == "t" else "add"
                    if mode == "replace":
                        with contextlib.suppress(UnknownSpeakerError):
                            SpeakerStore(ctx["db"], "m").remove(name)
                    SpeakerStore(ctx["db"], "m").enroll(name, _vector(file), [file], mode)
                    log.write(f"{time.time()} {name} {file}\n")
                    log.flush()


WRITERS = {
    "enroll": Enroll(),
    "eval_calibrate": Calibrate(),
    "adapt": Adapt(),
    "average": Average(),
    "ensemble": Ensemble(),
    "export": Export(),
    "embedding_cache": Cache(),
    "checkpoints": Checkpoints(),
    "concurrent": Concurrent(),
}

# ------------------------------------------------------------------------------------ harness
# Every atomic write in the harness and its children goes through ``_watched``, which only
# reports: each write's duration (in the warm-up) and, in a child, a byte on a FIFO as each
# begins, so that every other kill can be aimed inside a write (a random delay seldom hits the
# 20 ms write of a 1.5 s iteration).
_WATCH = {"fifo": None, "seconds": None}


def _watch_writes() -> None:
    """Route ``atomic_path`` through ``_watched`` in every audiocl module that has it."""
    import audiocl.fileio

    original = _WATCH.setdefault("original", audiocl.fileio.atomic_path)
    for name, module in list(sys.modules.items()):
        if name.startswith("audiocl") and getattr(module, "atomic_path", None) is original:
            module.atomic_path = _watched


@contextlib.contextmanager
def _watched(path):
    if _WATCH["fifo"] is not None:
        os.write(_WATCH["fifo"], b".")
    start = time.monotonic()
    with _WATCH["original"](path) as tmp:
        yield tmp
    if _WATCH["seconds"] is not None:
        _WATCH["seconds"].append(time.monotonic() - start)


def _child(msg) -> None:
    """In the forked child: run ``msg["writer"]`` for states ``first, first + 1, ...``, logging
    each state once written; never returns."""
    code = 1
    try:
        out = os.open(msg["log"] + ".out", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        _watch_writes()
        if msg.get("fifo"):
            _WATCH["fifo"] = os.open(msg["fifo"], os.O_WRONLY)
        writer = WRITERS[msg["writer"]]
        for t in range(msg["first"], msg["first"] + msg["count"]):
            writer.write(msg["ctx"], t)
            with open(msg["log"], "a") as f:
                f.write(f"{t}\n")
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _handle(msg) -> dict:
    op = msg["op"]
    if op == "warm":  # prepare, then states 0 and 1 here: imports done, the second timed
        writer = WRITERS[msg["writer"]]
        if hasattr(writer, "prepare"):
            writer.prepare(msg["ctx"])
        writer.write(msg["ctx"], 0)
        _watch_writes()
        _WATCH["seconds"] = writes = []
        start = time.monotonic()
        writer.write(msg["ctx"], 1)
        _WATCH["seconds"] = None
        return {"seconds": time.monotonic() - start, "writes": writes}
    if op == "fork":
        pid = os.fork()
        if pid == 0:
            _child(msg)
        return {"pid": pid}
    if op == "reap":
        _, status = os.waitpid(msg["pid"], 0)
        killed = os.WIFSIGNALED(status)
        return {
            "signal": os.WTERMSIG(status) if killed else None,
            "code": os.waitstatus_to_exitcode(status),
        }
    return {}


def _serve() -> None:
    """The harness: JSON requests on stdin, one JSON reply each on the original stdout (the
    writers' own output goes to stderr)."""
    torch.set_num_threads(1)  # no thread pool: a fork after one could hang
    torch.set_num_interop_threads(1)
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    while line := sys.stdin.readline():
        msg = json.loads(line)
        try:
            reply = _handle(msg)
        except Exception:
            reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")


class Harness:
    def __init__(self, folder: Path):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.update(HOME=str(folder), AUDIOCL_HOME=str(folder / "audiocl"), AUDIOCL_STARTER="")
        env.pop("AUDIOCL_MODEL", None)
        self.errors = folder / "harness.err"
        with open(self.errors, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
                cwd=folder,
            )

    def call(self, timeout: float = 300.0, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            tail = self.errors.read_text()[-3000:]
            raise AssertionError(f"fault harness gave no answer to {msg['op']}:\n{tail}")
        reply = json.loads(line)
        assert "error" not in reply, f"fault harness, {msg['op']}:\n{reply.get('error')}"
        return reply

    def close(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_model):
    """Three tiny models, 24 recordings of 4 voices with trials, the harness."""
    from audiocl.data.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("faults")
    models = [str(make_tiny_model(root / f"m{i}.pt", seed=i)) for i in range(N_MODELS)]
    voices = synthesize_corpus(root / "voices", speakers=4, utterances=6, duration=(1.0, 1.5))
    harness = Harness(root)
    common = {
        "models": models,
        "voices": str(voices),
        "trials": str(voices / "trials.txt"),
        "audio": sorted(str(p) for p in voices.rglob("*.flac")),
    }
    yield harness, root, common
    harness.close()


def _context(root: Path, common: dict, name: str) -> dict:
    folder = root / name
    folder.mkdir()
    outs = {"enroll": "s.db", "eval_calibrate": "model.pt", "embedding_cache": "fault-cache.npz"}
    out = folder / outs.get(name, "out.onnx" if name == "export" else "out.pt")
    if name == "eval_calibrate":
        shutil.copy(common["models"][0], out)
    return {**common, "dir": str(folder), "out": str(out), "db": str(out)}


def _observe(writer, ctx):
    try:
        return writer.observe(ctx)
    except Exception as e:  # what was found is the failure's message
        return f"unreadable or inconsistent: {type(e).__name__}: {e}"


def _await_writes(fd: int, n: int, timeout: float = 120.0) -> None:
    """Until ``n`` atomic writes have begun (a byte each on the FIFO ``fd``)."""
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < n and select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        seen += len(os.read(fd, n - seen))


def _logged(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def _output(log: Path) -> str:
    out = Path(f"{log}.out")
    return out.read_text()[-3000:] if out.exists() else ""


@pytest.mark.parametrize("name", [n for n in WRITERS if n != "concurrent"])
def test_kill_9_leaves_the_old_or_the_new_state(world, name):
    if name == "export":
        pytest.importorskip("onnx")
    harness, root, common = world
    writer, ctx = WRITERS[name], _context(root, common, name)
    warm = harness.call(op="warm", writer=name, ctx=ctx)
    state = 1
    assert _observe(writer, ctx) == writer.expect(ctx, state)
    rng = random.Random(f"{SEED}:{name}")
    for k in range(KILLS):
        log = root / name / f"kill-{k}.log"
        fifo = root / name / f"kill-{k}.fifo"
        os.mkfifo(fifo)
        began = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # RDWR: no EOF before the child opens
        msg = {"writer": name, "ctx": ctx, "first": state + 1, "count": 10**6, "log": str(log)}
        pid = harness.call(op="fork", fifo=str(fifo), **msg)["pid"]
        if k % 2 and warm["writes"]:  # aimed: a random moment of a random write of the state
            j = rng.randrange(len(warm["writes"]))
            delay = rng.uniform(0.0, warm["writes"][j])
            where = f"{name}: kill {k + 1}, {delay:.4f} s into atomic write {j + 1} of state"
            _await_writes(began, j + 1)
        else:  # anywhere in the first two states' writing
            delay = rng.uniform(0.0, 2.0 * warm["seconds"])
            where = f"{name}: kill {k + 1}, {delay:.3f} s after the start of state"
        where += f" {state + 1}"
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        os.close(began)
        status = harness.call(op="reap", pid=pid)
        assert status["signal"] == signal.SIGKILL, f"{where}: ended first:\n{_output(log)}"
        done = _logged(log)
        last = done[-1] if done else state
        found, old, new = (
            _observe(writer, ctx),
            writer.expect(ctx, last),
            writer.expect(ctx, last + 1),
        )
        assert found in (old, new), (
            f"{where} (state {last} written, {last + 1} being written): found {found!r}, "
            f"expected {old!r} or {new!r}"
        )
        state = last + 1 if found == new else last
    log = root / name / "after.log"
    msg = {"writer": name, "ctx": ctx, "first": state + 1, "count": 1, "log": str(log)}
    status = harness.call(op="reap", pid=harness.call(op="fork", **msg)["pid"])
    assert status["code"] == 0, f"{name}: a run after {KILLS} kills failed:\n{_output(log)}"
    assert _observe(writer, ctx) == writer.expect(ctx, state + 1), f"{name}: after the kills"
    leftovers = list((root / name).rglob(".*.tmp*"))
    assert len(leftovers) <= (0 if getattr(writer, "cleans_temps", False) else KILLS), (
        f"{name}: temp files left: {leftovers}"
    )


def test_two_processes_enrolling_and_removing_lose_no_update(world):
    harness, root, common = world
    folder = root / "concurrent"
    folder.mkdir()
    start_at = time.time() + 0.3
    pids = {}
    for who in "AB":
        ctx = {"who": who, "db": str(folder / "s.db"), "ops": str(folder / f"{who}.ops")}
        ctx["start_at"] = start_at
        log = str(folder / f"{who}.log")
        msg = {"writer": "concurrent", "ctx": ctx, "first": 0, "count": 1, "log": log}
        pids[who] = harness.call(op="fork", **msg)["pid"]
    for who, pid in pids.items():
        status = harness.call(op="reap", pid=pid)
        assert status["code"] == 0, f"process {who} failed:\n{_output(folder / f'{who}.log')}"
    ops = {}
    for who in "AB":
        lines = [x.split() for x in (folder / f"{who}.ops").read_text().splitlines()]
        ops[who] = [(float(t), name, file) for t, name, file in lines]
        assert len(ops[who]) == 15 * STORE_ROUNDS, f"process {who} committed {len(lines)} ops"
    a_times, b_times = ([t for t, _, _ in ops[w]] for w in "AB")
    assert max(a_times[0], b_times[0]) < min(a_times[-1], b_times[-1]), "they did not overlap"
    from audiocl.inference.store import SpeakerStore

    store = SpeakerStore(folder / "s.db", "m")
    assert sorted(r.name for r in store.list()) == [f"s{i}" for i in range(10)] + [
        f"t{i}" for i in range(5)
    ]
    for record in store.list():
        mine = {w: [f for _, n, f in ops[w] if n == record.name] for w in "AB"}
        files = list(record.files)
        if record.name[0] == "s":  # every add of both, each process's in its order
            assert sorted(files) == sorted(mine["A"] + mine["B"]), f"{record.name}: {files}"
            for w in "AB":
                assert [f for f in files if f.startswith(w)] == mine[w], record.name
        else:  # B's last re-enrolment, then the adds of A that followed it
            tail = files[1:]
            assert files[0] == mine["B"][-1] and tail == mine["A"][len(mine["A"]) - len(tail) :], (
                f"{record.name}: {files}"
            )
        assert record.count == len(files), record.name
        total = sum(v / np.linalg.norm(v) for v in map(_vector, files))
        np.testing.assert_allclose(record.embedding, total / np.linalg.norm(total), atol=1e-6)


if __name__ == "__main__":
    _serve()
