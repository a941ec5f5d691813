"""Training data: corpora -> batches of augmented views.

Every random choice of a batch (which utterances, where the crops start, which augmentations)
is a function of ``(seed, rank, step)`` alone. A batch therefore does not depend on worker timing
or on how many batches were drawn before, which is what makes ``--resume`` exact, and what lets
each DDP rank draw its own share without talking to the others.

One DataLoader item is one whole batch: the worker reads the crops (only the cropped span is read
from disk) and augments them batched, so the main process only runs features and the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..config import AugmentConfig, DataConfig
from ..errors import ConfigError, DataError
from ..io import audio
from .augment import SpeedPerturb, build_augment, random_crop
from .corpus import Corpus, open_corpus
from .shard_stream import ShardStream
from .shards import ShardSet, open_shards


@dataclasses.dataclass
class TrainingData:
    """The mixed training corpus and its labels.

    ``labels[i]`` is the class of utterance ``i`` for the AAM objective, or -1 when its source is
    unlabelled. ``speakers`` lists the class names (index = class id).
    """

    corpus: Corpus
    labels: np.ndarray
    speakers: list[str]
    source_of: np.ndarray
    source_sizes: list[int]
    skipped: list[tuple[str, str]]
    shards: ShardSet | None = None  # a shards source: the audio lives in its tars, streamed

    def load(
        self,
        index: int,
        sample_rate: int,
        start: float | None = None,
        duration: float | None = None,
        blob: bytes | None = None,
    ) -> torch.Tensor:
        """Utterance ``index`` decoded ``(S,)``, only the span asked for: from its file, or
        from its shard (from ``blob`` when its bytes are already in memory)."""
        if self.shards is not None:
            return self.shards.load(index, sample_rate, start, duration, blob)
        return audio.load(self.corpus.path(index), sample_rate, start=start, duration=duration)


def num_classes(data: TrainingData, aug: AugmentConfig) -> int:
    """Classes of the AAM head: the labelled speakers, times ``len(speeds) + 1`` when each speed
    copy of a speaker is a class of its own (``augment.speed_as_new_speaker``)."""
    copies = len(aug.speeds) + 1 if aug.speed_as_new_speaker else 1
    return max(1, len(data.speakers)) * copies


def resolve(root: str | Path, path: str) -> Path:
    """``path`` if absolute, else relative to ``root``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(root).expanduser() / p


def open_training_data(cfg: DataConfig) -> TrainingData:
    """Index every source of ``cfg`` and mix them into one labelled corpus."""
    if not cfg.sources:
        raise DataError("data.sources is empty: name at least one corpus to train on")
    corpora, prefixes = [], []
    shards = None
    for i, src in enumerate(cfg.sources):
        path = resolve(cfg.root, src.shards or src.path)
        if not path.exists():
            raise DataError(f"{path}: training source not found (data.root={cfg.root!r})")
        if src.shards:
            shards = open_shards(path)
            corpus = shards.corpus
            keep = corpus.durations >= cfg.min_seconds
        else:
            corpus = open_corpus(path, min_duration=cfg.min_seconds, format=src.format)
            keep = np.ones(len(corpus), dtype=bool)
        if src.hold_out:
            held = held_out_speakers(corpus.speakers, src.hold_out, path)
            keep &= ~np.isin(corpus.speaker_ids, held)
        if not keep.all():
            if shards is not None:
                shards = shards.subset(np.flatnonzero(keep))
                corpus = shards.corpus
            else:
                corpus = corpus.subset(np.flatnonzero(keep))
        corpora.append(corpus)
        prefixes.append(f"{i}:" if len(cfg.sources) > 1 else "")
        if len(corpora[-1]) == 0:
            raise DataError(f"{path}: no usable audio files (min_seconds={cfg.min_seconds})")
    corpus = Corpus.concat(corpora, prefixes) if len(corpora) > 1 else corpora[0]
    sizes = [len(c) for c in corpora]
    source_of = np.repeat(np.arange(len(corpora)), sizes)
    # chosen per source on its own speaker names (no concat prefix), so the choice does not
    # depend on the order or number of the other sources
    labelled = np.concatenate(
        [
            np.isin(c.speaker_ids, labelled_speakers(c.speakers, src.label_fraction))
            if src.labelled
            else np.zeros(len(c), dtype=bool)
            for c, src in zip(corpora, cfg.sources, strict=True)
        ]
    )
    skipped = [item for c in corpora for item in c.skipped]
    if cfg.labelled_only:
        if not labelled.any():
            raise DataError("data.labelled_only is set but no utterance is labelled")
        kept = np.flatnonzero(labelled)
        corpus, source_of, labelled = corpus.subset(kept), source_of[kept], labelled[kept]
        if shards is not None:
            shards = shards.subset(kept)
        sizes = np.bincount(source_of, minlength=len(corpora)).tolist()
    spk_names, spk_ids = corpus.speakers, corpus.speaker_ids
    used = sorted({spk_names[k] for k in np.unique(spk_ids[labelled])})
    index = {name: j for j, name in enumerate(used)}
    labels = np.full(len(corpus), -1, dtype=np.int64)
    for i in np.flatnonzero(labelled):
        labels[i] = index[spk_names[spk_ids[i]]]
    return TrainingData(corpus, labels, used, source_of, sizes, skipped, shards)


