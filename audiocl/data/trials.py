"""Trial lists: read, write and generate verification trials.

Two formats, auto-detected from the first trial line:
- VoxCeleb: ``1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav`` (label first, 1/0)
- Kaldi:    ``enroll test target`` (or ``nontarget``)
Blank lines and ``#`` comments are ignored; any other malformed line is a DataError giving
``file:line N``.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..fileio import atomic_path

FORMATS = ("voxceleb", "kaldi")
_KALDI_LABELS = {"target": 1, "nontarget": 0}
# make_trials(nontarget_ratio=None) enumerates all pairs; refuse lists larger than this.
MAX_ALL_PAIRS = 50_000_000


@dataclass(frozen=True, slots=True)
class Trial:
    """``label`` 1 = same speaker (target), 0 = different; ``enroll`` and ``test`` are utt ids."""

    label: int
    enroll: str
    test: str


def _detect(fields: list[str]) -> str | None:
    if fields[0] in ("0", "1") and fields[2] not in _KALDI_LABELS:
        return "voxceleb"
    if fields[2] in _KALDI_LABELS:
        return "kaldi"
    return None


def read_trials(path: str | os.PathLike) -> list[Trial]:
    """Read a VoxCeleb or Kaldi trial list (auto-detected). Raises DataError on a missing file,
    a malformed line (with its number) or a file without trials."""
    trials: list[Trial] = []
    fmt = None
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: trial list not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read trial list ({e})") from None
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            raise DataError(
                f"{path}:line {n}: expected 3 fields ('1 enroll test' or "
                f"'enroll test target|nontarget'), got {len(fields)}: {line!r}"
            )
        if fmt is None:
            fmt = _detect(fields)
            if fmt is None:
                raise DataError(
                    f"{path}:line {n}: neither VoxCeleb ('1 enroll test') nor Kaldi "
                    f"('enroll test target|nontarget') format: {line!r}"
                )
        if fmt == "voxceleb":
            if fields[0] not in ("0", "1"):
                raise DataError(f"{path}:line {n}: label must be 0 or 1, got {fields[0]!r}")
            trials.append(Trial(int(fields[0]), fields[1], fields[2]))
        else:
            if fields[2] not in _KALDI_LABELS:
                raise DataError(
                    f"{path}:line {n}: label must be 'target' or 'nontarget', got {fields[2]!r}"
                )
            trials.append(Trial(_KALDI_LABELS[fields[2]], fields[0], fields[1]))
    if not trials:
        raise DataError(f"{path}: trial list has no trials")
    return trials


def write_trials(path: str | os.PathLike, trials: list[Trial], fmt: str = "voxceleb") -> None:
    """Write ``trials`` atomically in ``fmt`` (``voxceleb`` or ``kaldi``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown trial format {fmt!r}; choose one of {FORMATS}")
    buf = io.StringIO()
    for t in trials:
        if any(c.isspace() for c in t.enroll + t.test):
            raise ValueError(f"utterance ids in trial lists cannot contain spaces: {t}")
        if fmt == "voxceleb":
            buf.write(f"{t.label} {t.enroll} {t.test}\n")
        else:
            buf.write(f"{t.enroll} {t.test} {'target' if t.label else 'nontarget'}\n")
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")


def make_trials(corpus, nontarget_ratio: float | None = None, seed: int = 0) -> list[Trial]:
    """Trials from a ``Corpus`` (utt ids of its records).

    ``nontarget_ratio=None``: every unordered pair ``(i < j)`` once. Otherwise every target pair
    plus ``round(ratio * n_target)`` distinct non-target pairs drawn uniformly with
    ``numpy.random.default_rng(seed)`` (all non-target pairs when fewer exist). Deterministic
    per seed; sorted by (enroll, test) position in the corpus.
    """
    n = len(corpus)
    spk = np.asarray(corpus.speaker_ids, dtype=np.int64)
    ids = [corpus.utt_id(i) for i in range(n)]
    total = n * (n - 1) // 2
    if nontarget_ratio is None:
        if total > MAX_ALL_PAIRS:
            raise ValueError(
                f"all pairs of {n} utterances is {total} trials; pass nontarget_ratio to sample"
            )
        i, j = np.triu_indices(n, k=1)
        return [
            Trial(int(spk[a] == spk[b]), ids[a], ids[b])
            for a, b in zip(i.tolist(), j.tolist(), strict=True)
        ]
    if nontarget_ratio < 0:
        raise ValueError(f"nontarget_ratio must be >= 0, got {nontarget_ratio}")
    rng = np.random.default_rng(seed)
    # target pairs: all (i < j) within each speaker
    pairs: list[tuple[int, int]] = []
    order = np.argsort(spk, kind="stable")
    counts = np.bincount(spk) if n else np.zeros(0, np.int64)
    for group in np.split(order, np.cumsum(counts)[:-1]):
        g = np.sort(group)
        a, b = np.triu_indices(len(g), k=1)
        pairs.extend(zip(g[a].tolist(), g[b].tolist(), strict=True))
    n_target = len(pairs)
    n_nontarget_all = total - n_target
    want = min(int(round(nontarget_ratio * n_target)), n_nontarget_all)
    nontarget: set[tuple[int, int]] = set()
    if want > n_nontarget_all // 2:  # dense: enumerate the non-target pairs and choose
        if total > MAX_ALL_PAIRS:
            raise ValueError(f"{want} non-target trials of {n} utterances is too many to draw")
        i, j = np.triu_indices(n, k=1)
        diff = np.flatnonzero(spk[i] != spk[j])
        pick = np.sort(rng.choice(diff, size=want, replace=False))
        nontarget = set(zip(i[pick].tolist(), j[pick].tolist(), strict=True))
    while len(nontarget) < want:  # sparse: rejection sampling of distinct pairs
        k = max(64, math.ceil((want - len(nontarget)) * 1.3))
        a = rng.integers(0, n, k)
        b = rng.integers(0, n, k)
        ok = spk[a] != spk[b]
        lo, hi = np.minimum(a, b)[ok], np.maximum(a, b)[ok]
        for pair in zip(lo.tolist(), hi.tolist(), strict=True):
            if len(nontarget) >= want:
                break
            nontarget.add(pair)
    labelled = [(a, b, 1) for a, b in pairs] + [(a, b, 0) for a, b in nontarget]
    labelled.sort()
    return [Trial(lab, ids[a], ids[b]) for a, b, lab in labelled]
