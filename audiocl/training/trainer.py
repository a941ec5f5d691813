"""The training loop of one stage: ``Trainer(config, run_dir).run()`` (``audiocl.training.stages``
runs a recipe's stages, each with a trainer).

One process or many (``torchrun``): ``torch.distributed`` is used only when the launcher set it up
(``WORLD_SIZE`` > 1). Every step's randomness is seeded from ``(seed, rank, step)``, and a
checkpoint holds the model, objective (margin, MoCo queue and key encoder), optimiser, scheduler
and step, so ``--resume`` continues exactly where the run stopped.

Run directory::

    config.yaml          the resolved config
    metrics.jsonl        one JSON object per log line (and per dev evaluation)
    checkpoints/         ckpt-0000200.pt ... (last ``keep_last``), best.pt (best dev EER)
    model.pt             the latest encoder as a model file (what enroll/verify/eval load)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..config import Config, save_config, to_dict
from ..data.views import (
    ViewBatches,
    check_resume,
    input_state,
    make_loader,
    num_classes,
    open_training_data,
    resolve,
)
from ..errors import ConfigError, DataError
from ..fileio import temp_leftovers
from ..modelfile import checkpoint
from ..nn.encoders import build_encoder
from ..nn.features import SpecAugment, build_frontend
from ..objectives import build_objective
from ..objectives.aam import class_centres
from ..objectives.collapse import collapse_reason
from .allocator import keep_freed_memory

log = logging.getLogger(__name__)
CKPT_RE = re.compile(r"ckpt-(\d+)\.pt$")


class _Window:
    """Losses and utterances since the last log record, for its mean loss and speed."""

    def __init__(self):
        self.start, self.utts, self.losses = time.monotonic(), 0, []

    def add(self, loss: float, utts: int) -> None:
        self.losses.append(loss)
        self.utts += utts

    def take(self) -> tuple[float, float]:
        """``(utterances per second, mean loss)`` of the window, which starts again."""
        now = time.monotonic()
        out = self.utts / max(now - self.start, 1e-9), float(np.mean(self.losses))
        self.start, self.utts, self.losses = now, 0, []
        return out


class TrainModule(torch.nn.Module):
    """Features + encoder + objective in one module, so DDP sees every trained parameter.

    ``forward(wave (G, B, S), labels (B,), local (L, B, S_local) | None, teacher (B, Dt) | None)
    -> (loss, parts)``.
    ``init_encoder``: weights loaded into the encoder before the objective copies it into any
    EMA teacher, so a fine-tuning run starts student and teacher from the same weights.
    """

    def __init__(
        self,
        cfg: Config,
        n_classes: int,
        init_encoder: dict | None = None,
        teacher_dim: int = 0,
    ):
        super().__init__()
        self.fbank = build_frontend(cfg.features, cfg.data.sample_rate)
        self.specaug = SpecAugment.from_config(cfg.features)
        self.encoder = build_encoder(cfg.model, cfg.features.n_mels)
        if init_encoder is not None:
            self.encoder.load_state_dict(init_encoder)
        self.objective = build_objective(
            cfg.objective,
            self.encoder,
            cfg.model.embed_dim,
            n_classes,
            global_views=cfg.data.views,
            total_steps=cfg.train.steps,
            teacher_dim=teacher_dim,
        )
        self.embed_from = cfg.objective.embed_from

    def embedding_encoder(self) -> torch.nn.Module:
        """The encoder whose embeddings the model file keeps (``objective.embed_from``)."""
        if self.embed_from == "teacher":
            return self.objective.contrastive.teacher_encoder()
        return self.encoder

    def _embed(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V, B, S)`` -> embeddings ``(V, B, D)`` and features ``(V, B, T, F)``."""
        v, b, s = wave.shape
        with torch.autocast(wave.device.type, enabled=False):
            feats = self.fbank(wave.reshape(v * b, s).float())
        feats = self.specaug(feats)
        emb = self.encoder(feats).reshape(v, b, -1).float()
        return emb, feats.reshape(v, b, *feats.shape[1:])

    def forward(
        self,
        wave: torch.Tensor,
        labels: torch.Tensor,
        local: torch.Tensor | None = None,
        teacher: torch.Tensor | None = None,
    ):
        emb, feats = self._embed(wave)
        if local is not None:
            emb = torch.cat([emb, self._embed(local)[0]])
        return self.objective(emb, labels, feats if self.objective.needs_feats else None, teacher)


