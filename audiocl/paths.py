"""Where audiocl keeps per-user state: the default speaker store and the last trained model.

``AUDIOCL_HOME`` overrides the directory (tests point it at a temporary folder);
otherwise ``$XDG_DATA_HOME/audiocl`` or ``~/.local/share/audiocl``.
``AUDIOCL_MODEL`` names the default model for enroll/verify/identify/eval/embed; without it
(and before any training) the starter model shipped in the package is the default
(``AUDIOCL_STARTER`` names another file, or "" for none).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelError


def data_dir() -> Path:
    """The per-user data directory (not created here)."""
    if os.environ.get("AUDIOCL_HOME"):
        return Path(os.environ["AUDIOCL_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "audiocl"


def default_store_path() -> Path:
    return data_dir() / "speakers.db"


def record_last_model(model_path: str | os.PathLike) -> None:
    """Remember ``model_path`` as the default model (written by train and quickstart)."""
    from .fileio import write_text_atomic

    write_text_atomic(data_dir() / "last_model", str(Path(model_path).resolve()) + "\n")


# the model shipped inside the package (docs/models.md), used when none was trained or named
STARTER_MODEL = Path(__file__).parent / "pretrained" / "starter.pt"


def starter_model() -> Path | None:
    """The starter model file, if shipped; ``AUDIOCL_STARTER`` names another ("" for none)."""
    override = os.environ.get("AUDIOCL_STARTER")
    path = STARTER_MODEL if override is None else (Path(override) if override else None)
    return path if path is not None and path.is_file() else None


def resolve_model(explicit: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The model to use and where that choice came from: ``--model``, ``AUDIOCL_MODEL``, the
    last model trained, else the starter model shipped in the package. Raises ``ModelError``
    when there is none."""
    pointer = data_dir() / "last_model"
    if explicit:
        path, source = Path(explicit), "--model"
    elif os.environ.get("AUDIOCL_MODEL"):
        path, source = Path(os.environ["AUDIOCL_MODEL"]), "AUDIOCL_MODEL"
    elif pointer.is_file():
        path, source = Path(pointer.read_text(encoding="utf-8").strip()), "last trained model"
    elif starter_model() is not None:
        path, source = starter_model(), "starter model (docs/models.md)"
    else:
        raise ModelError(
            "no model given: pass --model PATH, set AUDIOCL_MODEL, "
            "or train one first (audiocl quickstart)"
        )
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise ModelError(f"{path}: model file not found (from {source})")
    return path, source
