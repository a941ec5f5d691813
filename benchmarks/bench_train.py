"""Training speed: our ECAPA-TDNN step against SpeechBrain's, and the pipeline against the step.

1. Compute-only training step (forward + backward + Adam step) of ECAPA-TDNN C=512 on a batch of
   32 x 2 s (200 frames x 80 bins, features precomputed), ``torch.set_num_threads(--threads)``,
   ours against SpeechBrain 1.1.2's ``ECAPA_TDNN`` at the same size (random init). SpeechBrain
   needs torchaudio, so it runs in its own environment (``--sb-python``, default
   ``$AUDIOCL_SB_PYTHON``) as a subprocess of this script that times N steps on request over a
   line protocol on stdin/stdout. The two sides alternate (A, B, A, B, ...) and never run at the
   same time (the other one is blocked on a pipe read). Both use the same loss: a linear
   classifier (192 -> 1000 classes) and cross-entropy. Target: ours >= 1.3x faster.
2. End-to-end training throughput: ``audiocl.training.trainer.Trainer`` (DataLoader workers, crop reading,
   augmentation, Fbank, SpecAugment, model, objective, AdamW/Adam step, grad clipping) on a
   synthetic corpus, against the compute-only step of the same module, optimiser and objective
   on precomputed features. For each data configuration (num_workers, torch threads) the
   compute-only step is timed just before and after the end-to-end run. Target: >= 90%.
3. Where a batch's data time goes (read, each augmentation, Fbank, SpecAugment, handing the
   batch over from a worker).

    python benchmarks/bench_train.py [--sb-python /work/sbenv/venv/bin/python] [--quick]

Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

BATCH, FRAMES, MELS, CLASSES = 32, 200, 80, 1000
STEP_TARGET = 1.3
E2E_TARGET = 0.90


# ----------------------------------------------------------------------------- step timing
def _step_fn(model, feats, labels, classifier, optimizer, squeeze: bool):
    """One training step: forward, cross-entropy of a linear classifier, backward, Adam."""
    ce = torch.nn.functional.cross_entropy

    def step() -> float:
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        emb = model(feats)
        if squeeze:
            emb = emb.squeeze(1)  # SpeechBrain returns (B, 1, D)
        loss = ce(emb @ classifier.t(), labels)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t0

    return step


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(BATCH, FRAMES, MELS, generator=g)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=g)
    return feats, labels


def _make_step(model, squeeze: bool):
    torch.manual_seed(1)
    classifier = torch.nn.Parameter(torch.randn(CLASSES, 192) * 0.05)
    model.train()
    feats, labels = _inputs()
    opt = torch.optim.Adam([*model.parameters(), classifier], lr=1e-3)
    return _step_fn(model, feats, labels, classifier, opt, squeeze)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def sb_worker(threads: int) -> None:
    """SpeechBrain side (run under the SpeechBrain interpreter): a line protocol on stdin/stdout.

    ``info`` -> ``{"params", "torch", "speechbrain"}``; ``time N`` -> ``{"steps": [s, ...]}``;
    ``quit``. Between requests the process is blocked on ``readline`` (idle).
    """
    torch.set_num_threads(threads)
    out = sys.stdout
    sys.stdout = sys.stderr  # keep library prints off the protocol channel
    import speechbrain
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    torch.manual_seed(0)
    model = ECAPA_TDNN(80, channels=[512, 512, 512, 512, 1536], lin_neurons=192)
    step = _make_step(model, squeeze=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "info":
            reply = {
                "params": n_params(model),
                "torch": torch.__version__,
                "speechbrain": speechbrain.__version__,
                "threads": torch.get_num_threads(),
            }
        elif cmd[0] == "time":
            reply = {"steps": [step() for _ in range(int(cmd[1]))]}
        else:
            reply = {"error": f"unknown request {line.strip()!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


class SpeechBrainSide:
    """Client of ``sb_worker`` in a subprocess."""

    def __init__(self, python: str, threads: int):
        self.proc = subprocess.Popen(
            [python, os.path.abspath(__file__), "--sb-worker", "--threads", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def ask(self, request: str) -> dict:
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"SpeechBrain worker exited (code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=30)


def find_sb_python(arg: str | None) -> tuple[str | None, str]:
    """The SpeechBrain interpreter, or ``(None, why not)``."""
    if not arg:
        return None, "no --sb-python given and AUDIOCL_SB_PYTHON is not set"
    if not Path(arg).exists():
        return None, f"{arg}: no such interpreter"
    probe = subprocess.run(
        [arg, "-c", "import torchaudio, speechbrain.lobes.models.ECAPA_TDNN"],
        capture_output=True,
        text=True,
    )
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"{arg}: cannot import speechbrain ({last})"
    return arg, ""


def bench_step(args) -> dict:
    from audiocl.nn.ecapa import EcapaTdnn

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = EcapaTdnn(n_mels=MELS, channels=512, embed_dim=192)
    ours_step = _make_step(ours, squeeze=False)
    sb_python, why = find_sb_python(args.sb_python)
    sb = SpeechBrainSide(sb_python, args.threads) if sb_python else None
    res = {"ours_params": n_params(ours), "ours_torch": torch.__version__}
    try:
        if sb:
            info = sb.ask("info")
            res.update(
                speechbrain_params=info["params"],
                speechbrain_torch=info["torch"],
                speechbrain_version=info["speechbrain"],
            )
        # warm-up (one side at a time)
        for _ in range(args.warmup):
            ours_step()
        if sb:
            sb.ask(f"time {args.warmup}")
        ours_t, sb_t, round_ratios = [], [], []
        for _ in range(args.rounds):
            a = [ours_step() for _ in range(args.steps)]
            ours_t += a
            if sb:
                b = sb.ask(f"time {args.steps}")["steps"]
                sb_t += b
                round_ratios.append(statistics.median(b) / statistics.median(a))
    finally:
        if sb:
            sb.close()
    res["ours_step_s"] = statistics.median(ours_t)
    res["ours_steps"] = ours_t
    if sb:
        res["speechbrain_step_s"] = statistics.median(sb_t)
        res["speechbrain_steps"] = sb_t
        res["ratio"] = res["speechbrain_step_s"] / res["ours_step_s"]
        res["ratio_median_of_rounds"] = statistics.median(round_ratios)
    else:
        res["speechbrain_note"] = why
    return res


def print_step_table(res: dict, args) -> None:
    print(
        f"\n== 1. Training step, ECAPA-TDNN C=512, batch {BATCH} x {FRAMES} frames x {MELS} "
        f"bins, {args.threads} threads, Adam ({args.rounds} alternating rounds x {args.steps} "
        f"steps after {args.warmup} warm-up) =="
    )
    print(f"{'model':<32} {'params':>11} {'median s':>9} {'min s':>7} {'max s':>7} {'torch':>14}")
    t = res["ours_steps"]
    print(
        f"{'audiocl EcapaTdnn':<32} {res['ours_params']:>11,} {res['ours_step_s']:>9.3f} "
        f"{min(t):>7.3f} {max(t):>7.3f} {res['ours_torch']:>14}"
    )
    if "speechbrain_step_s" in res:
        t = res["speechbrain_steps"]
        name = f"speechbrain {res['speechbrain_version']} ECAPA_TDNN"
        print(
            f"{name:<32} {res['speechbrain_params']:>11,} {res['speechbrain_step_s']:>9.3f} "
            f"{min(t):>7.3f} {max(t):>7.3f} {res['speechbrain_torch']:>14}"
        )
        ok = "OK" if res["ratio"] >= STEP_TARGET else "BELOW TARGET"
        print(
            f"ratio SpeechBrain / ours: {res['ratio']:.2f}x (median of per-round ratios "
            f"{res['ratio_median_of_rounds']:.2f}x); target >= {STEP_TARGET}x: {ok}"
        )
        diff = res["speechbrain_params"] - res["ours_params"]
        print(
            f"parameter difference {diff:+,}: SpeechBrain's MFA conv and first attention conv "
            "are full conv blocks (BatchNorm(1536) + BatchNorm(128) = 3,072 + 256 = 3,328);\n"
            "  also reflect vs zero padding and biased vs unbiased global-context std, so outputs "
            "differ by design (see audiocl/nn/ecapa.py)."
        )
    else:
        print(f"NOTE: SpeechBrain is absent, no comparison: {res['speechbrain_note']}")


# ----------------------------------------------------------------------------- end to end
def make_config(root: Path, objective: str, workers: int, threads: int, steps: int, log: int):
    from audiocl.training.recipe import load_config

    obj = (
        [
            "data.views=2",
            "objective.contrastive=simclr",
            "objective.contrastive_weight=0.5",
            "objective.temperature=0.07",
            "objective.aam_weight=1.0",
        ]
        if objective == "aam+simclr"
        else [
            "data.views=1",
            "objective.contrastive=none",
            "objective.contrastive_weight=0.0",
            "objective.aam_weight=1.0",
        ]
    )
    return load_config(
        None,
        [
            f"data.root={root}",
            "data.sources=[{path: train, labelled: true}]",
            "data.crop_seconds=2.0",
            f"data.batch_size={BATCH}",
            f"data.num_workers={workers}",
            *obj,
            "objective.aam_scale=32.0",
            "model.channels=512",
            "optim.name=adam",
            "optim.warmup_steps=0",
            "optim.schedule=constant",
            f"train.steps={steps}",
            f"train.log_every={log}",
            "train.ckpt_every=1000000",
            "train.device=cpu",
            f"train.threads={threads}",
        ],
    )


def compute_only(trainer, feats: torch.Tensor, labels: torch.Tensor, steps: int) -> list[float]:
    """The trainer's step minus data, Fbank and SpecAugment: ``feats (V, B, T, F)`` precomputed."""
    m, opt, cfg = trainer.module, trainer.optimizer, trainer.cfg
    m.train()
    v, b = feats.shape[:2]
    flat = feats.reshape(v * b, *feats.shape[2:])
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        torch.manual_seed(trainer.step)
        emb = m.encoder(flat).reshape(v, b, -1).float()
        loss, _ = m.objective(emb, labels, feats)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.optim.grad_clip)
        opt.step()
        trainer.scheduler.step()
        trainer.step += 1
        m.objective.on_step(trainer.step)
        times.append(time.perf_counter() - t0)
    return times


