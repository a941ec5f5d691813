"""Benchmark: speed and memory of embedding extraction with ECAPA-TDNN C=512 (80 mels, 192-dim).

Measures, with the same audio and ``torch.set_num_threads(--threads)`` on both sides:

* real-time factor (seconds of audio per second of compute) of ``audiocl.inference.embed.Embedder``
  (Fbank + ECAPA, equal-length batches, chunking of long audio) for a batch of 3 s
  utterances and a batch of 60 s utterances, with three backends: PyTorch fp32, the exported
  ONNX graph under onnxruntime (``--backend onnx``; needs the onnx extra), and PyTorch with
  bfloat16 autocast on the CPU (the encoder in bf16, the filterbank in fp32); and, in PyTorch
  fp32, SpeechBrain's own layout as ``audiocl import speechbrain`` builds it ("SB layout":
  ``SpeechBrainFbank`` + ``ecapa_speechbrain``, the network SpeechBrain runs, so that column
  against SpeechBrain's is the same model in the two toolkits);
* peak resident memory (``ru_maxrss`` of a fresh process: imports, model and all) of embedding
  one 10-minute file from disk (decode + embed);
* the same with SpeechBrain 1.1.2's ``EncoderClassifier.encode_batch`` path (``Fbank`` ->
  sentence mean normalisation -> ``ECAPA_TDNN(channels=[512]*4 + [1536])``), run through another
  interpreter (``--sb-python``, default ``$AUDIOCL_SB_PYTHON``) because SpeechBrain needs
  torchaudio, which audiocl does not use.

Both models have random-init weights (speed does not depend on the weights; nothing is
downloaded); the audio is seeded noise shaped like speech (compute does not depend on content).
Timings: ``--rounds`` rounds alternate between the two sides (each a fresh process: warm-up, then
``--repeats`` timed passes per case) and the best round of each side is kept, so that both see the same load
on a shared machine (``--omp-wait-policy PASSIVE`` helps when the machine is busy).

    python benchmarks/bench_embed.py [--sb-python /work/sbenv/venv/bin/python] [--threads 2]

Target: audiocl (PyTorch fp32) >= 1.2x SpeechBrain's real-time factor; the 10-minute file under
1 GB peak.
Prints a table, then one JSON line of the figures.

``--models FILE...`` instead times trained or imported model files side by side (the starter,
an imported GE2E, a distilled student), each through ``Embedder.from_file`` in PyTorch on the
same audio, in alternating fresh processes; with file size and parameter count, for the size
and speed targets of a shipped model (issue 25: at most 15 MB, at least 200x real time):

    python benchmarks/bench_embed.py --models audiocl/pretrained/starter.pt ge2e.pt student.pt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

SR = 16000
CASES = {"3s": (3.0, 32), "60s": (60.0, 4)}  # name -> (seconds per utterance, batch size)
LONG_SECONDS = 600.0


def make_audio(seconds: float, count: int, seed: int) -> np.ndarray:
    """``(count, S)`` float32: seeded noise with a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t)
    return (0.05 * rng.standard_normal((count, n)) * env).astype(np.float32)


# ---------------------------------------------------------------------------------- ours


def bench_config(layout: str = "audiocl"):
    """ECAPA C=512, 192-dim; ``layout="speechbrain"``: SpeechBrain's front end and network as
    ``audiocl import speechbrain`` builds them (channels [512] * 4 + [1536], 0-8000 Hz mels)."""
    from audiocl.config import Config

    cfg = Config()
    cfg.model.channels, cfg.model.embed_dim = 512, 192
    if layout == "speechbrain":
        cfg.model.encoder = "ecapa_speechbrain"
        cfg.features.frontend, cfg.features.low_freq = "speechbrain", 0.0
    return cfg


def build_ours(layout: str = "audiocl"):
    import torch

    from audiocl.inference.embed import Embedder
    from audiocl.nn.encoders import build_encoder
    from audiocl.nn.features import build_frontend

    cfg = bench_config(layout)
    torch.manual_seed(0)
    fbank = build_frontend(cfg.features, SR)
    encoder = build_encoder(cfg.model, cfg.features.n_mels)
    return Embedder(fbank, encoder, SR)


VARIANTS = ("torch", "onnx", "bf16", "sb_layout")  # timed in this order in every round


