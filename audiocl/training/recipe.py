"""Training recipes: a YAML config read into ``audiocl.config.Config`` and checked as training
needs it, every named choice against the registry that owns the names (corpus formats, front
ends, encoders, objectives).

``audiocl.config`` holds the dataclasses and imports no registry (the registries import their
config sections); this step sits above both.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from ..config import (
    Config,
    PseudoLabelConfig,
    apply_override,
    check,
    check_choice,
    from_dict,
    parse_yaml,
    resolve_config_path,
    to_dict,
)
from ..data.corpus import FORMATS
from ..errors import ConfigError
from ..nn.encoders import ENCODERS
from ..nn.features import FRONTENDS, WINDOWS
from ..objectives import CONTRASTIVE
from ..objectives.aam import INITS as AAM_INITS
from ..objectives.distill import HEAD_INITS as DISTILL_HEAD_INITS
from ..objectives.distill import LOSSES as DISTILL_LOSSES


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Load a YAML config (or defaults when ``path`` is None), apply overrides, validate."""
    data: dict = {}
    if path is not None:
        path = resolve_config_path(path)
        try:
            data = parse_yaml(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    for assignment in overrides:
        apply_override(data, assignment)
    cfg = from_dict(Config, data)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """A training recipe: ``config.check`` (ranges, the model section), every named choice
    against its registry, and the combinations of sections that training needs."""
    check(cfg)
    o, d = cfg.objective, cfg.data
    check_choice("objective.contrastive", o.contrastive, [*CONTRASTIVE, "none"])
    check_choice("model.encoder", cfg.model.encoder, list(ENCODERS))
    for i, src in enumerate(d.sources):
        check_choice(f"data.sources[{i}].format", src.format, FORMATS)
        if bool(src.path) == bool(src.shards):
            raise ConfigError(
                f"data.sources[{i}]: give one of path (a corpus) or shards (a folder)"
            )
        if src.shards and len(d.sources) > 1:
            raise ConfigError(
                f"data.sources[{i}]: a shards source is the only source of a run; shard the "
                "corpora together (audiocl shard A.csv --out DIR, a CSV of both)"
            )
    shortest = min([d.crop_seconds, *d.crop_mix])
    if shortest * 1000 < cfg.features.win_ms * 2:  # a crop must make a few feature frames
        raise ConfigError(
            f"data.crop_mix / data.crop_seconds: a crop of {shortest} s is shorter than two "
            f"feature windows ({cfg.features.win_ms} ms each)"
        )
    check_choice("objective.embed_from", o.embed_from, ("student", "teacher"))
    check_choice("optim.name", cfg.optim.name, ("adam", "adamw", "sgd"))
    check_choice("optim.schedule", cfg.optim.schedule, ("cosine", "exponential", "constant"))
    check_choice("augment.files", cfg.augment.files, ("all", "train"))
    check_choice("features.window", cfg.features.window, ("default", *WINDOWS))
    check_choice("features.frontend", cfg.features.frontend, list(FRONTENDS))
    m = cfg.model
    if m.members != 1:
        raise ConfigError(
            "model.members: training builds one encoder; make an ensemble of trained models "
            "with `audiocl ensemble`"
        )
    check_choice("train.amp", cfg.train.amp, ("auto", "bf16", "off"))
    check_choice("train.device", cfg.train.device, ("auto", "cpu", "cuda"))
    a = cfg.augment
    if a.speed_as_new_speaker and not (a.enabled and a.speed_p > 0):
        raise ConfigError(
            "augment.speed_as_new_speaker needs augment.enabled and augment.speed_p > 0"
        )
    if a.speed_as_new_speaker and 1.0 in a.speeds:
        raise ConfigError("augment.speeds: with speed_as_new_speaker, 1.0 is the unchanged copy")
    if o.contrastive == "none" and o.contrastive_weight > 0:
        raise ConfigError("objective.contrastive is none but objective.contrastive_weight > 0")
    dl = o.distill
    check_choice("objective.distill.loss", dl.loss, DISTILL_LOSSES)
    check_choice("objective.distill.head_init", dl.head_init, DISTILL_HEAD_INITS)
    if not (math.isfinite(dl.weight) and dl.weight >= 0):
        raise ConfigError(f"objective.distill.weight must be >= 0, got {dl.weight!r}")
    if not (math.isfinite(dl.temperature) and dl.temperature > 0):
        raise ConfigError(f"objective.distill.temperature must be > 0, got {dl.temperature!r}")
    if dl.weight > 0 and not dl.teacher:
        raise ConfigError("objective.distill.weight > 0 needs objective.distill.teacher, a model")
    check_choice("objective.aam_init", o.aam_init, AAM_INITS)
    if o.aam_init == "teacher" and not (dl.weight > 0 and o.aam_weight > 0):
        raise ConfigError(
            "objective.aam_init: teacher needs objective.aam_weight > 0 and a distillation "
            "teacher (objective.distill.weight > 0)"
        )
    if o.aam_init == "init" and not (cfg.train.init and o.aam_weight > 0):
        raise ConfigError(
            "objective.aam_init: init needs objective.aam_weight > 0 and train.init (the model "
            "whose embeddings start the classes)"
        )
    if o.aam_weight == 0 and o.contrastive_weight == 0 and dl.weight == 0:
        raise ConfigError(
            "objective: aam_weight, contrastive_weight and distill.weight must not all be 0"
        )
    if o.contrastive_weight > 0 and d.views < 2:
        raise ConfigError("data.views: contrastive objectives need at least 2 views")
    if cfg.pseudo_labels.clusters > 0 and any(s.shards for s in d.sources):
        raise ConfigError("pseudo_labels: not available with a shards source yet")
    if any(s.hold_out < 0 for s in d.sources):
        raise ConfigError("data.sources: hold_out must be >= 0")
    if any(not 0.0 < s.label_fraction <= 1.0 for s in d.sources):
        raise ConfigError("data.sources: label_fraction must be in (0, 1]")
    with_teacher = [name for name, cls in CONTRASTIVE.items() if cls.has_teacher]
    if o.embed_from == "teacher" and o.contrastive not in with_teacher:
        raise ConfigError(
            f"objective.embed_from: teacher needs an objective with an EMA teacher "
            f"({', '.join(with_teacher)}), not {o.contrastive}"
        )
    pl = cfg.pseudo_labels
    if pl.clusters:
        if pl.clusters < 2:
            raise ConfigError("pseudo_labels.clusters must be 0 (one stage) or >= 2")
        pseudo_label_stage(cfg, "pseudo_labels.csv", "model.pt")  # its errors now, not later
    elif pl.stage2:
        raise ConfigError("pseudo_labels.stage2 is set but pseudo_labels.clusters is 0")


def _merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged in, mapping into mapping; other values are replaced."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def pseudo_label_stage(cfg: Config, manifest: str, init: str) -> Config:
    """The second-stage config of ``cfg`` (``pseudo_labels``): ``stage2`` merged in, trained on
    the labelled CSV ``manifest`` from the encoder in ``init``."""
    data = _merge(to_dict(cfg), cfg.pseudo_labels.stage2)
    data["data"]["sources"] = [{"path": str(manifest), "labelled": True, "format": "csv"}]
    data["train"]["init"] = str(init)
    data["pseudo_labels"] = to_dict(PseudoLabelConfig())
    try:
        out = from_dict(Config, data)
        validate(out)
    except ConfigError as e:
        raise ConfigError(f"pseudo_labels.stage2: {e}") from None
    if out.objective.aam_weight <= 0:
        raise ConfigError(
            "pseudo_labels.stage2: the second stage trains on the pseudo-speakers, so it needs "
            "objective.aam_weight > 0"
        )
    return out