def labelled_speakers(names: list[str], fraction: float) -> np.ndarray:
    """Indices into ``names`` of the speakers that keep their labels: all for ``fraction == 1``,
    else the first ``round(fraction * len(names))`` (at least one) ranked by the SHA-256 of the
    name."""
    ids = np.arange(len(names))
    if fraction >= 1.0:
        return ids
    ranked = sorted(ids, key=lambda k: hashlib.sha256(names[k].encode("utf-8")).hexdigest())
    return np.array(ranked[: max(1, round(fraction * len(names)))], dtype=np.int64)


def held_out_speakers(names: list[str], count: int, where: object = "") -> np.ndarray:
    """Indices into ``names`` of the ``count`` speakers a source leaves out of training: the
    last ``count`` ranked by the SHA-256 of the name (``labelled_speakers`` takes the first)."""
    if count >= len(names):
        raise DataError(f"{where}: hold_out={count} would leave none of its {len(names)} speakers")
    ranked = sorted(range(len(names)), key=lambda k: hashlib.sha256(names[k].encode()).hexdigest())
    return np.array(ranked[len(names) - count :], dtype=np.int64)


def disjoint_starts(total: int, length: int, count: int, rng: np.random.Generator) -> list[int]:
    """Start samples of ``count`` crops of ``length`` in ``total >= length`` samples: placed at
    random without overlap when ``total >= count * length``, else evenly spread (the least
    overlap there can be)."""
    free = total - count * length
    if free >= 0:
        gaps = np.sort(rng.integers(0, free + 1, size=count))
        return [int(g) + i * length for i, g in enumerate(gaps)]
    room = total - length
    return [round(i * room / (count - 1)) for i in range(count)]


class BatchSampler:
    """Which utterances make batch ``step`` on rank ``rank``: an endless, seeded stream.

    Utterances are drawn in epochs of shuffled order. With ``balance`` < 1 a source's share of
    the draws is proportional to ``size ** balance`` (small labelled sets are seen more often).
    """

    def __init__(
        self,
        source_of: np.ndarray,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        balance: float = 1.0,
    ):
        self.n = len(source_of)
        if self.n < batch_size:
            raise DataError(f"only {self.n} training utterances for a batch of {batch_size}")
        self.batch_size = batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        sizes = np.maximum(np.bincount(source_of), 1).astype(np.float64)  # no empty source
        if balance == 1.0:
            self.weights = None
        else:
            w = (sizes**balance / sizes)[source_of]
            self.weights = w / w.sum()
        # one epoch: every utterance once (or as many weighted draws), split across ranks
        self.per_epoch = max(1, self.n // (batch_size * world_size))
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, 7, epoch])
            if self.weights is None:
                order = rng.permutation(self.n)
            else:
                order = rng.choice(self.n, size=self.n, p=self.weights)
            self._epoch_cache = (epoch, order)
        return self._epoch_cache[1]

    def indices(self, step: int) -> np.ndarray:
        """Utterance indices ``(batch_size,)`` of batch ``step`` for this rank."""
        epoch, k = divmod(step, self.per_epoch)
        order = self._epoch_order(epoch)
        start = (k * self.world_size + self.rank) * self.batch_size
        return order[start : start + self.batch_size]