def one_batch_feats(trainer):
    from audiocl.data.views import ViewBatches

    cfg = trainer.cfg
    ds = ViewBatches(trainer.data, cfg.data, cfg.augment, cfg.train.seed)
    batch = ds.make_batch(0)
    v, b, s = batch["wave"].shape
    with torch.no_grad():
        feats = trainer.module.fbank(batch["wave"].reshape(v * b, s))
    return feats.reshape(v, b, *feats.shape[1:]), batch["label"]


def e2e_run(root: Path, objective: str, workers: int, threads: int, args) -> dict:
    """Alternating rounds of compute-only steps and a fresh end-to-end Trainer run.

    Each round times ``--compute-steps`` compute-only steps, then runs ``audiocl.training.trainer.Trainer``
    for ``--e2e-warmup + --e2e-steps`` steps with ``log_every=1``, so its ``metrics.jsonl`` gives
    per-step wall times; the warm-up steps (worker start-up, first allocations) are dropped.
    Only one side runs at a time (a Trainer's loader workers end with its run). The fraction is
    median compute-only step / median end-to-end step over all rounds (medians resist bursts of
    load from other users of the machine); per-round fractions and means are reported too.
    """
    from audiocl.training.trainer import Trainer, read_metrics

    steps = args.e2e_warmup + args.e2e_steps
    compute, e2e, rounds = [], [], []
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        # compute-only reference with --threads (all cores for the model, nothing else running)
        ref = Trainer(
            make_config(root, objective, 0, args.threads, 1, 1), Path(tmp) / "ref", quiet=True
        )
        feats, labels = one_batch_feats(ref)
        compute_only(ref, feats, labels, args.warmup)
        for k in range(args.e2e_rounds):
            torch.set_num_threads(args.threads)
            c = compute_only(ref, feats, labels, args.compute_steps)
            cfg = make_config(root, objective, workers, threads, steps, 1)
            run_dir = Path(tmp) / f"run{k}"
            Trainer(cfg, run_dir, quiet=True).run()
            recs = read_metrics(run_dir)
            e = [BATCH / r["utt_per_s"] for r in recs if "utt_per_s" in r][args.e2e_warmup :]
            compute += c
            e2e += e
            rounds.append(statistics.median(c) / statistics.median(e))
    e2e_s, compute_s = statistics.median(e2e), statistics.median(compute)
    return {
        "objective": objective,
        "views": cfg.data.views,
        "num_workers": workers,
        "threads": threads,
        "e2e_step_s": e2e_s,
        "e2e_step_s_mean": statistics.mean(e2e),
        "e2e_utt_per_s": BATCH / e2e_s,
        "compute_step_s": compute_s,
        "compute_step_s_mean": statistics.mean(compute),
        "compute_utt_per_s": BATCH / compute_s,
        "e2e_fraction": compute_s / e2e_s,
        "e2e_fraction_of_means": statistics.mean(compute) / statistics.mean(e2e),
        "e2e_fraction_per_round": rounds,
    }


