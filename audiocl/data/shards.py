"""Tar shards in the WebDataset convention, and their index.

A shard folder (``audiocl shard``, ``audiocl.data.shard_writer``)::

    shard-000000.tar ...   ``<key>.flac`` (or ``.wav``) + ``<key>.json`` per utterance,
                           ``shard_size`` each
    index.npz              per utterance: its shard, the byte offset and size of its audio in that
                           tar, and the corpus columns (utt id, speaker, duration, sample rate)
    shards.json            the shard list (``url``, ``nsamples``, ``filesize``: the fields of
                           WebDataset's ``wids`` shard index) and how the shards were made

The tars are plain: any WebDataset or ``tar`` tool reads them (``key`` is the utterance's
9-digit position in the written order; its JSON has ``utt_id``, ``speaker``, ``duration``,
``sample_rate`` and ``source``). audiocl itself reads the index, so opening a million utterances
reads one file, and an utterance is one ``seek`` + ``read`` of its audio bytes. FLAC is half the
size; 16-bit WAV members decode several times faster (``benchmarks/bench_input.py``), for
loaders that would otherwise spend their CPU decoding.

Memory: the corpus columns (``audiocl.data.corpus``) plus 28 bytes per utterance (shard int32,
offset, size and key int64); the per-record path is the shard's name (17 + 8 bytes).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..io import audio
from .corpus import Corpus, _Strings

INDEX_NAME = "index.npz"
LIST_NAME = "shards.json"
INDEX_VERSION = 1
AUDIO_FORMATS = ("flac", "wav")  # of the members (16-bit WAV is sliced, not decoded)


def _read_at(f, size: int, offset: int) -> bytes:
    """``size`` bytes of the open file ``f`` from ``offset`` (fewer at its end): positioned
    reads straight into the result, where a buffered file object copies every member through
    its buffer (1.3-1.5x slower from the page cache). Loops, as a read may return less."""
    if hasattr(os, "pread"):
        read = functools.partial(os.pread, f.fileno())
    else:  # Windows

        def read(n: int, at: int) -> bytes:
            f.seek(at)
            return f.read(n)

    parts, got = [], 0
    while got < size:
        part = read(size - got, offset + got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def shard_name(k: int) -> str:
    return f"shard-{k:06d}.tar"


def member_key(pos: int) -> str:
    """The WebDataset key of the utterance written at position ``pos`` (no dots: a key ends at
    the first dot of a member's name)."""
    return f"{pos:09d}"


def is_shard_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / INDEX_NAME).is_file() and (Path(path) / LIST_NAME).is_file()


