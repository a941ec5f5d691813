"""A deterministic split of noise and RIR folders into a training part and a held-out part.

Why: a development set corrupted with the same noise and RIR files that training augments with
rewards memorising those files. ``split_names`` keeps a fixed fraction of the files out of
training, chosen from the file names only (never from their order on disk, the folder they sit
in, the Python hash seed or a random generator):

- a file's *group* is its relative path without the suffix and without a trailing ``_<digits>``
  (``household_aircon_0.flac`` and ``household_aircon_2.flac`` are both ``household_aircon``), so
  cuts of one recording fall on the same side;
- groups are ranked by the SHA-256 of the group name and held out in that order: the shortest
  prefix of groups whose number of files is closest to ``fraction * files`` (at least one group,
  and at least one group left for training).

Training uses ``augment.files: train``: ``audiocl.data.augment`` then keeps only the training part of
``augment.noise_dir`` and ``augment.rir_dir`` (``split_names`` with the default
``HELDOUT_FRACTION``); the held-out part corrupts the noisy dev set
(``scripts/make_noisy_dev.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DataError
from ..io.audio import READ_EXTENSIONS

HELDOUT_FRACTION = 0.3
_TRAILING_INDEX = re.compile(r"_\d+$")


@dataclass(frozen=True, slots=True)
class Split:
    """Relative file names (POSIX, sorted) of the two parts of one folder."""

    train: list[str]
    heldout: list[str]


def group_of(name: str) -> str:
    """The recording a file belongs to: ``"sub/household_aircon_1.flac" -> "sub/household_aircon"``
    (suffix removed, then one trailing ``_<digits>``)."""
    return _TRAILING_INDEX.sub("", PurePosixPath(name).with_suffix("").as_posix())


def _rank_key(group: str) -> tuple[str, str]:
    return hashlib.sha256(group.encode("utf-8")).hexdigest(), group


def split_names(names: list[str], fraction: float = HELDOUT_FRACTION) -> Split:
    """Split relative file names into ``Split(train, heldout)``: groups (``group_of``) ranked by
    the SHA-256 of their name; held out, the shortest prefix of that ranking whose file count is
    closest to ``fraction * len(names)``, with at least one group on each side.
    Needs at least two groups (``DataError`` otherwise)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    names = sorted(set(names))
    groups = sorted({group_of(n) for n in names}, key=_rank_key)
    if len(groups) < 2:
        raise DataError(
            f"cannot split {len(names)} file(s) in {len(groups)} recording group(s): "
            "need at least two groups to have both a training and a held-out part"
        )
    sizes = [sum(group_of(n) == g for n in names) for g in groups]
    target = fraction * len(names)
    counts = [sum(sizes[:k]) for k in range(1, len(groups))]  # prefixes of 1 .. groups-1
    k = 1 + min(range(len(counts)), key=lambda i: (abs(counts[i] - target), i))
    held = set(groups[:k])
    return Split(
        train=[n for n in names if group_of(n) not in held],
        heldout=[n for n in names if group_of(n) in held],
    )


def list_audio(folder: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of the audio files under ``folder`` (recursively, as
    ``audiocl.data.augment`` lists a noise or RIR folder), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    names = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix.lower() in READ_EXTENSIONS and p.is_file()
    )
    if not names:
        raise DataError(f"{folder}: no audio files ({', '.join(READ_EXTENSIONS)})")
    return names


def split_folder(folder: str | os.PathLike, fraction: float = HELDOUT_FRACTION) -> Split:
    """``split_names`` of the audio files of ``folder``."""
    return split_names(list_audio(folder), fraction)