def build_variant(variant: str, threads: int):
    """The Embedder of ``build_ours`` run by ``variant``: PyTorch, onnxruntime, bf16, or
    PyTorch with SpeechBrain's layout."""
    emb = build_ours("speechbrain" if variant == "sb_layout" else "audiocl")
    if variant == "onnx":
        from audiocl.config import to_dict
        from audiocl.inference.embed import Embedder
        from audiocl.interop.export import to_onnx_bytes
        from audiocl.interop.onnx_runtime import OnnxNet
        from audiocl.modelfile import checkpoint

        cfg = bench_config()
        data = checkpoint.make_model_file(emb.encoder.state_dict(), to_dict(cfg), step=0)
        emb = Embedder(None, None, SR, net=OnnxNet(to_onnx_bytes(data), threads=threads))
    return emb


def time_ours(audio_files: dict[str, Path], repeats: int, variant: str, threads: int) -> dict:
    import contextlib

    import torch

    emb = build_variant(variant, threads)
    context = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if variant == "bf16"
        else contextlib.nullcontext
    )
    out = {}
    for name, path in audio_files.items():
        waves = [torch.from_numpy(w) for w in np.load(path)]
        with context():
            emb.embed_waves(waves[:2])  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            with context():
                emb.embed_waves(waves)
            best = min(best, time.perf_counter() - t0)
        out[name] = sum(w.numel() for w in waves) / SR / best
    return out


def time_model(audio_files: dict[str, str], model: str, repeats: int) -> dict:
    """Real-time factor of each case for a model file, and its parameter count."""
    import torch

    from audiocl.inference.embed import Embedder
    from audiocl.io.vad import SpeechGate

    emb = Embedder.from_file(model, gate=SpeechGate(min_speech=0.0))
    params = sum(t.numel() for t in emb.encoder.parameters()) if emb.encoder is not None else 0
    out = {}
    for name, path in audio_files.items():
        waves = [torch.from_numpy(w) for w in np.load(path)]
        emb.embed_waves(waves[:2])  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            emb.embed_waves(waves)
            best = min(best, time.perf_counter() - t0)
        out[name] = sum(w.numel() for w in waves) / SR / best
    return {"rtf": out, "params": params}


def bench_models(models: list[str], files: dict[str, str], args, env: dict) -> int:
    """``--models``: the model files side by side (see the module)."""
    rtf: dict[str, dict[str, float]] = {m: {} for m in models}
    params = {}
    for _ in range(args.rounds):
        for m in models:
            got = run_child(
                [
                    *("--_child", "time_model", "--_arg", json.dumps({"audio": files, "model": m})),
                    *("--threads", str(args.threads), "--repeats", str(args.repeats)),
                ],
                env,
            )
            rtf[m] = {k: max(v, rtf[m].get(k, 0.0)) for k, v in got["rtf"].items()}
            params[m] = got["params"]
    print(
        f"embedding extraction by model file, PyTorch fp32, {args.threads} threads, best of "
        f"{args.rounds} alternating rounds x {args.repeats} pass(es)"
    )
    cases = [f"{count} x {seconds:g} s" for seconds, count in CASES.values()]
    print(f"{'model':<44}{'MB':>7}{'params':>12}" + "".join(f"{c:>14}" for c in cases))
    rows = []
    for m in models:
        mb = Path(m).stat().st_size / 1e6
        cells = "".join(f"{rtf[m][name]:>13.1f}x" for name in CASES)
        print(f"{m[-44:]:<44}{mb:>7.2f}{params[m]:>12,}{cells}")
        rtf_m = {k: round(v, 1) for k, v in rtf[m].items()}
        rows.append({"model": m, "mb": round(mb, 2), "params": params[m], "rtf": rtf_m})
    print(json.dumps({"threads": args.threads, "models": rows}))
    return 0


