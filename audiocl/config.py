"""Training configuration: YAML mapped onto nested dataclasses.

Unknown keys are errors that name the key; ``--set a.b=v`` overrides are parsed as YAML scalars.
The resolved config is saved into the run directory and into every checkpoint. This module
imports no registry (the registries import their sections): ``check`` covers what any config
must satisfy, and ``audiocl.training.recipe.load_config`` reads a training recipe and checks its
names against the registries.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 would read ``amp: off`` as False."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


@dataclass
class SourceConfig:
    """One training corpus. ``path`` is relative to ``DataConfig.root`` unless absolute.

    ``labelled``: its speaker labels are used by the AAM objective; an unlabelled source
    gets contrastive views only. ``label_fraction``: of a labelled source, only this fraction
    of its speakers keeps its labels (the same speakers in every run: ranked by the SHA-256 of
    their names), for label-efficiency studies. ``hold_out``: this many of its speakers are left
    out of training altogether (the last ones in the same ranking), e.g. to calibrate a model on
    speakers it never saw (``data.held_out_speakers`` lists them). ``format``: "auto" (VoxCeleb
    folder, Kaldi dir or CSV). ``shards``: instead of ``path``, a folder of tar shards written by
    ``audiocl shard``, streamed (``audiocl.data.shard_stream``); it is then the only source.
    """

    path: str = ""
    shards: str = ""
    labelled: bool = True
    label_fraction: float = 1.0
    hold_out: int = 0
    format: str = "auto"


@dataclass
class DataConfig:
    """What to train on and how utterances become views.

    ``views`` global crops of ``crop_seconds`` and ``local_views`` local crops of
    ``local_crop_seconds`` are cut from every utterance and augmented independently.

    ``batch_size`` is per process: with ``torchrun --nproc_per_node N`` the global batch is N times it.
    """

    root: str = "."
    sources: list[SourceConfig] = field(default_factory=list)
    sample_rate: int = 16000
    crop_seconds: float = 2.0
    # a mix of crop lengths, in seconds: each step's global crops take one of them (drawn
    # uniformly, seeded by the step, the same on every rank), so the model also learns from
    # speech as short as a keyword; empty: always crop_seconds
    crop_mix: list[float] = field(default_factory=list)
    views: int = 2
    # global crops from non-overlapping parts of the utterance where it is long enough, so the
    # views of a positive pair share a speaker but little content
    disjoint_crops: bool = False
    # multi-crop: shorter crops that only the student sees (DINO, SwAV, BYOL, MoCo, SimCLR)
    local_views: int = 0
    local_crop_seconds: float = 1.5
    batch_size: int = 32
    num_workers: int = 2
    min_seconds: float = 0.5
    # Each source is drawn with probability proportional to (its size ** balance); 1 = by size.
    balance: float = 1.0
    # train on the labelled utterances only (for AAM alone on partly labelled data)
    labelled_only: bool = False
    # a shards source: utterances each input stream holds to mix the order of what it reads
    # sequentially (memory: about this many FLAC files per loader worker)
    shuffle_buffer: int = 1000


@dataclass
class AugmentConfig:
    """Waveform augmentation applied independently to every view.

    Directories are relative to ``DataConfig.root`` unless absolute; an empty string means
    "simulate" (coloured noise, synthetic RIRs). ``files``: "all" files of ``noise_dir`` and
    ``rir_dir``, or only their "train" part (``audiocl.data.noise_split``; the held-out part makes
    the noisy dev set, ``scripts/make_noisy_dev.py``).
    """

    enabled: bool = True
    files: str = "all"
    noise_dir: str = ""
    noise_p: float = 0.6
    snr_db: list[float] = field(default_factory=lambda: [0.0, 15.0])
    babble_p: float = 0.0
    babble_speakers: list[int] = field(default_factory=lambda: [3, 6])
    babble_snr_db: list[float] = field(default_factory=lambda: [13.0, 20.0])
    rir_dir: str = ""
    reverb_p: float = 0.4
    rt60: list[float] = field(default_factory=lambda: [0.2, 0.8])
    speed_p: float = 0.3
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.1])
    # WeSpeaker's speed perturbation: a sped-up or slowed copy of a speaker is a class of its
    # own (len(speeds) + 1 times the classes), and every view of an example shares its speed
    speed_as_new_speaker: bool = False
    gain_p: float = 0.5
    gain_db: list[float] = field(default_factory=lambda: [-6.0, 6.0])
    # a lossy channel, as Common Voice, browser and phone recordings have: an MP3 round trip at
    # a VBR compression level drawn in codec_levels (0 best .. 0.99 smallest: about 56 .. 18
    # kbit/s for 16 kHz speech; augment.Codec)
    codec_p: float = 0.0
    codec_levels: list[float] = field(default_factory=lambda: [0.3, 0.95])
    # augment each batch on the training device (the GPU) instead of in the loader workers,
    # which then only decode and crop; babble then mixes in the batch's other utterances
    on_device: bool = False


@dataclass
class FeatureConfig:
    """Log-mel filterbank and SpecAugment (the masks apply in training only)."""

    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    preemphasis: float = 0.97
    dither: float = 1.0
    kaldi: bool = False
    window: str = "default"  # povey (Kaldi mode's default) or hamming (otherwise; WeSpeaker's)
    mean_norm: bool = True
    # "fbank" (audiocl's; Kaldi's with kaldi: true) or "speechbrain" (SpeechBrain's Fbank: a
    # centred STFT, HTK mel filters, 80 dB floor under each utterance's peak)
    frontend: str = "fbank"
    n_fft: int = 0  # 0: fbank's smallest power of two >= the window (Kaldi's); speechbrain's window
    low_freq: float = 20.0  # Hz, lowest mel filter edge
    high_freq: float = 0.0  # Hz, highest edge; 0: Nyquist
    specaug_p: float = 0.5
    time_masks: int = 1
    time_mask_max: int = 10
    freq_masks: int = 1
    freq_mask_max: int = 8


@dataclass
class ModelConfig:
    """Encoder choice and sizes. ``encoder`` is a key of ``audiocl.nn.encoders.ENCODERS``."""

    encoder: str = "ecapa_tdnn"
    channels: int = 512
    embed_dim: int = 192
    base_channels: int = 32
    # more than 1: an ensemble of that many encoders of this architecture, made from trained
    # model files by `audiocl ensemble` (training builds one encoder)
    members: int = 1
    # "ecapa_speechbrain" only (SpeechBrain's ECAPA_TDNN layout, for imported models): one entry
    # per layer, the first a conv block, the last the aggregation layer, SE-Res2Net blocks between
    layer_channels: list[int] = field(default_factory=lambda: [512, 512, 512, 512, 1536])
    kernel_sizes: list[int] = field(default_factory=lambda: [5, 3, 3, 3, 1])
    dilations: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 1])
    attention_channels: int = 128
    # "ecapa_tdnn" too: channel groups of each Res2Net conv (8 in the paper; ``channels`` must
    # divide by it)
    res2net_scale: int = 8
    se_channels: int = 128
    global_context: bool = True
    # "ge2e" only (Resemblyzer's GE2E, for imported models): LSTM layers of width ``channels``
    lstm_layers: int = 3


@dataclass
class DistillConfig:
    """Knowledge distillation from a frozen teacher (``audiocl.objectives.distill``): every
    student view is pulled towards the teacher's embedding of the whole clean utterance.

    ``teacher``: any audiocl model file (imported, trained or an ensemble; relative paths are
    read from the working directory). ``weight``: the term's weight in the objective sum (0 =
    off). ``loss``: "cosine" (regression, ``1 - cos``), "clip" (CLIP-style cross-entropy between
    student projections and teacher embeddings across the batch) or "both" (their sum).
    ``temperature``: the CLIP loss's initial temperature (learned). ``head_init``: the student ->
    teacher projection starts "random" or as the "identity" (the student the teacher's size,
    e.g. the teacher itself fine-tuned: train.init = the teacher). ``cache``: where the teacher's
    embeddings are kept, one file per teacher id and speed ("" = the user's embedding cache).
    """

    teacher: str = ""
    weight: float = 0.0
    loss: str = "cosine"
    temperature: float = 0.07
    head_init: str = "random"
    cache: str = ""


@dataclass
class ObjectiveConfig:
    """``aam_weight * AAM + contrastive_weight * contrastive``; either weight may be 0.

    ``contrastive``: a key of ``audiocl.objectives.CONTRASTIVE`` (simclr, moco, byol, dino,
    swav, clip) or "none". ``mask_same_speaker``: in SimCLR and CLIP, other utterances of an
    anchor's own (labelled) speaker are not used as its negatives. ``temperature`` is the
    (student) temperature of SimCLR, MoCo, DINO and SwAV. ``head_hidden`` / ``head_dim`` size
    every projection head (DINO: hidden / bottleneck). ``ema_momentum`` rises to
    ``ema_momentum_final`` on a cosine schedule (BYOL's target, DINO's teacher); MoCo's key
    encoder keeps ``moco_momentum``. ``prototypes``: K of DINO and SwAV. ``embed_from``: which
    encoder the model file gets, the trained "student" or the EMA "teacher" (MoCo, BYOL, DINO;
    DINO's teacher is the better embedder throughout training, as its paper reports).
    """

    contrastive: str = "simclr"
    contrastive_weight: float = 1.0
    temperature: float = 0.1
    mask_same_speaker: bool = True
    head_hidden: int = 512
    head_dim: int = 128
    head_layers: int = 3
    head_bn: bool = True
    moco_queue: int = 4096
    moco_momentum: float = 0.999
    ema_momentum: float = 0.996
    ema_momentum_final: float = 1.0
    prototypes: int = 4096
    teacher_temp: float = 0.07
    teacher_temp_warmup: float = 0.04
    teacher_temp_warmup_fraction: float = 0.2
    center_momentum: float = 0.9
    freeze_prototypes_steps: int = 0
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 3
    swav_queue: int = 0
    clip_init_temperature: float = 0.07
    embed_from: str = "student"
    aam_weight: float = 0.0
    aam_scale: float = 30.0
    aam_margin: float = 0.2
    margin_warmup_start: int = 0
    margin_warmup_steps: int = 0
    # "random" (Xavier), "teacher" or "init": each AAM class starts at the mean of the
    # distillation teacher's (or the train.init model's) embeddings of its utterances (weight
    # imprinting), for fine-tuning a pretrained encoder, which a random classifier would first
    # pull towards random class centres
    aam_init: str = "random"
    distill: DistillConfig = field(default_factory=DistillConfig)


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule: linear warm-up, then cosine or exponential decay
    to ``min_lr`` at ``train.steps``, or constant."""

    name: str = "adamw"
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_steps: int = 100
    schedule: str = "cosine"
    grad_clip: float = 5.0


@dataclass
class TrainConfig:
    """Loop control. ``steps`` is the total number of optimiser steps; ``max_minutes`` stops early
    (0 = no limit) and saves a final checkpoint."""

    seed: int = 0
    steps: int = 1000
    max_minutes: float = 0.0
    log_every: int = 10
    ckpt_every: int = 200
    keep_last: int = 2
    dev_trials: str = ""
    dev_audio_root: str = ""
    dev_every: int = 0
    device: str = "auto"
    amp: str = "auto"
    # encoder weights to start from (a model file or checkpoint), e.g. a self-supervised run;
    # a checkpoint on the same speakers also gives its AAM classifier (fine-tuning)
    init: str = ""
    deterministic: bool = False
    threads: int = 0
    # glibc keeps freed blocks for reuse instead of page-faulting them anew every step
    # (audiocl/training/allocator.py: 1.5-1.65x faster CPU steps); process-wide, so it can be turned off
    keep_freed_memory: bool = True


@dataclass
class PseudoLabelConfig:
    """A second training stage on pseudo-speakers, for data without labels.

    When the first stage ends, its model embeds every training utterance, spherical k-means
    groups them into ``clusters`` pseudo-speakers (clusters smaller than ``min_cluster_size``
    are left out), and a second run trains on those labels from the first stage's encoder.
    ``rounds``: how many times to label the data with the latest model and train again from it.
    ``stage2``: what the second run changes in this config, as a nested mapping of the same keys
    (e.g. ``objective: {contrastive: none, aam_weight: 1.0}``); its sources and ``train.init``
    are set by the stage itself. ``clusters: 0``: one stage only.
    """

    clusters: int = 0
    rounds: int = 1
    min_cluster_size: int = 2
    kmeans_iters: int = 50
    stage2: dict = field(default_factory=dict)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pseudo_labels: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_check_type(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _check_type(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} does not fit {tp}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null")
        return None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys raise ``ConfigError``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key {where}.{unknown[0]} (known: {', '.join(sorted(names))})"
            if where != "config"
            else f"unknown config key {unknown[0]} (known: {', '.join(sorted(names))})"
        )
    kwargs = {
        k: _check_type(v, hints[k], f"{where}.{k}" if where != "config" else k)
        for k, v in data.items()
    }
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config dataclass (YAML- and JSON-serialisable)."""
    return dataclasses.asdict(cfg)


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` override to a nested dict; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. optim.lr=0.01")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part} is not a section")
        node = child
    try:
        node[parts[-1]] = parse_yaml(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {e}") from None


def resolve_config_path(path: str | Path) -> Path:
    """A config path as given, or the name of a config shipped with the package (``quickstart``)."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = Path(__file__).parent / "configs" / (p.name if p.suffix else f"{p.name}.yaml")
    if shipped.is_file():
        return shipped
    raise ConfigError(
        f"{path}: no such config file (shipped configs: {', '.join(shipped_configs())})"
    )


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.yaml"))


# Range of every numeric field: "> 0", ">= 0", ">= 1", ">= 2" or "[0, 1]". A list field's rule
# applies to each item. Keys missing here are unbounded (seeds).
RANGES = {
    "data": {
        "sample_rate": ">= 1",
        "crop_seconds": "> 0",
        "crop_mix": "> 0",
        "views": ">= 1",
        "local_views": ">= 0",
        "local_crop_seconds": "> 0",
        "batch_size": ">= 2",
        "num_workers": ">= 0",
        "min_seconds": ">= 0",
        "balance": ">= 0",
        "shuffle_buffer": ">= 1",
    },
    "augment": {
        "noise_p": "[0, 1]",
        "babble_p": "[0, 1]",
        "babble_speakers": ">= 1",
        "reverb_p": "[0, 1]",
        "rt60": "> 0",
        "speed_p": "[0, 1]",
        "speeds": "> 0",
        "gain_p": "[0, 1]",
        "codec_p": "[0, 1]",
        "codec_levels": "[0, 1]",
    },
    "features": {
        "n_mels": ">= 1",
        "win_ms": "> 0",
        "hop_ms": "> 0",
        "preemphasis": "[0, 1]",
        "dither": ">= 0",
        "n_fft": ">= 0",
        "low_freq": ">= 0",
        "high_freq": ">= 0",
        "specaug_p": "[0, 1]",
        "time_masks": ">= 0",
        "time_mask_max": ">= 0",
        "freq_masks": ">= 0",
        "freq_mask_max": ">= 0",
    },
    "model": {
        "channels": ">= 1",
        "embed_dim": ">= 1",
        "base_channels": ">= 1",
        "members": ">= 1",
        "layer_channels": ">= 1",
        "kernel_sizes": ">= 1",
        "dilations": ">= 1",
        "attention_channels": ">= 1",
        "res2net_scale": ">= 1",
        "se_channels": ">= 1",
        "lstm_layers": ">= 1",
    },
    "objective": {
        "contrastive_weight": ">= 0",
        "temperature": "> 0",
        "head_hidden": ">= 1",
        "head_dim": ">= 1",
        "head_layers": ">= 1",
        "moco_queue": ">= 1",
        "moco_momentum": "[0, 1]",
        "ema_momentum": "[0, 1]",
        "ema_momentum_final": "[0, 1]",
        "prototypes": ">= 2",
        "teacher_temp": "> 0",
        "teacher_temp_warmup": "> 0",
        "teacher_temp_warmup_fraction": "[0, 1]",
        "center_momentum": "[0, 1]",
        "freeze_prototypes_steps": ">= 0",
        "sinkhorn_eps": "> 0",
        "sinkhorn_iters": ">= 1",
        "swav_queue": ">= 0",
        "clip_init_temperature": "> 0",
        "aam_weight": ">= 0",
        "aam_scale": "> 0",
        "aam_margin": ">= 0",
        "margin_warmup_start": ">= 0",
        "margin_warmup_steps": ">= 0",
    },
    "optim": {
        "lr": "> 0",
        "min_lr": ">= 0",
        "weight_decay": ">= 0",
        "momentum": "[0, 1]",
        "warmup_steps": ">= 0",
        "grad_clip": ">= 0",
    },
    "train": {
        "steps": ">= 1",
        "max_minutes": ">= 0",
        "log_every": ">= 1",
        "ckpt_every": ">= 1",
        "keep_last": ">= 1",
        "dev_every": ">= 0",
        "threads": ">= 0",
    },
    "pseudo_labels": {
        "clusters": ">= 0",
        "rounds": ">= 1",
        "min_cluster_size": ">= 1",
        "kmeans_iters": ">= 1",
    },
}
# (low, high) pairs: two items, low <= high
PAIRS = {
    "augment": (
        "snr_db",
        "babble_speakers",
        "babble_snr_db",
        "rt60",
        "speeds",
        "gain_db",
        "codec_levels",
    ),
}


def _in_range(value: float, rule: str) -> bool:
    if rule == "[0, 1]":
        return 0.0 <= value <= 1.0
    op, bound = rule.split()
    return value > float(bound) if op == ">" else value >= float(bound)


def _check_ranges(cfg: Config) -> None:
    for section, rules in RANGES.items():
        node = getattr(cfg, section)
        for key, rule in rules.items():
            value = getattr(node, key)
            for v in value if isinstance(value, list) else [value]:
                if not (math.isfinite(v) and _in_range(v, rule)):
                    raise ConfigError(f"{section}.{key} must be {rule}, got {value!r}")
    for section, keys in PAIRS.items():
        for key in keys:
            value = getattr(getattr(cfg, section), key)
            if len(value) != 2 or value[0] > value[1]:
                raise ConfigError(
                    f"{section}.{key} must be [low, high] with low <= high, got {value!r}"
                )


def check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")


def check(cfg: Config) -> None:
    """What every config must satisfy, trained or imported: each numeric field in its range, and
    the model section buildable. Registry names and training's rules are checked by
    ``audiocl.training.recipe.validate``."""
    _check_ranges(cfg)
    m = cfg.model
    if m.encoder == "ecapa_tdnn" and m.channels % m.res2net_scale:
        raise ConfigError(
            f"model.channels ({m.channels}) must divide by model.res2net_scale ({m.res2net_scale})"
        )
    if m.encoder == "ecapa_speechbrain":
        if not len(m.layer_channels) == len(m.kernel_sizes) == len(m.dilations) >= 3:
            raise ConfigError(
                "model.layer_channels, kernel_sizes and dilations must have one entry per layer "
                "(at least 3)"
            )
        if any(c % m.res2net_scale for c in m.layer_channels[1:-1]):
            raise ConfigError(
                "model.layer_channels: SE-Res2Net widths must divide by res2net_scale"
            )
        if any(k % 2 == 0 for k in m.kernel_sizes):
            raise ConfigError(f"model.kernel_sizes must be odd, got {m.kernel_sizes}")


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    from .fileio import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