def lr_lambda(cfg: Config):
    """Linear warm-up to ``lr``, then cosine or exponential decay to ``min_lr`` at ``steps``."""
    o, total = cfg.optim, cfg.train.steps
    floor = o.min_lr / o.lr if o.lr > 0 else 0.0

    def f(step: int) -> float:
        if o.warmup_steps and step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        t = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
        if o.schedule == "exponential":
            return max(floor, 1e-12) ** t
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in params if p.requires_grad]
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True
        )
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, weight_decay=o.weight_decay)


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)``; initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    if device_name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device is cuda but no CUDA device is available")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device(device_name)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, world, device


def find_checkpoints(run_dir: Path) -> list[Path]:
    """Training checkpoints in ``run_dir``, oldest step first."""
    found = []
    for p in (run_dir / "checkpoints").glob("ckpt-*.pt"):
        m = CKPT_RE.search(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of a run's ``metrics.jsonl``, in the order they were logged."""
    text = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8")
    records = []
    for line in text.splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line a kill cut short
            records.append(json.loads(line))
    return records


def load_init(cfg: Config) -> dict:
    """The model file or checkpoint ``cfg.train.init`` (its ``encoder`` weights, and from a
    checkpoint its ``objective`` and ``speakers``), checked against the encoder and features
    ``cfg`` builds."""
    path = Path(cfg.train.init).expanduser()
    data = checkpoint.load(path)
    src = data.get("config", {})
    for section, keys in (
        ("model", tuple(f.name for f in dataclasses.fields(cfg.model))),
        ("features", ("n_mels", "frontend")),
    ):
        mine = getattr(cfg, section)
        for key in keys:
            theirs = src.get(section, {}).get(key)
            if theirs is not None and theirs != getattr(mine, key):
                raise ConfigError(
                    f"train.init {path}: its {section}.{key} is {theirs!r}, this config's is "
                    f"{getattr(mine, key)!r}"
                )
    return data


def step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.default_rng([seed, 3, rank, step]).integers(2**62))


