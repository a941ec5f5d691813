"""The embeddings file of ``audiocl embed``: an ``.npz`` with ``ids`` (strings), ``embeddings``
``(N, D)`` float32 (rows L2-normalised) and ``model_id``; written atomically. AS-Norm cohorts
can be given as such a file."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import DataError, ModelError
from ..fileio import atomic_path


def save_embeddings(
    path: str | os.PathLike, ids: Sequence[str], embeddings: np.ndarray, model_id: str
) -> None:
    """Write ``ids`` and their ``embeddings (N, D)`` made by ``model_id`` (atomically)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            ids=np.array(list(ids), dtype=str),
            embeddings=np.ascontiguousarray(embeddings, dtype=np.float32),
            model_id=np.array(model_id),
        )


def load_embeddings(path: str | os.PathLike, model_id: str | None = None):
    """``(ids, embeddings (N, D), model_id)`` of an embeddings file; ``ModelError`` when
    ``model_id`` is given and differs (embeddings of different models are not comparable)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            ids = z["ids"].tolist()
            emb = np.asarray(z["embeddings"], dtype=np.float32)
            mid = str(z["model_id"])
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: not an audiocl embeddings file ({e})") from None
    if model_id is not None and mid != model_id:
        raise ModelError(
            f"{path}: embeddings were made by model {mid!r}, not by the current model "
            f"{model_id!r}; embed the files again with this model"
        )
    return ids, emb, mid
