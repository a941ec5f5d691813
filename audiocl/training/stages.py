"""Running a recipe: ``fit(config, run_dir)`` trains its one stage, or, with
``pseudo_labels.clusters``, its stages in turn (``audiocl.training.pseudo_labels``).

The stage runner sits above the trainer: a ``Trainer`` trains one stage and knows nothing of
the others, and this module decides which stages there are, labels the data between them and
hands each stage's model to the next.
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
from pathlib import Path

import torch.distributed as dist

from ..config import Config, PseudoLabelConfig
from ..data.views import open_training_data
from ..errors import ConfigError
from .pseudo_labels import MANIFEST, PRETRAIN, label_with
from .recipe import pseudo_label_stage
from .trainer import Trainer, find_checkpoints, read_metrics, setup_distributed


def fit(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    quiet: bool = False,
    record_last: bool = True,
) -> Path:
    """Train per ``cfg`` into ``run_dir``; returns the run directory (model at ``model.pt``),
    which becomes the default model unless ``record_last`` is False. With
    ``pseudo_labels.clusters`` the run has several stages (``fit_stages``)."""
    try:
        if cfg.pseudo_labels.clusters:
            return fit_stages(cfg, Path(run_dir), resume, quiet, record_last)
        return Trainer(cfg, Path(run_dir), resume=resume, quiet=quiet).run(record_last)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def stage_dirs(run_dir: Path, rounds: int) -> list[Path]:
    """Run directories of the stages: ``pretrain``, ``round1`` .. ``round{rounds-1}``, and
    ``run_dir`` itself for the last round."""
    return [run_dir / PRETRAIN, *(run_dir / f"round{r}" for r in range(1, rounds)), run_dir]


def fit_stages(cfg: Config, run_dir: Path, resume: bool, quiet: bool, record_last: bool) -> Path:
    """The first stage into ``run_dir/pretrain``; then ``pseudo_labels.rounds`` times: label the
    training data with the latest model and train on the labels from it."""
    dirs = stage_dirs(run_dir, cfg.pseudo_labels.rounds)
    if not resume and any(find_checkpoints(d) for d in dirs):
        raise ConfigError(
            f"{run_dir} already holds checkpoints: pass --resume to continue it, "
            "or choose another --out"
        )
    prev_cfg = dataclasses.replace(cfg, pseudo_labels=PseudoLabelConfig())
    corpus = None  # every round labels the whole training data of the first stage
    for prev_dir, out_dir in itertools.pairwise(dirs):
        manifest = out_dir / MANIFEST
        if not (resume and manifest.exists()):
            Trainer(prev_cfg, prev_dir, resume=resume, quiet=quiet).run(record_last=False)
            if corpus is None:
                corpus = open_training_data(cfg.data).corpus
            device = setup_distributed(cfg.train.device)[2]
            label_with(prev_dir / "model.pt", corpus, out_dir, cfg, device, quiet)
        model = (prev_dir / "model.pt").resolve()
        prev_cfg = pseudo_label_stage(cfg, str(manifest.resolve()), str(model))
    return Trainer(prev_cfg, dirs[-1], resume=resume, quiet=quiet).run(record_last)


def measure_step_seconds(cfg: Config, warmup: int = 2, steps: int = 6) -> float:
    """Seconds per training step of ``cfg`` on this machine: the mean over ``steps`` steps after
    ``warmup`` (a throw-away run in a temporary folder). For spending a time budget as steps."""
    n = warmup + steps
    with tempfile.TemporaryDirectory() as tmp:
        short = dataclasses.replace(
            cfg, train=dataclasses.replace(cfg.train, steps=n, log_every=1, dev_every=0)
        )
        fit(short, Path(tmp) / "run", quiet=True, record_last=False)
        t = {r["step"]: r["elapsed_s"] for r in read_metrics(Path(tmp) / "run")}
    return (t[n] - t[warmup]) / steps