class Trainer:
    """State of one run; ``run()`` trains until ``train.steps`` or ``train.max_minutes``."""

    def __init__(self, cfg: Config, run_dir: Path, resume: bool = False, quiet: bool = False):
        self.cfg, self.run_dir, self.quiet = cfg, Path(run_dir), quiet
        self.rank, self.world, self.device = setup_distributed(cfg.train.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if cfg.train.keep_freed_memory:
            keep_freed_memory()
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
        existing = find_checkpoints(self.run_dir)
        if existing and not resume:
            raise ConfigError(
                f"{self.run_dir} already holds checkpoints: pass --resume to continue it, "
                "or choose another --out"
            )
        self.data = open_training_data(cfg.data)
        if self.rank == 0 and not quiet:
            d = self.data
            log.info(
                "training data: %d utterances from %d source(s), %d labelled speakers, "
                "%d files skipped%s",
                len(d.corpus),
                len(d.source_sizes),
                len(d.speakers),
                len(d.skipped),
                f" (first: {d.skipped[0][0]}: {d.skipped[0][1]})" if d.skipped else "",
            )
        self.teacher = self._teacher_table()
        self._check_teacher_size()
        torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank and rerun
        init = None if (resume and existing) or not cfg.train.init else load_init(cfg)
        self.module = TrainModule(
            cfg,
            num_classes(self.data, cfg.augment),
            init and init["encoder"],
            teacher_dim=0 if self.teacher is None else self.teacher.shape[-1],
        ).to(self.device)
        if init:
            self._init_classifier(init)
        if cfg.objective.aam_weight > 0 and not self.data.speakers:
            raise DataError("objective.aam_weight > 0 but no source is labelled")
        if cfg.objective.aam_init != "random" and not (resume and existing):
            self._imprint_classifier()
        self.optimizer = make_optimizer(cfg, self.module.parameters())
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        self.step, self.elapsed, self.best = 0, 0.0, math.inf
        self.warned_collapse = False
        if resume and existing:
            self._restore(existing[-1])
        self.module.objective.set_step(self.step)
        self.ddp = (
            torch.nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if dist.is_initialized()
            else None
        )
        amp = cfg.train.amp
        self.amp = self.device.type == "cuda" and amp in ("auto", "bf16") or amp == "bf16"

    def _teacher_table(self, model: str | None = None):
        """The distillation teacher's ``(N, K, Dt)`` embeddings (None without distillation), or
        those of the model file ``model``: rank 0 embeds what its cache lacks, then every rank
        reads the cache."""
        if model is None and self.cfg.objective.distill.weight <= 0:
            return None
        from .teacher import teacher_table

        cfg, corpus, shards = self.cfg, self.data.corpus, self.data.shards
        if dist.is_initialized() and self.rank != 0:
            dist.barrier()  # rank 0 fills the cache first
            return teacher_table(cfg, corpus, True, shards=shards, model=model)
        table = teacher_table(cfg, corpus, self.quiet, shards=shards, model=model)
        if dist.is_initialized():
            dist.barrier()
        return table

    def _init_classifier(self, src: dict) -> None:
        """Fine-tuning from a checkpoint on the same speakers (large-margin fine-tuning: longer
        crops, a wider margin) continues with the source's AAM classifier: a fresh one would
        first pull the trained encoder towards random class centres."""
        aam = self.module.objective.aam
        weight = src.get("objective", {}).get("aam.weight")
        if aam is None or weight is None or src.get("speakers") != self.data.speakers:
            return
        if weight.shape != aam.weight.shape:  # e.g. speed_as_new_speaker switched
            return
        with torch.no_grad():
            aam.weight.copy_(weight)
        if self.rank == 0 and not self.quiet:
            log.info("AAM classifier from %s (%d classes)", self.cfg.train.init, len(weight))

    def _check_teacher_size(self) -> None:
        """What starts the student in the teacher's space needs the student the teacher's size."""
        o = self.cfg.objective
        uses = [
            key
            for key, on in (
                ("objective.aam_init: teacher", o.aam_init == "teacher"),
                ("objective.distill.head_init: identity", o.distill.head_init == "identity"),
            )
            if on
        ]
        if uses and self.teacher is not None and self.teacher.shape[-1] != self.cfg.model.embed_dim:
            raise ConfigError(
                f"{uses[0]}: the teacher's embeddings are {self.teacher.shape[-1]}-dim, the "
                f"student's {self.cfg.model.embed_dim}-dim (model.embed_dim)"
            )

    def _imprint_classifier(self) -> None:
        """``objective.aam_init``: each class starts at its utterances' mean embedding by the
        distillation teacher ("teacher") or by the model the run starts from ("init", embedded
        once and cached like a teacher)."""
        aam = self.module.objective.aam
        init = self.cfg.objective.aam_init == "init"
        table = self._teacher_table(self.cfg.train.init) if init else self.teacher
        centres, seen = class_centres(table, self.data.labels, len(self.data.speakers))
        with torch.no_grad():
            aam.weight[seen] = centres[seen].to(aam.weight)
        if self.rank == 0 and not self.quiet:
            log.info(
                "AAM classifier from the %s: %d of %d classes",
                "initial model" if init else "teacher",
                int(seen.sum()),
                len(seen),
            )

    # -- checkpoints -------------------------------------------------------------------------
    def _restore(self, path: Path) -> None:
        data = checkpoint.load(path)
        if data["format"] != checkpoint.CHECKPOINT_FORMAT:
            raise ConfigError(f"{path}: not a training checkpoint")
        self.module.encoder.load_state_dict(data["encoder"])
        self.module.objective.load_state_dict(data["objective"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.step, self.elapsed = int(data["step"]), float(data["elapsed"])
        self.best = float(data.get("best", math.inf))
        check_resume(data.get("input"), self._input_state(), path)

    def _input_state(self) -> dict:
        t = self.cfg.train
        return input_state(self.data, self.cfg.data, t.seed, self.world, self.step)

    def _payload(self) -> dict:
        return {
            "format": checkpoint.CHECKPOINT_FORMAT,
            "config": to_dict(self.cfg),
            "encoder": self.module.encoder.state_dict(),
            "objective": self.module.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "best": self.best,
            "speakers": self.data.speakers,
            "world_size": self.world,
            "input": self._input_state(),
        }

    def save(self, is_best: bool = False) -> None:
        """Checkpoint (rank 0): training state, then the model file; prune to ``keep_last``."""
        if self.rank != 0:
            return
        ckpt_dir = self.run_dir / "checkpoints"
        payload = self._payload()
        checkpoint.save(ckpt_dir / f"ckpt-{self.step:07d}.pt", payload)
        if is_best:
            checkpoint.save(ckpt_dir / "best.pt", payload)
        model = checkpoint.make_model_file(
            self.module.embedding_encoder().state_dict(),
            payload["config"],
            self.step,
            self.data.speakers,
        )
        checkpoint.save(self.run_dir / "model.pt", model)
        for old in find_checkpoints(self.run_dir)[: -self.cfg.train.keep_last]:
            old.unlink(missing_ok=True)
        # a save killed mid-write leaves its temp file, each checkpoint-sized; only this rank
        # writes .pt files here and no write is under way now
        for stale in (*temp_leftovers(ckpt_dir, ".pt"), *temp_leftovers(self.run_dir, ".pt")):
            stale.unlink(missing_ok=True)

    # -- evaluation --------------------------------------------------------------------------
    def dev_eer(self) -> float | None:
        t = self.cfg.train
        if not t.dev_trials:
            return None
        from ..scoring.evaluation import evaluate_trials

        trials = resolve(self.cfg.data.root, t.dev_trials)
        root = resolve(self.cfg.data.root, t.dev_audio_root) if t.dev_audio_root else trials.parent
        enc = self.module.embedding_encoder()
        was = enc.training
        try:
            result = evaluate_trials(
                self.module.fbank, enc, trials, root, self.cfg.data.sample_rate, self.device
            )
        finally:
            enc.train(was)
            self.module.fbank.train(was)
        return float(result["eer"])

    # -- the loop ----------------------------------------------------------------------------
    def log(self, record: dict) -> None:
        if self.rank == 0:
            line = json.dumps(record) + "\n"
            with open(self.run_dir / "metrics.jsonl", "ab+") as f:  # appends, wherever it seeks
                # after a kill mid-line (then --resume) the record starts a line of its own
                if f.seek(0, os.SEEK_END) and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
                    line = "\n" + line
                f.write(line.encode("utf-8"))

    def _should_stop(self, started: float) -> bool:
        limit = self.cfg.train.max_minutes
        # made on the device: under NCCL a reduction of a temporary copy would be lost
        stop = torch.tensor(
            float(limit > 0 and self.elapsed + time.monotonic() - started >= limit * 60),
            device=self.device,
        )
        if dist.is_initialized():
            dist.all_reduce(stop, op=dist.ReduceOp.MAX)
        return bool(stop.item())

    def run(self, record_last: bool = True) -> Path:
        """Train; ``record_last``: make the model the user's default (``paths.record_last_model``)."""
        cfg, t = self.cfg, self.cfg.train
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
        dataset = ViewBatches(
            self.data, cfg.data, cfg.augment, t.seed, self.step, self.rank, self.world, self.teacher
        )
        loader = make_loader(dataset, cfg.data.num_workers)
        self.dataset = dataset  # augment.on_device: it augments each batch here
        model = self.ddp or self.module
        model.train()
        bar = None
        if self.rank == 0 and not self.quiet:
            from tqdm import tqdm

            bar = tqdm(total=t.steps, initial=self.step, unit="step", dynamic_ncols=True)
        started = time.monotonic()
        window = _Window()
        dev_every = t.dev_every if t.dev_trials else 0
        saved_at = self.step
        batches = iter(loader)
        try:
            while self.step < t.steps:
                loss, parts, utts = self._train_step(model, next(batches))
                window.add(loss, utts * self.world)
                if self.step % t.log_every == 0 or self.step == t.steps:
                    self._log_window(window, parts, self.elapsed + time.monotonic() - started, bar)
                if bar:
                    bar.update(1)
                is_best = bool(dev_every) and self.step % dev_every == 0 and self._dev_step()
                stop = self._should_stop(started) if self.step % t.log_every == 0 else False
                if self.step % t.ckpt_every == 0 or self.step == t.steps or stop or is_best:
                    self.elapsed += time.monotonic() - started
                    started = time.monotonic()
                    self.save(is_best)
                    saved_at = self.step
                if stop:
                    break
        finally:
            if bar:
                bar.close()
            del batches
        if saved_at != self.step:
            self.elapsed += time.monotonic() - started
            self.save()
        if dist.is_initialized():
            dist.barrier()
        if self.rank == 0 and record_last:
            from ..paths import record_last_model

            record_last_model(self.run_dir / "model.pt")
        return self.run_dir

    def _train_step(self, model: torch.nn.Module, batch: dict) -> tuple[float, dict, int]:
        """One optimiser step on ``batch``: ``(loss, the objective's parts, utterances)``. A
        non-finite loss stops the run before it reaches the weights."""
        if batch["step"] != self.step:
            raise RuntimeError(f"data order lost: batch of step {batch['step']} at {self.step}")
        torch.manual_seed(step_seed(self.cfg.train.seed, self.rank, self.step))
        if "aug_state" in batch:
            batch = {**batch, **self.dataset.augment_batch(batch, self.device)}
        wave = batch["wave"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        local = batch.get("local")
        local = None if local is None else local.to(self.device, non_blocking=True)
        teacher = batch.get("teacher")
        teacher = None if teacher is None else teacher.to(self.device, non_blocking=True)
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else None
        with amp or contextlib.nullcontext():
            loss, parts = model(wave, labels, local, teacher)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {self.step}: loss is {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.module.objective.on_step(self.step)
        return float(loss.detach()), parts, wave.shape[1]

    def _log_window(self, window: _Window, parts: dict, elapsed: float, bar) -> None:
        """One ``metrics.jsonl`` record of the steps since the last one, and the bar's text."""
        rate, loss = window.take()
        lr = self.scheduler.get_last_lr()[0]
        rec = {"step": self.step, "loss": loss, "lr": lr, "utt_per_s": rate, **parts}
        rec["elapsed_s"] = elapsed
        self._watch_collapse(rec, bar)
        self.log(rec)
        if bar:
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", utt_s=f"{rate:.1f}")

    def _watch_collapse(self, rec: dict, bar) -> None:
        """Mark a logged step whose statistics say the run has collapsed; warn once. Not during
        the learning-rate warm-up, when a fresh teacher's outputs are still near uniform."""
        reason = collapse_reason(rec) if self.step > self.cfg.optim.warmup_steps else None
        if reason is None:
            return
        rec["collapse"] = reason
        if self.rank == 0 and not self.warned_collapse:
            self.warned_collapse = True
            log.warning("warning: step %d: the run looks collapsed: %s", self.step, reason)

    def _dev_step(self) -> bool:
        eer = None
        if self.rank == 0:
            eer = self.dev_eer()
            self.log({"step": self.step, "dev_eer": eer})
        if dist.is_initialized():
            box = [eer]
            dist.broadcast_object_list(box, src=0)
            eer = box[0]
        if eer is not None and eer < self.best:
            self.best = eer
            return True
        return False
