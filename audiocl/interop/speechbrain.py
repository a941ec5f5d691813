"""SpeechBrain's published speaker models (``hyperparams.yaml`` + ``embedding_model.ckpt``, the
layout of ``spkrec-ecapa-voxceleb``) as audiocl models.

``hyperparams.yaml`` is HyperPyYAML. Nothing in it is imported or run here: a ``!new:``,
``!name:`` or ``!apply:`` tag becomes a plain ``Tagged`` record, ``!ref <key>`` is resolved
against the file's own entries, and only what SpeechBrain's ``encode_batch`` uses is read:

- ``compute_features``: ``speechbrain.lobes.features.Fbank`` -> ``features.frontend:
  speechbrain`` (``features.SpeechBrainFbank``);
- ``mean_var_norm``: ``InputNormalization`` with ``norm_type: sentence, std_norm: false`` ->
  ``features.mean_norm`` (absent: no normalisation);
- ``embedding_model``: ``speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN`` -> the
  ``ecapa_speechbrain`` encoder with the same layers.

Each entry is looked up under ``modules:`` first, then at the top level. ``mean_var_norm_emb``
is left out, as ``encode_batch`` leaves it out by default. The weights are SpeechBrain's, renamed
(its ``Conv1d``/``BatchNorm1d`` wrappers add one level of names; its 1x1 convs before the
embedding and in the SE gates are our ``Linear`` layers).
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ..config import Config, check, to_dict
from ..errors import ConfigError, ModelError, first_line
from ..modelfile import checkpoint
from ..nn.encoders import build_encoder
from .common import foreign_config, load_state, load_strict, require

FBANK = "speechbrain.lobes.features.Fbank"
NORM = "speechbrain.processing.features.InputNormalization"
ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
RELU = "torch.nn.ReLU"


@dataclass
class Tagged:
    """A HyperPyYAML ``!kind:target`` node, not built: ``args`` as written (mapping or list)."""

    kind: str
    target: str
    args: Any


@dataclass
class Ref:
    text: str


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps HyperPyYAML's tags as records."""


def _tagged(loader: _Loader, suffix: str, node: yaml.Node, kind: str) -> Tagged:
    if isinstance(node, yaml.MappingNode):
        args: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        args = loader.construct_sequence(node, deep=True)
    else:
        args = loader.construct_scalar(node) or {}
    return Tagged(kind, suffix, args)


for _kind in ("new", "name", "apply", "include"):
    _Loader.add_multi_constructor(
        f"!{_kind}:", lambda loader, suffix, node, k=_kind: _tagged(loader, suffix, node, k)
    )
_Loader.add_constructor("!ref", lambda loader, node: Ref(loader.construct_scalar(node)))
_Loader.add_constructor("!copy", lambda loader, node: Ref(loader.construct_scalar(node)))
_Loader.add_constructor("!tuple", lambda loader, node: list(loader.construct_sequence(node)))
_Loader.add_constructor("!PLACEHOLDER", lambda loader, node: None)

_REF = re.compile(r"<([^<>]+)>")
_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}


def _arith(text: str) -> Any:
    """``text`` as a number when it is arithmetic on numbers (HyperPyYAML allows
    ``!ref <a> * 2``), else ``text`` unchanged."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError

    try:
        return ev(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError):
        return text


class HyperParams:
    """A parsed ``hyperparams.yaml`` whose ``!ref``s resolve on access (``get``)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            first = first_line(e)
            raise ModelError(f"{path}: not a readable HyperPyYAML file ({first})") from None
        if not isinstance(self.raw, dict):
            raise ModelError(f"{path}: expected a mapping of hyperparameters")

    def lookup(self, key: str, seen: tuple = ()) -> Any:
        if key in seen:
            raise ModelError(f"{self.path}: !ref <{key}> refers to itself")
        node: Any = self.raw
        for part in re.split(r"[.\[\]]+", key.strip()):
            if not part:
                continue
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, Tagged) and isinstance(node.args, dict) and part in node.args:
                node = node.args[part]
            else:
                raise ModelError(f"{self.path}: !ref <{key}> names no entry")
        return self.resolve(node, (*seen, key))

    def resolve(self, node: Any, seen: tuple = ()) -> Any:
        if isinstance(node, Ref):
            whole = _REF.fullmatch(node.text.strip())
            if whole:
                return self.lookup(whole.group(1), seen)
            text = _REF.sub(lambda m: str(self.lookup(m.group(1), seen)), node.text)
            return _arith(text)
        if isinstance(node, dict):
            return {k: self.resolve(v, seen) for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve(v, seen) for v in node]
        if isinstance(node, Tagged):
            return Tagged(node.kind, node.target, self.resolve(node.args, seen))
        return node

    def entry(self, name: str) -> Tagged | None:
        """``modules.<name>``, else the top-level ``<name>``, resolved; None when absent."""
        modules = self.raw.get("modules")
        if isinstance(modules, dict) and name in modules:
            node = self.resolve(modules[name])
        elif name in self.raw:
            node = self.resolve(self.raw[name])
        else:
            return None
        if not isinstance(node, Tagged):
            raise ModelError(f"{self.path}: {name} is not a !new: object")
        return node


