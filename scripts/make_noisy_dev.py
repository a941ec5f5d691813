"""Make a noisy, reverberant copy of a dev set with noise and RIRs that training never sees.

Train with ``augment.files: train`` (and ``augment.noise_dir``/``augment.rir_dir`` pointing at
``--data``/noise and ``--data``/rir): training then sees only the training part of those folders
(``audiocl.data.noise_split``, by file name); this script uses only the held-out part.

Writes every file referenced by ``--data``/``--set``/trials.txt to
``OUT/<set name>-noisy/<same relative path>`` (16-bit, atomic) and copies trials.txt there
unchanged. Per file, from a generator seeded by (``--seed``, relative path): with probability 0.5
reverb with a random held-out RIR (``audiocl.data.augment.Reverb``: aligned to the direct path, RMS
kept), then always held-out noise (``audiocl.data.augment.AddNoise``: a random file at a random offset,
tiled to the full length) at an SNR uniform in 0-15 dB against the (reverberant) speech; finally
scaled down to a peak of 0.99 if louder.

Resumable: files already in the output are skipped; ``noisy.json`` there records the settings
(including the held-out noise and RIR files; a rerun with other settings is refused) and per
file the reverb flag and the measured SNR.

    python scripts/make_noisy_dev.py --data /work/shared/data --out OUTDIR [--seed 0]
    audiocl eval --trials OUTDIR/hsb-commonvoice-noisy/trials.txt \\
        --audio-root OUTDIR/hsb-commonvoice-noisy --model model.pt

Ends with a one-line summary and one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch

from audiocl.data.augment import AddNoise, Reverb, load_noise_bank, load_rir_bank
from audiocl.data.noise_split import split_folder
from audiocl.data.trials import read_trials
from audiocl.errors import AudioError, DataError
from audiocl.fileio import atomic_path, write_text_atomic
from audiocl.io.audio import load, save

SAMPLE_RATE = 16000
REVERB_P = 0.5
SNR_DB = (0.0, 15.0)
PEAK = 0.99


def file_generator(seed: int, rel: str) -> torch.Generator:
    """A CPU generator seeded from ``(seed, rel)`` only (SHA-256, not Python's ``hash``)."""
    digest = hashlib.sha256(f"{seed}\0{rel}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def corrupt(
    wave: torch.Tensor, reverb: Reverb, noise: AddNoise, generator: torch.Generator
) -> tuple[torch.Tensor, bool, float]:
    """``wave (S,) -> (S,)``: reverb with probability ``REVERB_P``, then noise (always), then
    peak-limited to ``PEAK``. Returns the waveform, whether it was reverberated and the SNR
    (dB) measured between the (reverberant) speech and the added noise."""
    x = wave[None]
    reverbed = bool(torch.rand(1, generator=generator) < REVERB_P)
    if reverbed:
        x = reverb(x, generator)  # p = 1
    y = noise(x, generator)  # p = 1
    ps, pn = x.pow(2).mean(), (y - x).pow(2).mean()
    snr = float(10 * torch.log10(ps / pn)) if ps > 0 and pn > 0 else math.nan
    peak = float(y.abs().max())
    if peak > PEAK:
        y = y * (PEAK / peak)
    return y[0], reverbed, snr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="data root with noise/, rir/, --set")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--set", default="dev/hsb-commonvoice", help="dev set, relative to --data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    src = args.data / args.set
    dest = args.out / f"{Path(args.set).name}-noisy"
    # The split augment makes for ``part="heldout"`` (same names, default fraction): recorded.
    noise_held = split_folder(args.data / "noise").heldout
    rir_held = split_folder(args.data / "rir").heldout
    settings = {
        "source": str(src.resolve()),
        "seed": args.seed,
        "sample_rate": SAMPLE_RATE,
        "reverb_p": REVERB_P,
        "snr_db": list(SNR_DB),
        "peak": PEAK,
        "noise": noise_held,
        "rir": rir_held,
    }
    manifest_path = dest / "noisy.json"
    records: dict[str, dict] = {}
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if old.get("settings") != settings:
            raise DataError(
                f"{dest}: made with other settings (see {manifest_path.name}); "
                "use the same ones or a new --out"
            )
        records = old.get("files", {})
    elif dest.is_dir() and any(dest.iterdir()):
        raise DataError(f"{dest}: not empty and has no {manifest_path.name}; choose a new --out")

    def write_manifest() -> None:
        text = json.dumps({"settings": settings, "files": records}, indent=1, sort_keys=True)
        write_text_atomic(manifest_path, text + "\n")

    write_manifest()
    trials = read_trials(src / "trials.txt")
    files = sorted({t.enroll for t in trials} | {t.test for t in trials})
    rirs = load_rir_bank(args.data / "rir", SAMPLE_RATE, part="heldout")
    noise_bank = load_noise_bank(args.data / "noise", SAMPLE_RATE, part="heldout")
    if rirs.shape[0] != len(rir_held) or noise_bank[1].shape[0] != len(noise_held):
        raise DataError(
            f"held-out banks ({rirs.shape[0]} RIR, {noise_bank[1].shape[0]} noise files) differ "
            f"from the recorded split ({len(rir_held)} RIR, {len(noise_held)} noise files)"
        )
    reverb = Reverb(rirs, p=1.0)
    noise = AddNoise(noise_bank, SNR_DB, p=1.0)

    written = skipped = 0
    for i, rel in enumerate(files):
        out = dest / rel
        if out.exists():
            skipped += 1
            continue
        wave = load(src / rel, SAMPLE_RATE)
        y, reverbed, snr = corrupt(wave, reverb, noise, file_generator(args.seed, rel))
        save(out, y, SAMPLE_RATE)
        records[rel] = {"reverb": reverbed, "snr_db": round(snr, 3), "samples": int(y.numel())}
        written += 1
        if written % 50 == 0:
            write_manifest()
            print(f"{i + 1}/{len(files)} files", file=sys.stderr)
    with atomic_path(dest / "trials.txt") as tmp:
        shutil.copyfile(src / "trials.txt", tmp)
    write_manifest()

    snrs = [r["snr_db"] for r in records.values() if not math.isnan(r["snr_db"])]
    summary = {
        "out": str(dest),
        "files": len(files),
        "written": written,
        "skipped": skipped,
        "reverberated": sum(r["reverb"] for r in records.values()),
        "snr_db_mean": round(sum(snrs) / len(snrs), 2) if snrs else None,
        "snr_db_min": round(min(snrs), 2) if snrs else None,
        "snr_db_max": round(max(snrs), 2) if snrs else None,
        "noise_heldout": noise_held,
        "rir_heldout": rir_held,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(
        f"{dest}: {written} written, {skipped} skipped of {len(files)} files; "
        f"reverb on {summary['reverberated']}, SNR mean {summary['snr_db_mean']} dB "
        f"[{summary['snr_db_min']}, {summary['snr_db_max']}]; "
        f"held out {len(noise_held)} noise + {len(rir_held)} RIR "
        f"files; {summary['seconds']} s"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except (DataError, AudioError) as e:
        print(f"make_noisy_dev: {e}", file=sys.stderr)
        raise SystemExit(2) from None