class ViewBatches(torch.utils.data.IterableDataset):
    """Yields ``{"wave": (G, B, S), "label": (B,), "step": int}`` from ``start_step``
    on, plus ``"local": (L, B, S_local)`` when ``cfg.local_views > 0`` (multi-crop), and
    ``"teacher": (B, Dt)`` float32 when a distillation ``teacher (N, K, Dt)`` table is given (row
    ``[i, 0]`` for an unchanged utterance, ``[i, k + 1]`` for one at speed copy ``k``).

    Workers split the steps round-robin; a DataLoader with ``batch_size=None`` keeps their order.
    """

    def __init__(
        self,
        data: TrainingData,
        cfg: DataConfig,
        aug_cfg: AugmentConfig,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
        teacher: np.ndarray | None = None,
    ):
        super().__init__()
        self.data, self.cfg, self.aug_cfg = data, cfg, aug_cfg
        self.teacher = teacher
        self.seed, self.start_step, self.rank = seed, start_step, rank
        self.world_size = world_size
        self.sampler = BatchSampler(
            data.source_of, cfg.batch_size, seed, rank, world_size, cfg.balance
        )
        # shards: one stream per loader worker of each rank (see shard_stream)
        self.streams = streams_per_rank(data, cfg)
        self._pool: list[tuple[int, bytes]] = []  # the batch's shard members, for babble
        self._on_device_pool: torch.Tensor | None = None  # augment_batch's crops, for babble
        self.num_samples = int(round(cfg.crop_seconds * cfg.sample_rate))
        self.local_samples = int(round(cfg.local_crop_seconds * cfg.sample_rate))
        self._augment = None
        self.speed_classes = (
            SpeedPerturb(aug_cfg.speeds, aug_cfg.speed_p, cfg.sample_rate)
            if aug_cfg.enabled and aug_cfg.speed_as_new_speaker
            else None
        )

    @property
    def augment(self):
        # built lazily in the worker: noise and RIR banks are loaded once per process
        if self._augment is None:
            self._augment = (
                build_augment(
                    self.aug_cfg,
                    Path(self.cfg.root).expanduser(),
                    self.cfg.sample_rate,
                    babble_source=self.babble,
                )
                if self.aug_cfg.enabled
                else None
            )
        return self._augment

    def crop_samples(self, step: int) -> int:
        """The global crops' length in samples at ``step``: ``crop_seconds``, or one of
        ``crop_mix`` drawn from a generator of its own (the other draws stay as they were)."""
        mix = self.cfg.crop_mix
        if not mix:
            return self.num_samples
        k = int(np.random.default_rng([self.seed, 13, step]).integers(len(mix)))
        return int(round(mix[k] * self.cfg.sample_rate))

    def read_crops(
        self,
        index: int,
        rng: np.random.Generator,
        count: int,
        num_samples: int,
        disjoint: bool = False,
        blob: bytes | None = None,
    ) -> torch.Tensor:
        """``count`` random crops ``(count, num_samples)`` of utterance ``index``: independent, or
        with ``disjoint`` from non-overlapping parts of it where it is long enough (else spread
        evenly), so that two views share as little content as the utterance allows. ``blob``:
        its shard member's bytes, already read."""
        sr = self.cfg.sample_rate
        total = int(float(self.data.corpus.durations[index]) * sr)
        if total <= 2 * num_samples:
            # short file: read once, crop (wrap-padding when shorter than a crop) per view
            wave = self.data.load(index, sr, blob=blob)
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            if disjoint and count > 1 and wave.numel() > num_samples:
                starts = disjoint_starts(wave.numel(), num_samples, count, rng)
                return torch.stack([wave[s : s + num_samples] for s in starts])
            return torch.stack([random_crop(wave, num_samples, g) for _ in range(count)])
        if disjoint and count > 1:
            starts = disjoint_starts(total, num_samples, count, rng)
        else:
            starts = [int(rng.integers(0, total - num_samples)) for _ in range(count)]
        out = []
        for start in starts:
            w = self.data.load(index, sr, start / sr, num_samples / sr, blob)
            if w.numel() < num_samples:  # header durations can be a few samples optimistic
                w = torch.nn.functional.pad(w, (0, num_samples - w.numel()))
            out.append(w[:num_samples])
        return out[0].unsqueeze(0) if count == 1 else torch.stack(out)  # the batch copies once

    def babble(self, count: int, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """``(count, num_samples)`` crops of random other utterances, for babble noise."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        if self._on_device_pool is not None:  # augment_batch: the batch's own crops
            rows = self._on_device_pool
            picks = rng.integers(0, rows.shape[0], size=count).tolist()
            return torch.stack([random_crop(rows[k], num_samples, generator) for k in picks])
        if self._pool:  # streamed shards: other utterances of the batch, already in memory
            picks = rng.integers(0, len(self._pool), size=count)
            return torch.cat(
                [
                    self.read_crops(self._pool[k][0], rng, 1, num_samples, blob=self._pool[k][1])
                    for k in picks.tolist()
                ]
            )
        picks = rng.integers(0, len(self.data.corpus), size=count)
        return torch.cat([self.read_crops(int(i), rng, 1, num_samples) for i in picks])

    def make_batch(self, step: int, picks: list[tuple[int, bytes]] | None = None) -> dict:
        """Batch ``step``: of the utterances the sampler draws, or of ``picks``, the
        ``(index, audio file bytes)`` a shard stream gave."""
        if picks is None:
            idx, blobs = self.sampler.indices(step), [None] * self.cfg.batch_size
        else:
            idx = np.array([i for i, _ in picks], dtype=np.int64)
            blobs = [b for _, b in picks]
            self._pool = picks
        rng = np.random.default_rng([self.seed, 11, self.rank, step])
        views, local = self.cfg.views, self.cfg.local_views
        spread = self.cfg.disjoint_crops
        length = self.crop_samples(step)
        crops = [
            self.read_crops(int(i), rng, views, length, spread, b)
            for i, b in zip(idx, blobs, strict=True)
        ]
        # local crops draw after the global ones, so a config without them keeps its batches
        small = (
            [
                self.read_crops(int(i), rng, local, self.local_samples, blob=b)
                for i, b in zip(idx, blobs, strict=True)
            ]
            if local
            else []
        )
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        label = torch.from_numpy(self.data.labels[idx])
        speed = None
        if self.speed_classes is not None:
            speed = self.speed_classes.draw(len(idx), g)  # (B,), -1: unchanged
            n = max(1, len(self.data.speakers))
            label = torch.where(label >= 0, label + (speed + 1) * n, label)
        wave = torch.stack(crops, dim=1)  # (G, B, S)
        small = torch.stack(small, dim=1) if local else None  # (L, B, S_l)
        batch = {"label": label, "step": step}
        if self.aug_cfg.on_device and self.aug_cfg.enabled:
            # augment_batch continues from this generator state on the training device; as
            # bytes, pickled inline, where a tensor costs the loader a shared-memory segment
            # per batch (the state's 5 KB cost a quarter of a worker's throughput)
            batch.update(wave=wave, aug_state=g.get_state().numpy().tobytes())
            if speed is not None:
                batch["speed"] = speed
            if local:
                batch["local"] = small
        else:
            batch["wave"] = self._augmented(wave, g, speed)
            if local:
                batch["local"] = self._augmented(small, g, speed)
        if self.teacher is not None:
            k = np.zeros(len(idx), dtype=np.int64) if speed is None else speed.numpy() + 1
            if k.max() >= self.teacher.shape[1]:
                raise ValueError("the teacher table has no row for this speed copy")
            batch["teacher"] = torch.from_numpy(self.teacher[idx, k].astype(np.float32))
        return batch

    def augment_batch(self, batch: dict, device: torch.device) -> dict:
        """``augment.on_device``: the crops of a batch ``make_batch`` left unaugmented, augmented
        on ``device`` with the random state it left (on the CPU, the very batch the workers would
        have made, babble aside): ``{"wave": (G, B, S), "local": (L, B, S_l)}`` (local if any).
        Babble mixes in the batch's other utterances (its first view's crops)."""
        g = torch.Generator().manual_seed(0)
        g.set_state(torch.frombuffer(bytearray(batch["aug_state"]), dtype=torch.uint8))
        speed = batch.get("speed")
        wave = batch["wave"].to(device, non_blocking=True)
        self._on_device_pool = wave[0]
        try:
            out = {"wave": self._augmented(wave, g, speed)}
            if batch.get("local") is not None:
                local = batch["local"].to(device, non_blocking=True)
                out["local"] = self._augmented(local, g, speed)
        finally:
            self._on_device_pool = None
        return out

    def _augmented(
        self, wave: torch.Tensor, g: torch.Generator, speed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Augment every crop of ``wave (V, B, S)`` independently, after putting every view of
        example ``b`` at the speed ``speed[b]`` picks (speed copies as classes)."""
        v, b, s = wave.shape
        flat = wave.reshape(v * b, s)
        if speed is not None:
            flat = self.speed_classes.perturb(flat, speed.repeat(v), g)
        if self.augment is not None:
            flat = self.augment(flat, g)
        return flat.reshape(v, b, s)

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        step = self.start_step + wid
        if self.data.shards is None:
            while True:
                yield self.make_batch(step)
                step += nw
        # the worker that makes step s reads stream s % streams; its steps are that stream's
        # consecutive batches, whichever step the run (re)started at
        s, b = self.streams, self.cfg.batch_size
        stream = ShardStream(
            self.data.shards,
            self.seed,
            self.rank * s + step % s,
            self.world_size * s,
            self.cfg.shuffle_buffer,
        )
        items = stream.items((step // s) * b)
        while True:
            yield self.make_batch(step, [next(items) for _ in range(b)])
            step += nw


def streams_per_rank(data: TrainingData, cfg: DataConfig) -> int:
    """Input streams per rank: one per loader worker for a shards source, 0 for files."""
    return max(1, cfg.num_workers) if data.shards is not None else 0


def input_state(data: TrainingData, cfg: DataConfig, seed: int, world_size: int, step: int) -> dict:
    """What fixes the order of the training input, kept in every checkpoint. For shards also
    where each stream of a rank stands at ``step`` (``positions``: utterances it has used),
    which every rank shares; ``check_resume`` compares the rest with a resumed run's."""
    if data.shards is None:
        return {"kind": "files", "utterances": len(data.corpus)}
    s, b = streams_per_rank(data, cfg), cfg.batch_size
    return {
        "kind": "shards",
        "fingerprint": data.shards.fingerprint,
        "utterances": len(data.corpus),
        "seed": seed,
        "world_size": world_size,
        "streams_per_rank": s,
        "batch_size": b,
        "shuffle_buffer": cfg.shuffle_buffer,
        # the next step of stream g is the first step >= `step` with step % s == g
        "positions": [((step + (g - step) % s) // s) * b for g in range(s)],
    }


def check_resume(saved: dict | None, current: dict, where: object) -> None:
    """ConfigError when a checkpoint's input order cannot be continued by this run's."""
    kind = (saved or {}).get("kind", "files")  # checkpoints before shards: files
    if kind != current["kind"]:
        raise ConfigError(
            f"{where}: the run was trained on {kind}, this config reads {current['kind']}; "
            "resume with the same data.sources"
        )
    if kind != "shards":
        return
    for key in (
        "fingerprint",
        "utterances",
        "seed",
        "world_size",
        "streams_per_rank",
        "batch_size",
        "shuffle_buffer",
    ):
        if saved.get(key) != current.get(key):
            hint = {
                "world_size": "the same number of ranks (torchrun --nproc_per_node x --nnodes)",
                "streams_per_rank": "the same data.num_workers",
            }.get(key, "the same shards and data settings")
            raise ConfigError(
                f"{where}: its shard input had {key}={saved.get(key)!r}, this run has "
                f"{current.get(key)!r}; an exact resume needs {hint}"
            )


def _worker_init(_worker_id: int) -> None:
    # workers augment on the CPU; one thread each keeps them from fighting the trainer for cores
    torch.set_num_threads(1)


def make_loader(dataset: ViewBatches, num_workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader over whole batches; order is preserved, so batch k is always step start+k."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        worker_init_fn=_worker_init if num_workers else None,
        persistent_workers=False,
        prefetch_factor=2 if num_workers else None,
        pin_memory=torch.cuda.is_available(),
    )