def rss_mb() -> float:
    """Current resident set size in MB (Linux ``/proc``; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def memory_ours(path: str) -> dict:
    """Runs in a fresh process: peak RSS of loading the model and embedding ``path``."""
    import resource

    emb = build_ours()
    base = rss_mb()
    t0 = time.perf_counter()
    emb.embed_files([path])
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_mb": peak, "before_mb": base, "seconds": seconds}


# --------------------------------------------------------------------------- SpeechBrain

SB_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    import torch
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization
    import speechbrain
    torch.manual_seed(0)
    fbank = Fbank(n_mels=80).eval()
    norm = InputNormalization(norm_type="sentence", std_norm=False).eval()
    model = ECAPA_TDNN(80, lin_neurons=192, channels=[512, 512, 512, 512, 1536]).eval()

    @torch.inference_mode()
    def encode_batch(wavs):  # EncoderClassifier.encode_batch without a download
        lens = torch.ones(wavs.shape[0])
        feats = norm(fbank(wavs), lens)
        return model(feats, lens)

    out = {"version": speechbrain.__version__, "torch": torch.__version__, "rtf": {}}
    if args.get("memory"):
        import soundfile as sf
        status = open("/proc/self/status").read().splitlines()
        base = next(int(x.split()[1]) for x in status if x.startswith("VmRSS:")) / 1024
        t0 = time.perf_counter()
        wave, sr = sf.read(args["memory"], dtype="float32")
        encode_batch(torch.from_numpy(wave)[None])
        out["memory"] = {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                         "before_mb": base, "seconds": time.perf_counter() - t0}
    else:
        for name, path in args["audio"].items():
            wavs = torch.from_numpy(np.load(path))
            encode_batch(wavs[:2])
            best = float("inf")
            for _ in range(args["repeats"]):
                t0 = time.perf_counter()
                encode_batch(wavs)
                best = min(best, time.perf_counter() - t0)
            out["rtf"][name] = wavs.numel() / 16000 / best
    print(json.dumps(out))
    """
)


