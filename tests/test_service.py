"""`audiocl serve`: the JSON API over the Python API, its errors, token, upload limit, and a
load test with concurrent clients against a real server."""

import concurrent.futures
import contextlib
import socket
import threading
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

import audiocl  # noqa: E402
from audiocl.app.cli import main  # noqa: E402
from audiocl.app.service import create_app  # noqa: E402
from audiocl.data.synth import synthesize_corpus  # noqa: E402
from audiocl.inference.store import SpeakerStore  # noqa: E402

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    root = synthesize_corpus(
        tmp_path_factory.mktemp("voices"), speakers=3, utterances=3, duration=(1.5, 2.0)
    )
    return {
        spk.name: sorted(spk.rglob("*.flac"))
        for spk in sorted(p for p in root.iterdir() if p.is_dir())
    }


@pytest.fixture
def served(tmp_path, make_tiny_model):
    from fastapi.testclient import TestClient

    model = audiocl.load_model(make_tiny_model(tmp_path / "m.pt"))
    app = create_app(model, tmp_path / "s.db", token=TOKEN, max_upload_mb=1.0)
    with TestClient(app) as client:
        yield client, model, tmp_path / "s.db"


def upload(path, field="audio", name=None):
    return (field, (name or path.name, path.read_bytes(), "audio/flac"))


