"""What every importer shares: safe checkpoint reading, strict state-dict loading, and config
values of the wrong type refused as ``ModelError``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from ..errors import ModelError, first_line


def require(folder: Path, name: str) -> Path:
    """``folder / name``, or a ``ModelError`` naming the missing file."""
    path = folder / name
    if not path.is_file():
        raise ModelError(f"{path}: missing (a {folder.name} model folder needs {name})")
    return path


@contextlib.contextmanager
def foreign_config(path: str | os.PathLike):
    """Reading another toolkit's config: a value of the wrong type or form (a list where a
    number belongs, a mapping for a name) is a ``ModelError`` naming ``path``."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        why = first_line(e)
        raise ModelError(f"{path}: unexpected value in the config ({why})") from None


def load_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, read with ``weights_only=True`` (never unpickling code); a
    ``{"state_dict": ...}``, ``{"model": ...}`` or ``{"model_state": ...}`` (Resemblyzer) wrapper is
    unwrapped."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for unreadable or unsafe files
        first = first_line(e)
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelError(f"{path}: expected a state dict of tensors")
    return data


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load ``state`` into ``module``: every tensor present, every shape equal, or a
    ``ModelError`` that names the first tensors that differ."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or extra or wrong:
        parts = []
        if wrong:
            parts.append(f"shape mismatch: {', '.join(wrong[:3])}")
        if missing:
            parts.append(f"missing: {', '.join(missing[:3])}")
        if extra:
            parts.append(f"unexpected: {', '.join(extra[:3])}")
        raise ModelError(
            f"{source}: the weights do not fit the model its config describes: " + "; ".join(parts)
        )
    module.load_state_dict(state)
