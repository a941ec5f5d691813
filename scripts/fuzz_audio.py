"""Coverage-guided fuzzing of the audio loader (``audiocl.io.audio.info`` and ``load``) with
atheris (libFuzzer for Python): ``pip install atheris``.

Each input is one file: its first byte picks the suffix (wav, flac, ogg, mp3, m4a, mp4, webm,
aac, opus), the rest is the file's bytes. The property: ``info`` and ``load`` return a waveform
or raise ``AudioError``; any other exception, a crash or a hang past ``-timeout`` seconds is a
finding. The seeds are small valid files of every format the loader reads, made here.

    python scripts/fuzz_audio.py --seconds 600 --out /tmp/fuzz_audio

Findings land in ``--out``/findings (libFuzzer's ``crash-*``/``timeout-*`` files, each the
input that failed); copy a fixed one into ``tests/fuzz_corpus/audio/`` (named ``<x>.<suffix>``,
the suffix byte stripped, see ``--export``) so ``tests/test_fuzz_inputs.py`` replays it on every
run. Ends with one JSON line: inputs run, seconds, findings (exit code 1 when there are any).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".mp4", ".webm", ".aac", ".opus")


def write_seeds(folder: Path) -> None:
    """One small valid file per format and layout the loader reads, prefixed by its suffix byte."""
    import soundfile as sf

    from audiocl.io import av_decode

    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(1600) / 16000
    mono = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    stereo = np.stack([mono, -mono], axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        made = []
        for name, data, rate, fmt, sub in (
            ("pcm16.wav", mono, 16000, "WAV", "PCM_16"),
            ("float.wav", stereo, 8000, "WAV", "FLOAT"),
            ("pcm24.flac", stereo, 44100, "FLAC", "PCM_24"),
            ("vorbis.ogg", mono, 16000, "OGG", "VORBIS"),
            ("mp3.mp3", mono, 16000, "MP3", "MPEG_LAYER_III"),
        ):
            path = Path(tmp) / name
            sf.write(str(path), data, rate, format=fmt, subtype=sub)
            made.append(path)
        if av_decode.available():
            path = Path(tmp) / "aac.m4a"
            av_decode.encode(path, mono, 16000)
            made.append(path)
        for path in made:
            (folder / path.stem).write_bytes(
                bytes([SUFFIXES.index(path.suffix)]) + path.read_bytes()
            )


def check_one(data: bytes, folder: str) -> None:
    """The property, for one input: a waveform or ``AudioError``, nothing else."""
    from audiocl.errors import AudioError
    from audiocl.io import audio

    if not data:
        return
    path = Path(folder) / f"input{SUFFIXES[data[0] % len(SUFFIXES)]}"
    path.write_bytes(data[1:])
    with contextlib.suppress(AudioError):
        audio.info(path)
    with contextlib.suppress(AudioError):
        audio.load(path, 16000)


def export(findings: Path, out: Path) -> None:
    """Write each finding as a regression file ``<name>.<suffix>`` (suffix byte stripped)."""
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(findings.iterdir()):
        data = f.read_bytes()
        if data:
            (out / f"{f.name}{SUFFIXES[data[0] % len(SUFFIXES)]}").write_bytes(data[1:])


def fuzz(corpus: Path, findings: Path, seconds: int, timeout: int) -> None:
    """Run libFuzzer in this process; it never returns (libFuzzer ends the process)."""
    import atheris

    # imported first, so not instrumented: only our own modules give coverage feedback
    import soundfile  # noqa: F401
    import soxr  # noqa: F401
    import torch  # noqa: F401

    import audiocl.errors  # noqa: F401
    import audiocl.fileio  # noqa: F401

    with atheris.instrument_imports():  # our header parsers and checks
        import audiocl.io.audio  # noqa: F401
        import audiocl.io.av_decode  # noqa: F401
    work = tempfile.mkdtemp(prefix="audiocl-fuzz-")
    libfuzzer_args = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={seconds}",
        f"-timeout={timeout}",
        f"-artifact_prefix={findings}{os.sep}",
        "-max_len=65536",
        "-print_final_stats=1",
    ]
    atheris.Setup(libfuzzer_args, lambda data: check_one(data, work))
    atheris.Fuzz()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=300, help="fuzzing budget")
    p.add_argument("--out", type=Path, required=True, help="corpus and findings folder")
    p.add_argument("--timeout", type=int, default=20, help="seconds one input may take")
    p.add_argument("--export", type=Path, default=None, help="write findings as regression files")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    corpus, findings = args.out / "corpus", args.out / "findings"
    if args.child:
        fuzz(corpus, findings, args.seconds, args.timeout)
    findings.mkdir(parents=True, exist_ok=True)
    if not corpus.exists():
        write_seeds(corpus)
    # libFuzzer ends its process (also on a finding): the report comes from this parent
    t0 = time.time()
    cmd = [sys.executable, __file__, "--child", "--out", str(args.out)]
    cmd += ["--seconds", str(args.seconds), "--timeout", str(args.timeout)]
    run = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, errors="replace")
    sys.stderr.write(run.stderr[-4000:])
    runs = re.findall(r"stat::number_of_executed_units: (\d+)", run.stderr)
    found = sorted(f.name for f in findings.iterdir())
    if args.export:
        export(findings, args.export)
    line = {
        "inputs": int(runs[-1]) if runs else None,
        "seconds": round(time.time() - t0, 1),
        "findings": found,
    }
    print(json.dumps(line), flush=True)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