def test_enroll_verify_identify_and_manage(served, voices):
    client, model, db = served
    (s1, f1), (s2, f2), _ = voices.items()
    h = client.get("/api/health").json()
    assert h["model_id"] == model.model_id and h["embed_dim"] == 16 and h["speakers"] == 0
    assert h["calibrated"] is False and h["auth"] is True

    r = client.post(
        "/api/enroll", data={"name": "alice"}, files=[upload(f1[0]), upload(f1[1])], headers=AUTH
    )
    assert r.status_code == 200, r.text
    assert r.json()["speaker"]["count"] == 2
    assert (
        client.post(
            "/api/enroll", data={"name": "bob"}, files=[upload(f2[0])], headers=AUTH
        ).status_code
        == 200
    )
    # the store is the same SQLite store the command line uses
    assert [r.name for r in SpeakerStore(db, model.model_id).list()] == ["alice", "bob"]

    pair = client.post("/api/verify", files=[upload(f1[2]), upload(f1[0], "audio2")]).json()
    expected = model.verify(str(f1[2]), str(f1[0]))
    assert pair["score"] == pytest.approx(expected.score, abs=1e-5)
    assert pair["decision"] == "unknown" and pair["threshold"] is None
    decided = client.post(
        "/api/verify", data={"threshold": "-1.0"}, files=[upload(f1[2]), upload(f2[0], "audio2")]
    ).json()
    assert decided["decision"] == "same" and decided["threshold_source"] == "argument"
    against = client.post("/api/verify", data={"speaker": "alice"}, files=[upload(f1[2])]).json()
    store_score = model.store(db).verify("alice", str(f1[2])).score
    assert against["score"] == pytest.approx(store_score, abs=1e-5)

    ranked = client.post("/api/identify", data={"top": "2"}, files=[upload(f1[2])]).json()
    assert [c["name"] for c in ranked["candidates"]] == [
        n for n, _ in model.store(db).identify(str(f1[2]), top=2)
    ]

    # a name already taken is a conflict with the store (409); an invalid name is a bad request
    r = client.post("/api/speakers/bob/rename", data={"new": "alice"}, headers=AUTH)
    assert r.status_code == 409 and "already exists" in r.json()["error"]
    r = client.post("/api/speakers/bob/rename", data={"new": " bob"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["exit_code"] == 5
    assert "invalid speaker name" in r.json()["error"]
    r = client.post("/api/speakers/bob/rename", data={"new": "robert"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["speaker"]["name"] == "robert"
    assert client.delete("/api/speakers/robert", headers=AUTH).status_code == 200
    assert [s["name"] for s in client.get("/api/speakers").json()["speakers"]] == ["alice"]
    page = client.get("/")
    assert page.status_code == 200 and "audiocl" in page.text and "/static/app.js" in page.text
    assert "fetch(" in client.get("/static/app.js").text


def test_verify_takes_the_operating_point(tmp_path, make_tiny_model, voices):
    """The model's thresholds per operating point, as ``audiocl verify --operating-point``."""
    from fastapi.testclient import TestClient

    from audiocl.modelfile.checkpoint import set_calibration

    path = make_tiny_model(tmp_path / "m.pt")
    cal = {"eer_threshold": -1.0, "min_dcf_0.01_threshold": 1.5, "min_dcf_0.05_threshold": 0.0}
    set_calibration(path, {"scale": "cosine", "threshold": -1.0, **cal})
    model = audiocl.load_model(path)
    (_, f1), (_, f2), _ = voices.items()
    files = [upload(f1[0]), upload(f2[0], "audio2")]
    with TestClient(create_app(model, tmp_path / "s.db")) as client:
        default = client.post("/api/verify", files=files).json()
        strict = client.post(
            "/api/verify", data={"operating_point": "min_dcf_0.01"}, files=files
        ).json()
        bad = client.post("/api/verify", data={"operating_point": "eer2"}, files=files)
    assert (default["decision"], default["threshold"]) == ("same", -1.0)
    assert (strict["decision"], strict["threshold"]) == ("different", 1.5)
    assert "min_dcf_0.01 threshold" in strict["threshold_source"]
    assert default["score"] == pytest.approx(strict["score"])
    assert bad.status_code == 400 and bad.json()["exit_code"] == 2
    assert "operating_point" in bad.json()["error"]


def test_verify_and_identify_report_evidence(tmp_path, make_tiny_model, voices):
    """A model with an LLR calibration: the service gives the LLR and P(same) at the asked prior,
    decides at the Bayes threshold or at a false-accept rate, and refuses what it cannot tell."""
    from fastapi.testclient import TestClient

    from audiocl.modelfile.checkpoint import set_calibration
    from audiocl.scoring.calibration import fit_calibration

    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.6, 0.1, 300), rng.normal(0.0, 0.1, 3000)])
    labels = np.concatenate([np.ones(300), np.zeros(3000)])
    path = make_tiny_model(tmp_path / "m.pt")
    fitted = fit_calibration(scores, labels)
    set_calibration(path, {"scale": "cosine", "threshold": 0.3, "eer_threshold": 0.3, **fitted})
    model = audiocl.load_model(path)
    a, b = fitted["llr"]["a"], fitted["llr"]["b"]
    (_, f1), (_, f2), _ = voices.items()
    files = [upload(f1[0]), upload(f2[0], "audio2")]
    with TestClient(create_app(model, tmp_path / "s.db")) as client:
        r = client.post("/api/verify", data={"prior": "0.1"}, files=files).json()
        far = client.post("/api/verify", data={"far": "0.05"}, files=files).json()
        low = client.post("/api/verify", data={"far": "0.0001"}, files=files)
        bad = client.post("/api/verify", data={"prior": "1"}, files=files)
        client.post("/api/enroll", data={"name": "alice"}, files=[upload(f1[1])])
        ranked = client.post("/api/identify", data={"prior": "0.3"}, files=[upload(f1[0])]).json()
    assert r["llr"] == pytest.approx(a * r["score"] + b, abs=1e-6) and r["prior"] == 0.1
    assert r["p_same"] == pytest.approx(1 / (1 + 9 * np.exp(-r["llr"])))
    assert "Bayes threshold at prior 0.1" in r["threshold_source"]
    assert far["threshold"] == pytest.approx(np.quantile(scores[300:], 0.95), abs=0.01)
    assert "false-accept rate 0.05" in far["threshold_source"]
    assert low.status_code == 400 and "lowest it can estimate" in low.json()["error"]
    assert bad.status_code == 400
    top = ranked["candidates"][0]
    assert ranked["prior"] == 0.3 and top["llr"] == pytest.approx(a * top["score"] + b, abs=1e-6)


def test_errors_are_json_with_exit_codes(served, voices, tmp_path):
    client, model, db = served
    (_, f1), *_ = voices.items()
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, dtype=np.float32), 16000)

    r = client.post("/api/enroll", data={"name": "x"}, files=[upload(f1[0])])
    assert r.status_code == 401 and r.json()["exit_code"] == 2
    assert client.delete("/api/speakers/x").status_code == 401
    assert client.post("/api/speakers/x/rename", data={"new": "y"}).status_code == 401
    bad_token = {"Authorization": "Bearer nope"}
    assert client.delete("/api/speakers/x", headers=bad_token).status_code == 401

    r = client.post("/api/verify", files=[upload(silent), upload(f1[0], "audio2")])
    assert r.status_code == 422
    assert r.json() == {
        "error": r.json()["error"],
        "exit_code": 3,
    } and r.json()["error"].startswith("audio:silent.wav: no speech found")
    garbage = tmp_path / "garbage.flac"
    garbage.write_bytes(b"not audio" * 100)
    r = client.post("/api/identify", files=[upload(garbage)])
    assert r.status_code in (409, 422)  # no speakers yet (409) is checked before decoding
    r = client.post("/api/verify", data={"speaker": "nobody"}, files=[upload(f1[0])])
    assert r.status_code == 404 and "unknown speaker 'nobody'" in r.json()["error"]
    r = client.post("/api/verify", files=[upload(f1[0])])
    assert r.status_code == 400 and "audio2" in r.json()["error"]
    r = client.post("/api/enroll", data={"name": "x"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["exit_code"] == 2 and "audio" in r.json()["error"]
    # a client file name never becomes a server path
    r = client.post(
        "/api/enroll",
        data={"name": "eve"},
        files=[upload(f1[0], name="../../../tmp/evil.flac")],
        headers=AUTH,
    )
    assert r.status_code == 200
    assert list(SpeakerStore(db, model.model_id).get("eve").files) == ["audio:evil.flac"]
    # uploads over the limit are refused from their Content-Length
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros(16000 * 40, dtype=np.float32), 16000)
    r = client.post("/api/verify", files=[upload(big), upload(big, "audio2")])
    assert r.status_code == 413 and "1 MB" in r.json()["error"]


def test_store_of_another_model_is_refused(tmp_path, make_tiny_model, voices):
    from fastapi.testclient import TestClient

    other = audiocl.load_model(make_tiny_model(tmp_path / "other.pt", seed=1))
    db = tmp_path / "s.db"
    (name, files), *_ = voices.items()
    other.store(db).enroll("carol", str(files[0]))
    model = audiocl.load_model(make_tiny_model(tmp_path / "m.pt"))
    with TestClient(create_app(model, db)) as client:
        r = client.post("/api/identify", files=[upload(files[1])])
        assert r.status_code == 409 and r.json()["exit_code"] == 5


def test_serve_refuses_other_hosts_without_a_token(capsys):
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "without a token" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serving(app):
    """``(port, url)`` of ``app`` served by uvicorn on loopback, in a thread."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield port, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_load_concurrent_enrolments_and_verifications(tmp_path, make_tiny_model, voices):
    """24 enrolments and 200 verifications from 8 concurrent clients against a real server:
    every enrolment is kept and every request answered."""
    import httpx

    model = audiocl.load_model(make_tiny_model(tmp_path / "m.pt"))
    db = tmp_path / "s.db"
    files = [f for fs in voices.values() for f in fs]
    blobs = {f: f.read_bytes() for f in files}

    def enroll(i):
        f = files[i % len(files)]
        with httpx.Client(base_url=url, timeout=60) as c:
            return c.post(
                "/api/enroll",
                data={"name": f"spk{i:02d}"},
                files=[("audio", (f.name, blobs[f]))],
                headers=AUTH,
            )

    def verify(i):
        a, b = files[i % len(files)], files[(i * 7 + 1) % len(files)]
        with httpx.Client(base_url=url, timeout=60) as c:
            return c.post(
                "/api/verify", files=[("audio", (a.name, blobs[a])), ("audio2", (b.name, blobs[b]))]
            )

    app = create_app(model, db, token=TOKEN)
    with _serving(app) as (_, url), concurrent.futures.ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(enroll, i) for i in range(24)]
        jobs += [pool.submit(verify, i) for i in range(200)]
        answers = [j.result() for j in jobs]
    assert [r.status_code for r in answers] == [200] * 224
    scores = [r.json()["score"] for r in answers[24:]]
    assert all(-1.0 <= s <= 1.0 for s in scores)
    names = sorted(r.name for r in SpeakerStore(db, model.model_id).list())
    assert names == [f"spk{i:02d}" for i in range(24)]


def test_batcher_merges_concurrent_requests_and_keeps_their_rows():
    from audiocl.app.service import Batcher

    calls = []

    def embed_waves(waves):
        calls.append(len(waves))
        if any(w[0] < 0 for w in waves):
            raise ValueError("bad wave")
        return np.stack([np.full(3, w[0]) for w in waves])

    batcher = Batcher(embed_waves, wait=0.2)
    jobs = [[np.array([float(10 * i + k)]) for k in range(i + 1)] for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(batcher, jobs))
    for i, rows in enumerate(results):  # every request gets its own rows, in order
        np.testing.assert_array_equal(rows[:, 0], [10 * i + k for k in range(i + 1)])
    assert sum(calls) == 10 and len(calls) < 4  # requests shared forward passes
    with pytest.raises(ValueError, match="bad wave"):
        batcher([np.array([-1.0])])


def test_hostile_headers_get_4xx_not_500(served, voices):
    """Found fuzzing the service by hand: a non-ASCII token (``compare_digest`` refuses non-ASCII text)
    and a Content-Length that is not a number were tracebacks and 500s."""
    client, _, _ = served
    r = client.delete("/api/speakers/x", headers={"Authorization": "Bearer \u00e9t\u00e9".encode()})
    assert r.status_code == 401 and r.json()["exit_code"] == 2
    r = client.post("/api/identify", content=b"x", headers={"Content-Length": "12abc"})
    assert r.status_code == 400 and "Content-Length" in r.json()["error"]


def test_trickled_and_stalled_uploads_time_out(tmp_path, make_tiny_model, voices):
    """Slow loris: a client that announces a body and then sends it a few bytes at a time, or
    stops, gets a 408 within the limits and the connection is closed; the server stays up."""
    model = audiocl.load_model(make_tiny_model(tmp_path / "m.pt"))
    app = create_app(model, tmp_path / "s.db", upload_timeout=1.5, upload_idle=0.5)
    head = (
        b"POST /api/identify HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
    )
    with _serving(app) as (port, url):
        for pause in (2.0, 0.2):  # stalls; trickles (under the idle limit, past the total)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(head)
                start, answer = time.monotonic(), b""
                while b"\r\n\r\n" not in answer and time.monotonic() - start < 8:
                    conn.settimeout(pause)
                    try:
                        answer += conn.recv(4096)
                    except TimeoutError:
                        conn.sendall(b"x")
                waited = time.monotonic() - start
                while chunk := conn.recv(4096):  # the server closes the connection
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 408"), (pause, answer[:200])
            assert b"upload too slow" in answer and waited < 4, (pause, waited)
        import httpx

        a, b = voices[sorted(voices)[0]][:2]
        r = httpx.post(url + "/api/verify", files=[upload(a), upload(b, "audio2")])
        assert r.status_code == 200, r.text


def test_uploads_do_not_need_the_system_temp_folder(served, voices, monkeypatch, tmp_path):
    """Uploads go to a folder beside the store, so a missing or read-only system temp folder
    does not turn requests into 500s; nothing is left behind there."""
    import tempfile

    client, _, db = served
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-temp"))
    f = voices[sorted(voices)[0]][0]
    r = client.post("/api/enroll", data={"name": "ann"}, files=[upload(f)], headers=AUTH)
    assert r.status_code == 200, r.text
    assert list((db.parent / ".audiocl-uploads").iterdir()) == []