def profile_data(root: Path, objective: str, args) -> dict:
    """Per-batch data cost on one thread: crop reading, each augmentation, Fbank, SpecAugment,
    and the wait per batch on a 1-worker DataLoader with nothing else running (the pipeline's
    own rate, hand-over from the worker included)."""
    from audiocl.data.views import ViewBatches, make_loader
    from audiocl.training.trainer import Trainer

    torch.set_num_threads(1)
    cfg = make_config(root, objective, 0, 1, 1, 1)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        tr = Trainer(cfg, Path(tmp) / "p", quiet=True)
    ds = ViewBatches(tr.data, cfg.data, cfg.augment, cfg.train.seed)
    acc: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0
            return out

        return wrapper

    ds.read_crops = timed("read crops (audio.load)", ds.read_crops)
    comp = ds.augment
    comp.augmentations = [timed(f"augment: {type(a).__name__}", a) for a in comp.augmentations]
    fb, sa = tr.module.fbank.train(), tr.module.specaug.train()
    n = args.profile_batches
    total = 0.0
    for step in range(1, n + 1):
        t0 = time.perf_counter()
        batch = ds.make_batch(step)
        total += time.perf_counter() - t0
        v, b, s = batch["wave"].shape
        t0 = time.perf_counter()
        with torch.no_grad():
            feats = fb(batch["wave"].reshape(v * b, s))
        acc["fbank (main process)"] = acc.get("fbank (main process)", 0.0) + (
            time.perf_counter() - t0
        )
        t0 = time.perf_counter()
        sa(feats)
        acc["specaugment (main process)"] = acc.get("specaugment (main process)", 0.0) + (
            time.perf_counter() - t0
        )
    per = {k: v / n for k, v in acc.items()}
    per["make_batch total (worker)"] = total / n
    per["make_batch other (stack, labels, rng)"] = (
        total / n
        - per["read crops (audio.load)"]
        - sum(v for k, v in per.items() if k.startswith("augment:"))
    )
    # loader hand-over: a 1-worker loader with nothing else running, per batch in the main process
    ds2 = ViewBatches(tr.data, cfg.data, cfg.augment, cfg.train.seed)
    it = iter(make_loader(ds2, 1))
    next(it)
    waits = []
    for _ in range(n):
        t0 = time.perf_counter()
        next(it)
        waits.append(time.perf_counter() - t0)
    del it
    per["1-worker loader, s per batch (pipeline alone)"] = statistics.median(waits)
    return per