def _kwargs(hp: HyperParams, name: str, node: Tagged, known: dict[str, Any]) -> dict[str, Any]:
    """``node``'s arguments over ``known`` (the class defaults); any other argument is an
    error that names it."""
    if not isinstance(node.args, dict):
        raise ModelError(f"{hp.path}: {name} ({node.target}) must take named arguments")
    unknown = sorted(set(node.args) - set(known))
    if unknown:
        raise ModelError(f"{hp.path}: {name}: argument {unknown[0]!r} is not supported")
    return {**known, **node.args}


def _expect(hp: HyperParams, name: str, cond: bool, what: str) -> None:
    if not cond:
        raise ModelError(f"{hp.path}: {name}: {what} is not supported")


def _features(hp: HyperParams, c: Config) -> None:
    node = hp.entry("compute_features")
    if node is None or node.target != FBANK:
        found = "nothing" if node is None else node.target
        raise ModelError(f"{hp.path}: compute_features must be {FBANK} (found {found})")
    defaults = {
        "sample_rate": 16000,
        "n_mels": 40,
        "f_min": 0,
        "f_max": None,
        "n_fft": 400,
        "win_length": 25,
        "hop_length": 10,
        "deltas": False,
        "context": False,
        "requires_grad": False,
        "filter_shape": "triangular",
        "param_change_factor": 1.0,
        "param_rand_factor": 0.0,  # training-time jitter
        "left_frames": 5,
        "right_frames": 5,
    }
    a = _kwargs(hp, "compute_features", node, defaults)
    for flag in ("deltas", "context", "requires_grad"):
        _expect(hp, "compute_features", not a[flag], f"{flag}: true")
    _expect(hp, "compute_features", a["filter_shape"] == "triangular", "a non-triangular filter")
    _expect(hp, "compute_features", a["param_change_factor"] == 1.0, "param_change_factor")
    c.data.sample_rate = int(a["sample_rate"])
    f = c.features
    f.frontend, f.n_mels, f.n_fft = "speechbrain", int(a["n_mels"]), int(a["n_fft"])
    f.win_ms, f.hop_ms = float(a["win_length"]), float(a["hop_length"])
    f.low_freq = float(a["f_min"])
    f.high_freq = float(a["f_max"] if a["f_max"] is not None else c.data.sample_rate // 2)
    f.preemphasis, f.dither, f.kaldi = 0.0, 0.0, False
    norm = hp.entry("mean_var_norm")
    f.mean_norm = norm is not None
    if norm is not None:
        _expect(hp, "mean_var_norm", norm.target == NORM, norm.target)
        defaults = {"mean_norm": True, "std_norm": True, "norm_type": "global"}
        defaults |= {"avg_factor": None, "requires_grad": False, "update_until_epoch": 3}
        n = _kwargs(hp, "mean_var_norm", norm, defaults)
        _expect(hp, "mean_var_norm", n["norm_type"] == "sentence", f"norm_type {n['norm_type']}")
        _expect(hp, "mean_var_norm", not n["std_norm"], "std_norm: true")


def _encoder(hp: HyperParams, c: Config) -> None:
    node = hp.entry("embedding_model")
    if node is None or node.target != ECAPA:
        found = "nothing" if node is None else repr(node.target)
        raise ModelError(
            f"{hp.path}: unknown SpeechBrain architecture {found} (supported: {ECAPA})"
        )
    defaults = {
        "input_size": None,
        "device": "cpu",
        "lin_neurons": 192,
        "activation": None,
        "channels": [512, 512, 512, 512, 1536],
        "kernel_sizes": [5, 3, 3, 3, 1],
        "dilations": [1, 2, 3, 4, 1],
        "attention_channels": 128,
        "res2net_scale": 8,
        "se_channels": 128,
        "global_context": True,
        "groups": None,
        "dropout": 0.0,  # training only
    }
    a = _kwargs(hp, "embedding_model", node, defaults)
    act = a["activation"]
    _expect(hp, "embedding_model", act is None or getattr(act, "target", "") == RELU, str(act))
    _expect(hp, "embedding_model", all(g == 1 for g in a["groups"] or [1]), "groups other than 1")
    if a["input_size"] != c.features.n_mels:
        raise ModelError(
            f"{hp.path}: embedding_model input_size {a['input_size']} is not the "
            f"{c.features.n_mels} mel bins of compute_features"
        )
    m = c.model
    m.encoder, m.embed_dim = "ecapa_speechbrain", int(a["lin_neurons"])
    m.layer_channels = [int(x) for x in a["channels"]]
    m.kernel_sizes = [int(x) for x in a["kernel_sizes"]]
    m.dilations = [int(x) for x in a["dilations"]]
    m.attention_channels, m.res2net_scale = int(a["attention_channels"]), int(a["res2net_scale"])
    m.se_channels, m.global_context = int(a["se_channels"]), bool(a["global_context"])
    m.channels = m.layer_channels[1]


def audiocl_config(hp: HyperParams) -> Config:
    """The audiocl config of a SpeechBrain speaker model: front end, normalisation, encoder."""
    c = Config()
    with foreign_config(hp.path):
        _features(hp, c)
        _encoder(hp, c)
    try:
        check(c)
    except ConfigError as e:  # e.g. a layer list audiocl cannot build
        raise ModelError(f"{hp.path}: {e}") from None
    return c


# SpeechBrain name part -> audiocl's, applied in order to ".key."
RENAMES = [
    (".se_block.conv1.conv.", ".se.linear1."),
    (".se_block.conv2.conv.", ".se.linear2."),
    (".conv.conv.", ".conv."),
    (".norm.norm.", ".bn."),
    (".asp_bn.norm.", ".asp_bn."),
    (".shortcut.conv.", ".shortcut."),
    (".fc.conv.", ".fc."),
    (".tdnn1.", ".conv1."),
    (".tdnn2.", ".conv2."),
    (".res2net_block.", ".res2."),
]


def ecapa_state(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict:
    """SpeechBrain ECAPA tensors under audiocl's names; 1x1 conv kernels that are ``Linear``
    weights here lose their last dimension."""
    out = {}
    for key, value in state.items():
        name = f".{key}."
        for old, new in RENAMES:
            name = name.replace(old, new)
        name = name[1:-1]
        if name in own and own[name].dim() == 2 and value.dim() == 3 and value.shape[2] == 1:
            value = value[:, :, 0]
        out[name] = value
    return out


def import_speechbrain(folder: str | Path) -> dict:
    """The audiocl model-file payload of a SpeechBrain speaker-model folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(
            f"{folder}: not a folder (expected hyperparams.yaml and embedding_model.ckpt)"
        )
    hp_path = require(folder, "hyperparams.yaml")
    hp = HyperParams(hp_path)
    cfg = audiocl_config(hp)
    weights = require(folder, "embedding_model.ckpt")
    encoder = build_encoder(cfg.model, cfg.features.n_mels)
    load_strict(encoder, ecapa_state(load_state(weights), encoder.state_dict()), weights)
    payload = checkpoint.make_model_file(encoder.state_dict(), to_dict(cfg), step=0)
    payload.update(
        source="speechbrain",
        name=f"speechbrain/{folder.name}",
        license="the terms the source model was published under (see its model card)",
        source_config=hp_path.read_text(encoding="utf-8"),
    )
    return payload