def run_sb(python: str, payload: dict, env: dict, timeout: float = 900) -> dict:
    proc = subprocess.run(
        [python, "-c", SB_SCRIPT, json.dumps(payload)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"SpeechBrain run failed ({python}): {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_child(argv: list[str], env: dict, timeout: float = 900) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, timeout=timeout, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--sb-python",
        default=os.environ.get("AUDIOCL_SB_PYTHON"),
        help="Python interpreter with speechbrain 1.1.2 + torchaudio (default $AUDIOCL_SB_PYTHON)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1, help="timed passes per case and process")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (best is kept)")
    p.add_argument(
        "--omp-wait-policy",
        default="",
        help="set OMP_WAIT_POLICY for both sides (default: inherit). PASSIVE helps on a busy "
        "shared machine, where OpenMP threads that spin while waiting slow everything down "
        "(SpeechBrain's torch build ran 6x slower with 2 spinning threads under load here)",
    )
    p.add_argument("--no-sb-memory", action="store_true", help="skip SpeechBrain's 10-min run")
    p.add_argument("--models", nargs="+", metavar="FILE", help="time these model files instead")
    p.add_argument("--_child", choices=("time", "memory", "time_model"), help=argparse.SUPPRESS)
    p.add_argument("--_arg", help=argparse.SUPPRESS)
    p.add_argument("--_variant", default="torch", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args._child == "time":
        got = time_ours(json.loads(args._arg), args.repeats, args._variant, args.threads)
        print(json.dumps(got))
        return 0
    if args._child == "memory":
        print(json.dumps(memory_ours(args._arg)))
        return 0
    if args._child == "time_model":
        a = json.loads(args._arg)
        print(json.dumps(time_model(a["audio"], a["model"], args.repeats)))
        return 0

    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for k, (name, (seconds, count)) in enumerate(CASES.items()):
            files[name] = str(Path(tmp) / f"{name}.npy")
            np.save(files[name], make_audio(seconds, count, seed=k))
        env = dict(os.environ)
        if args.omp_wait_policy:
            env["OMP_WAIT_POLICY"] = args.omp_wait_policy
        if args.models:
            return bench_models(args.models, files, args, env)
        long_path = str(Path(tmp) / "long.flac")
        sf.write(long_path, make_audio(LONG_SECONDS, 1, seed=9)[0], SR, subtype="PCM_16")
        sb_note = None
        skipped: set[str] = set()
        if not args.sb_python:
            sb_note = "SpeechBrain skipped: pass --sb-python or set AUDIOCL_SB_PYTHON"
        elif not Path(args.sb_python).exists():
            sb_note = f"SpeechBrain skipped: {args.sb_python} does not exist"
        # Rounds alternate between the two sides so that both see the same machine load; each
        # round is a fresh process (warm-up, then one timed pass per case); best round wins.
        rtf: dict[str, dict[str, float]] = {v: {} for v in VARIANTS}
        notes = []
        sb = None
        base = {"threads": args.threads, "repeats": args.repeats, "audio": files}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                if variant in skipped:
                    continue
                try:
                    got = run_child(
                        [
                            *("--_child", "time", "--_arg", json.dumps(files)),
                            *("--_variant", variant, "--threads", str(args.threads)),
                            *("--repeats", str(args.repeats)),
                        ],
                        env,
                    )
                except RuntimeError as e:
                    if variant == "torch":
                        raise
                    skipped.add(variant)  # the onnx extra is not installed
                    notes.append(f"{variant} skipped: {str(e).splitlines()[-1]}")
                    continue
                rtf[variant] = {k: max(v, rtf[variant].get(k, 0.0)) for k, v in got.items()}
            if sb_note is None:
                try:
                    got = run_sb(args.sb_python, base, env)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    sb_note = f"SpeechBrain skipped: {e}"
                    continue
                if sb is None:
                    sb = got
                sb["rtf"] = {k: max(v, sb["rtf"].get(k, 0.0)) for k, v in got["rtf"].items()}
        ours = rtf["torch"]
        ours_mem = run_child(
            ["--_child", "memory", "--_arg", long_path, "--threads", str(args.threads)], env
        )
        sb_mem = None
        if sb is not None and not args.no_sb_memory:
            try:
                sb_mem = run_sb(args.sb_python, {**base, "memory": long_path}, env)["memory"]
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                sb_note = f"SpeechBrain 10-minute run failed: {e}"

    print(
        f"embedding extraction, ECAPA-TDNN C=512 (random init), {args.threads} threads, "
        f"best of {args.rounds} alternating rounds x {args.repeats} pass(es), "
        f"OMP_WAIT_POLICY={args.omp_wait_policy or '(inherited)'}"
    )
    print(
        f"{'case':<34}{'torch fp32':>12}{'onnxruntime':>13}{'torch bf16':>12}{'SB layout':>11}"
        f"{'SpeechBrain':>13}{'fp32/SB':>9}{'SB layout/SB':>14}"
    )
    result = {"threads": args.threads, "ours_rtf": ours, "sb_rtf": None, "speedup": None}

    def cell(table: dict, name: str, width: int) -> str:
        return f"{table[name]:>{width - 1}.1f}x" if name in table else f"{'-':>{width}}"

    for name, (seconds, count) in CASES.items():
        label = f"RTF, {count} x {seconds:g} s utterances"
        row = f"{label:<34}{cell(ours, name, 12)}{cell(rtf['onnx'], name, 13)}"
        row += cell(rtf["bf16"], name, 12) + cell(rtf["sb_layout"], name, 11)
        if sb:
            r = ours[name] / sb["rtf"][name]
            result["speedup"] = {**(result["speedup"] or {}), name: round(r, 3)}
            row += f"{cell(sb['rtf'], name, 13)}{r:>8.2f}x"
            if name in rtf["sb_layout"]:
                r2 = rtf["sb_layout"][name] / sb["rtf"][name]
                result["sb_layout_speedup"] = {
                    **result.get("sb_layout_speedup", {}),
                    name: round(r2, 3),
                }
                row += f"{r2:>13.2f}x"
        else:
            row += f"{'-':>13}{'-':>9}{'-':>14}"
        print(row)
    sb_peak = f"{sb_mem['peak_mb']:.0f} MB" if sb_mem else "-"
    sb_before = f"{sb_mem['before_mb']:.0f} MB" if sb_mem else "-"
    sb_secs = f"{sb_mem['seconds']:.1f} s" if sb_mem else "-"
    print(f"{'peak RSS, 10-min file (process)':<34}{ours_mem['peak_mb']:>9.0f} MB{sb_peak:>14}")
    print(f"{'  RSS before embedding':<34}{ours_mem['before_mb']:>9.0f} MB{sb_before:>14}")
    print(f"{'  10-min file wall time':<34}{ours_mem['seconds']:>10.1f} s{sb_secs:>14}")
    if sb:
        print(
            f"SpeechBrain {sb['version']} on torch {sb['torch']}; audiocl on torch "
            f"{torch.__version__}"
        )
    for note in [*notes, sb_note]:
        if note:
            print(note)
    result.update(
        ours_rtf={k: round(v, 1) for k, v in ours.items()},
        onnx_rtf={k: round(v, 1) for k, v in rtf["onnx"].items()} or None,
        bf16_rtf={k: round(v, 1) for k, v in rtf["bf16"].items()} or None,
        sb_layout_rtf={k: round(v, 1) for k, v in rtf["sb_layout"].items()} or None,
        sb_rtf={k: round(v, 1) for k, v in sb["rtf"].items()} if sb else None,
        ours_long_peak_mb=round(ours_mem["peak_mb"]),
        ours_long_seconds=round(ours_mem["seconds"], 2),
        sb_long_peak_mb=round(sb_mem["peak_mb"]) if sb_mem else None,
        target_speedup_met=(min(result["speedup"].values()) >= 1.2) if sb else None,
        target_memory_met=ours_mem["peak_mb"] < 1024,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