def print_e2e_table(rows: list[dict], prof: dict | None, args) -> None:
    print(
        f"\n== 2. End-to-end training throughput (Trainer: loader + augmentation + Fbank + "
        f"SpecAugment + step), ECAPA-TDNN C=512, batch {BATCH} x 2 s, Adam + grad clip; "
        f"{args.e2e_rounds} alternating rounds: {args.compute_steps} compute-only steps, then a "
        f"Trainer run timed over {args.e2e_steps} steps after {args.e2e_warmup} warm-up; medians =="
    )
    print(
        f"{'objective':<11} {'V':>2} {'workers':>7} {'threads':>7} {'e2e s/step':>10} "
        f"{'e2e utt/s':>9} {'compute s/step':>14} {'compute utt/s':>13} {'fraction':>8}  "
        "per round"
    )
    for r in rows:
        print(
            f"{r['objective']:<11} {r['views']:>2} {r['num_workers']:>7} {r['threads']:>7} "
            f"{r['e2e_step_s']:>10.3f} {r['e2e_utt_per_s']:>9.2f} {r['compute_step_s']:>14.3f} "
            f"{r['compute_utt_per_s']:>13.2f} {100 * r['e2e_fraction']:>7.1f}%  "
            + " ".join(f"{100 * x:.0f}%" for x in r["e2e_fraction_per_round"])
        )
    print(
        f"compute-only = the same module/optimiser/objective on precomputed features with "
        f"{args.threads} threads, alternating with the runs; utt = utterances (each with "
        f"V views). Target >= {100 * E2E_TARGET:.0f}%."
    )
    if prof:
        print(f"\n== 3. Data cost per batch ({args.profile_batches} batches, 1 thread) ==")
        for k, v in prof.items():
            print(f"{k:<48} {1000 * v:>9.1f} ms")


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sb-python",
        default=os.environ.get("AUDIOCL_SB_PYTHON"),
        help="interpreter with speechbrain 1.1.2 + torchaudio (default $AUDIOCL_SB_PYTHON)",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the model")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (part 1)")
    ap.add_argument("--steps", type=int, default=2, help="steps per side per round (part 1)")
    ap.add_argument(
        "--compute-steps", type=int, default=3, help="compute-only steps per round (part 2)"
    )
    ap.add_argument("--e2e-rounds", type=int, default=2, help="alternating rounds (part 2)")
    ap.add_argument("--e2e-warmup", type=int, default=1, help="end-to-end steps not timed")
    ap.add_argument("--e2e-steps", type=int, default=3, help="end-to-end steps timed per run")
    ap.add_argument(
        "--configs",
        default="1x2,0x2",
        help="data configurations WORKERSxTHREADS for the joint objective (part 2)",
    )
    ap.add_argument("--aam-configs", default="1x2", help="the same for views=1 AAM ('' to skip)")
    ap.add_argument("--profile-batches", type=int, default=3)
    ap.add_argument("--skip-step", action="store_true", help="skip part 1")
    ap.add_argument("--skip-e2e", action="store_true", help="skip parts 2 and 3")
    ap.add_argument("--quick", action="store_true", help="fewer steps and one data configuration")
    ap.add_argument("--sb-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sb_worker:
        sb_worker(args.threads)
        return
    if args.quick:
        args.rounds, args.steps, args.warmup = 3, 2, 1
        args.compute_steps, args.e2e_warmup, args.e2e_steps, args.e2e_rounds = 2, 1, 2, 1
        args.configs, args.aam_configs, args.profile_batches = "1x2", "", 2

    figures: dict = {}
    if not args.skip_step:
        res = bench_step(args)
        print_step_table(res, args)
        figures.update(
            {k: v for k, v in res.items() if not k.endswith("_steps") and "torch" not in k}
        )
    if not args.skip_e2e:
        from audiocl.data.synth import synthesize_corpus

        os.environ.setdefault("AUDIOCL_HOME", tempfile.mkdtemp(prefix="audiocl-home-"))
        rows = []
        with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
            root = Path(tmp)
            t0 = time.perf_counter()
            # 48 utterances of 4.5-8 s (VoxCeleb-like lengths: crops are read with a seek)
            synthesize_corpus(
                root / "train", speakers=12, utterances=4, seed=0, duration=(4.5, 8.0), trials=False
            )
            print(f"\n(synthetic corpus: 48 utterances in {time.perf_counter() - t0:.1f} s)")
            plan = [("aam+simclr", c) for c in args.configs.split(",") if c] + [
                ("aam", c) for c in args.aam_configs.split(",") if c
            ]
            for objective, c in plan:
                workers, threads = (int(x) for x in c.split("x"))
                rows.append(e2e_run(root, objective, workers, threads, args))
                r = rows[-1]
                print(
                    f"  {objective} workers={workers} threads={threads}: "
                    f"{100 * r['e2e_fraction']:.1f}% (rounds: "
                    + ", ".join(f"{100 * x:.0f}%" for x in r["e2e_fraction_per_round"])
                    + ")",
                    flush=True,
                )
            prof = profile_data(root, "aam+simclr", args) if args.profile_batches else None
        print_e2e_table(rows, prof, args)
        best = max(
            (r for r in rows if r["objective"] == "aam+simclr"), key=lambda r: r["e2e_fraction"]
        )
        figures.update(
            e2e_utt_per_s=best["e2e_utt_per_s"],
            compute_utt_per_s=best["compute_utt_per_s"],
            e2e_fraction=best["e2e_fraction"],
            e2e_best_config=f"workers={best['num_workers']},threads={best['threads']}",
            e2e_runs=[dict(r) for r in rows],
        )
        if prof:
            figures["data_profile_s_per_batch"] = prof
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