@dataclass
class ShardSet:
    """The utterances of a shard folder. ``corpus`` holds them sorted by utt id (as every
    corpus); ``shard``, ``offset``, ``size`` and ``key`` ``(N,)`` are aligned with it:
    utterance ``i``'s audio is bytes ``offset[i] : offset[i] + size[i]`` of
    ``root / names[shard[i]]``."""

    root: Path
    names: list[str]
    corpus: Corpus
    shard: np.ndarray
    offset: np.ndarray
    size: np.ndarray
    key: np.ndarray
    fingerprint: str
    audio_format: str = "flac"

    def __len__(self) -> int:
        return len(self.corpus)

    def shard_path(self, k: int) -> Path:
        return self.root / self.names[k]

    def member_name(self, i: int) -> str:
        """What errors call utterance ``i``: ``DIR/shard-000003.tar:000001234.flac``."""
        key = member_key(int(self.key[i]))
        # joined as strings: every crop decoded names its member, and Path joins cost more
        return (
            f"{os.path.join(self.root, self.names[int(self.shard[i])])}:{key}.{self.audio_format}"
        )

    def read(self, i: int, f=None) -> bytes:
        """The audio file bytes of utterance ``i`` (from the open shard ``f`` when given)."""
        if f is None:
            with open(self.shard_path(int(self.shard[i])), "rb", buffering=0) as fh:
                return self.read(i, fh)
        data = _read_at(f, int(self.size[i]), int(self.offset[i]))
        if len(data) != int(self.size[i]):
            raise DataError(f"{self.member_name(i)}: the shard is shorter than its index says")
        return data

    def load(
        self,
        i: int,
        sample_rate: int | None = 16000,
        start: float | None = None,
        duration: float | None = None,
        data: bytes | None = None,
    ) -> torch.Tensor:
        """Utterance ``i`` decoded ``(S,)`` (the span ``start``, ``duration`` in seconds), from
        ``data`` when its bytes are already in memory."""
        blob = self.read(i) if data is None else data
        return audio.load_bytes(blob, self.member_name(i), sample_rate, start, duration)

    def cache_key(self, i: int) -> str:
        """A key for caches of per-utterance results (teacher embeddings): the shard set's
        fingerprint and the utterance's key, so a rewritten set is a new key."""
        return f"shards:{self.fingerprint}:{member_key(int(self.key[i]))}"

    def read_order(self, indices: np.ndarray | None = None) -> np.ndarray:
        """``indices`` (default all) sorted by shard, then by offset: the order that reads each
        shard front to back."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        return idx[np.lexsort((self.offset[idx], self.shard[idx]))]

    def subset(self, indices: np.ndarray) -> ShardSet:
        """The utterances at ``indices`` (a training source's held-out speakers removed)."""
        idx = np.unique(np.asarray(indices, dtype=np.int64))
        return ShardSet(
            self.root,
            self.names,
            self.corpus.subset(idx),
            self.shard[idx],
            self.offset[idx],
            self.size[idx],
            self.key[idx],
            self.fingerprint,
            self.audio_format,
        )


def save_index(
    root: Path,
    corpus: Corpus,
    names: list[str],
    shard: np.ndarray,
    offset: np.ndarray,
    size: np.ndarray,
    key: np.ndarray,
    audio_format: str = "flac",
) -> str:
    """Write ``root/index.npz`` (atomic); the columns are aligned with ``corpus``. Returns the
    set's fingerprint (SHA-256 of the shard names, sizes and member keys)."""
    from ..fileio import atomic_path

    h = hashlib.sha256()
    for name in names:
        h.update(name.encode("utf-8") + b"\0")
    h.update(np.ascontiguousarray(key, np.int64).tobytes())
    h.update(np.ascontiguousarray(size, np.int64).tobytes())
    fingerprint = h.hexdigest()[:16]
    arrays = corpus._to_arrays()
    arrays.update(
        {
            "version": np.array([INDEX_VERSION]),
            "fingerprint": np.frombuffer(fingerprint.encode("ascii"), np.uint8),
            "shard": np.asarray(shard, np.int32),
            "offset": np.asarray(offset, np.int64),
            "size": np.asarray(size, np.int64),
            "key": np.asarray(key, np.int64),
            "audio_format": np.frombuffer(audio_format.encode("ascii"), np.uint8),
            **_Strings.from_list(names).to_arrays("names"),
        }
    )
    with atomic_path(root / INDEX_NAME) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return fingerprint


def open_shards(path: str | os.PathLike) -> ShardSet:
    """The shard folder ``path`` (written by ``audiocl shard``). DataError when it is not one, or
    its index is damaged or from another version."""
    root = Path(path).expanduser().absolute()
    index = root / INDEX_NAME
    if not root.is_dir():
        raise DataError(f"{root}: shard folder not found")
    if not index.is_file():
        raise DataError(f"{root}: no {INDEX_NAME}: not a shard folder (write one: audiocl shard)")
    try:
        with np.load(index, allow_pickle=False) as a:
            a = dict(a)
        version = int(a["version"][0])
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise DataError(f"{index}: damaged shard index ({e}); write the shards again") from None
    if version != INDEX_VERSION:
        raise DataError(
            f"{index}: shard index version {version}, this audiocl reads {INDEX_VERSION}"
        )
    corpus = Corpus._from_arrays(a, str(root), str(root))
    names = _Strings.from_arrays(a, "names").tolist()
    shard = a["shard"]
    if len(shard) != len(corpus) or (len(shard) and int(shard.max()) >= len(names)):
        raise DataError(f"{index}: damaged shard index (columns disagree)")
    return ShardSet(
        root,
        names,
        corpus,
        shard,
        a["offset"],
        a["size"],
        a["key"],
        a["fingerprint"].tobytes().decode("ascii"),
        a["audio_format"].tobytes().decode("ascii"),
    )


def read_list(root: Path) -> dict:
    """``shards.json`` of a shard folder, or {} when it has none yet."""
    try:
        return json.loads((root / LIST_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise DataError(f"{root / LIST_NAME}: cannot read ({e})") from None
