"""Benchmark: `audiocl serve` throughput and latency against the embedding compute bound.

A server process (``audiocl serve``, ECAPA-TDNN C=512 with random weights unless ``--model``)
answers ``POST /api/verify`` with two 5 s recordings per request, from 1, 4 and 16 concurrent
clients (threads of one client process, each with its own connection). Reported per level:
requests per second, p50 and p95 latency, and the share of the compute bound, which is the
rate at which the same process type embeds the same two files in a loop without HTTP
(``Embedder.embed_waves``, as the service calls it, ``--threads`` torch threads).

    python benchmarks/bench_serve.py [--requests 48] [--threads 2] [--model M]

Goal: at least 80% of the compute bound at 4 clients. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 16000
LEVELS = (1, 4, 16)


def voice(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    env = 0.5 - 0.5 * np.cos(2 * math.pi * 3.0 * t)
    f0 = 110 + 40 * seed
    w = sum(np.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 8))
    return (0.2 * env * w + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def make_model(path: Path) -> None:
    import torch

    from audiocl.config import Config, to_dict
    from audiocl.modelfile import checkpoint
    from audiocl.nn.encoders import build_encoder

    cfg = Config()
    cfg.model.channels, cfg.model.embed_dim = 512, 192
    torch.manual_seed(0)
    encoder = build_encoder(cfg.model, cfg.features.n_mels).eval()
    checkpoint.save(path, checkpoint.make_model_file(encoder.state_dict(), to_dict(cfg), 0))


def compute_bound(model: str, files: list[Path], seconds: float, threads: int) -> float:
    """Verifications per second without HTTP, in a fresh process like the server's."""
    code = f"""
import time, torch, audiocl
torch.set_num_threads({threads})
m = audiocl.load_model({model!r})
e = m.embedder
waves = [e.load(p) for p in {[str(f) for f in files]!r}]
e.embed_waves(waves)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < {seconds}:
    e.embed_waves(waves); n += 1
print(n / (time.perf_counter() - t0))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model file (default: random ECAPA C=512)")
    p.add_argument("--requests", type=int, default=48, help="verifications per level")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    p.add_argument("--bound-seconds", type=float, default=20.0)
    p.add_argument("--no-batch", action="store_true", help="serve with --no-batch")
    args = p.parse_args(argv)

    import httpx
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or str(tmp / "model.pt")
        if args.model is None:
            make_model(Path(model))
        files = []
        for i in range(2):
            files.append(tmp / f"v{i}.flac")
            sf.write(files[-1], voice(5.0, i), SR)
        blobs = [f.read_bytes() for f in files]
        bound = compute_bound(model, files, args.bound_seconds, args.threads)

        port = free_port()
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), AUDIOCL_HOME=str(tmp / "home"))
        cmd = [sys.executable, "-m", "audiocl", "serve", "--model", model, "--port", str(port)]
        server = subprocess.Popen(
            [*cmd, "--db", str(tmp / "s.db"), *(["--no-batch"] if args.no_batch else [])],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    httpx.get(url + "/api/health", timeout=2).raise_for_status()
                    break
                except httpx.HTTPError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(server.stderr.read().decode()[-2000:]) from None
                    time.sleep(0.2)
            payload = [("audio", ("a.flac", blobs[0])), ("audio2", ("b.flac", blobs[1]))]

            def one(client: httpx.Client) -> float:
                t0 = time.perf_counter()
                r = client.post(url + "/api/verify", files=payload, timeout=300)
                r.raise_for_status()
                return time.perf_counter() - t0

            with httpx.Client() as c:  # warm-up
                one(c)
            rows = []
            for level in LEVELS:
                clients = [httpx.Client() for _ in range(level)]
                per = [args.requests // level + (i < args.requests % level) for i in range(level)]

                def run(i, clients=clients, per=per):
                    return [one(clients[i]) for _ in range(per[i])]

                t0 = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(level) as pool:
                    lat = [x for part in pool.map(run, range(level)) for x in part]
                wall = time.perf_counter() - t0
                for c in clients:
                    c.close()
                rate = len(lat) / wall
                rows.append(
                    {
                        "clients": level,
                        "requests": len(lat),
                        "req_per_s": round(rate, 2),
                        "p50_ms": round(1000 * float(np.percentile(lat, 50)), 1),
                        "p95_ms": round(1000 * float(np.percentile(lat, 95)), 1),
                        "share_of_bound": round(rate / bound, 3),
                    }
                )
        finally:
            server.terminate()
            server.wait(timeout=30)

    name = args.model or "ECAPA-TDNN C=512 (random init)"
    mode = "one thread per request" if args.no_batch else "requests batched"
    print(f"audiocl serve ({mode}), {name}, verify of two 5 s files per request")
    print(f"compute bound (embedding only, no HTTP): {bound:.2f} verifications/s")
    print(f"{'clients':>8}{'req/s':>9}{'p50 ms':>10}{'p95 ms':>10}{'of bound':>10}")
    for r in rows:
        print(
            f"{r['clients']:>8}{r['req_per_s']:>9.2f}{r['p50_ms']:>10.0f}{r['p95_ms']:>10.0f}"
            f"{r['share_of_bound']:>9.0%}"
        )
    at4 = next(r for r in rows if r["clients"] == 4)["share_of_bound"]
    out = {"batch": not args.no_batch, "bound_per_s": round(bound, 2), "rows": rows}
    print(json.dumps({**out, "goal_met": at4 >= 0.8}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
