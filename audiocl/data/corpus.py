"""Corpora: a VoxCeleb-layout folder, a Kaldi data dir or a CSV manifest, indexed into one record type.

``open_corpus(source)`` detects the kind of source, reads the durations from the file headers (no
decoding; WAV/FLAC headers parsed directly, in parallel threads) and caches the index as a manifest,
so the second open costs a few ``stat`` calls:

- VoxCeleb folder ``speaker/session/utterance.ext`` (any depth below the speaker folder; hidden
  entries skipped): the cache is ``ROOT/.audiocl_manifest.npz``. It is valid while the root lists
  the same entries and every folder below it keeps its modification time (one ``stat`` per folder,
  none per file); adding, removing or renaming a file changes its folder's mtime, and only the
  files of changed folders get their headers read again. (Rewriting a file in
  place, keeping its name, is not noticed: pass ``cache=False``.) ``utt_id`` is the path relative
  to the root, posix, with extension (``id10270/x6uYqmx31kE/00001.wav``), as in VoxCeleb trial lists.
- Kaldi dir: ``wav.scp`` (``utt path``; piped commands are refused) + ``utt2spk``; ``utt2dur`` is
  used when present. Relative paths are relative to the data dir.
- CSV manifest ``path,speaker[,duration]`` (header line optional; with a header the columns
  ``path, speaker, duration, sample_rate, utt_id`` are found by name, others ignored). Relative
  paths are relative to the CSV's folder. When every row has a duration no header is read and the
  sample rate is recorded as 0 (unknown; ``audio.load`` resamples anyway).
Kaldi and CSV caches (``.audiocl_manifest[.NAME].npz`` beside them) are valid while the list files
keep their size and mtime. When the source folder is not writable the cache goes to
``paths.data_dir()/manifests/<hash of the absolute path>.npz``.

Memory: records are stored as columns, not objects. Paths (relative to one root) and utterance ids
are UTF-8 blobs with int64 offsets, speakers an int32 index into a sorted table, durations float32
and sample rates int32: ``len(path) + 20`` bytes per record when ``utt_id`` is the relative path
(VoxCeleb: 29 + 20 = 49 bytes, so 1.1M VoxCeleb2 utterances take about 54 MB), plus
``len(utt_id) + 8`` when ids differ from paths (Kaldi, CSV). One Python ``Utterance`` per record
would cost about 450 bytes. Records are sorted by ``utt_id``; ``find`` is a binary search.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AudioError, DataError
from ..fileio import atomic_path
from ..io.audio import READ_EXTENSIONS, info

MANIFEST_NAME = ".audiocl_manifest.npz"
_CACHE_VERSION = 2
FORMATS = ("auto", "voxceleb", "kaldi", "csv")


@dataclass(frozen=True, slots=True)
class Utterance:
    """One audio file of one speaker. ``path`` is absolute; ``sample_rate`` 0 means unknown."""

    utt_id: str
    speaker: str
    path: str
    duration: float
    sample_rate: int


class _Strings(Sequence):
    """Many strings in one UTF-8 blob plus ``(n + 1,)`` int64 offsets: ``len + 8`` bytes each."""

    __slots__ = ("blob", "offsets")

    def __init__(self, blob: bytes, offsets: np.ndarray):
        self.blob = blob
        self.offsets = offsets

    @classmethod
    def from_list(cls, items: Iterable[str]) -> _Strings:
        encoded = [s.encode("utf-8") for s in items]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        return cls(b"".join(encoded), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        return self.blob[self.offsets[i] : self.offsets[i + 1]].decode("utf-8")

    def tolist(self) -> list[str]:
        blob, off = self.blob, self.offsets.tolist()
        return [blob[a:b].decode("utf-8") for a, b in zip(off[:-1], off[1:], strict=True)]

    def take(self, index: Iterable[int]) -> _Strings:
        return _Strings.from_list(self[i] for i in index)

    @property
    def nbytes(self) -> int:
        return len(self.blob) + self.offsets.nbytes

    def to_arrays(self, name: str) -> dict[str, np.ndarray]:
        return {f"{name}_blob": np.frombuffer(self.blob, np.uint8), f"{name}_off": self.offsets}

    @classmethod
    def from_arrays(cls, arrays, name: str) -> _Strings:
        return cls(arrays[f"{name}_blob"].tobytes(), np.asarray(arrays[f"{name}_off"], np.int64))


class Corpus:
    """An indexed set of utterances, sorted by ``utt_id``, stored column-wise (see module doc).

    ``skipped`` lists ``(path, reason)`` for files left out: unreadable, or shorter than the
    ``min_duration`` given to ``open_corpus``. ``source`` says where the corpus came from.
    """

    def __init__(
        self,
        root: str,
        paths: _Strings,
        utt_ids: _Strings | None,
        speakers: list[str],
        speaker_ids: np.ndarray,
        durations: np.ndarray,
        sample_rates: np.ndarray,
        skipped: list[tuple[str, str]] | None = None,
        source: str = "",
    ):
        """Low level: columns already sorted by utt id. Use ``open_corpus``, ``from_utterances``
        or ``concat``. ``paths`` are relative to ``root`` (or absolute); ``utt_ids`` None means
        the utt id of a record is its relative path."""
        self._root = root
        self._paths = paths
        self._utts = utt_ids
        self._speakers = speakers
        self._spk = np.asarray(speaker_ids, dtype=np.int32)
        self._dur = np.asarray(durations, dtype=np.float32)
        self._sr = np.asarray(sample_rates, dtype=np.int32)
        self.skipped = list(skipped or [])
        self.source = source

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_utterances(
        cls, utterances: Iterable[Utterance], source: str = "", skipped=None
    ) -> Corpus:
        """Build from records (any order). Duplicate ``utt_id`` -> DataError."""
        utts = list(utterances)
        return cls._build(
            [u.path for u in utts],
            [u.utt_id for u in utts],
            [u.speaker for u in utts],
            [u.duration for u in utts],
            [u.sample_rate for u in utts],
            source=source,
            skipped=skipped,
        )

    @classmethod
    def _build(
        cls,
        paths: list[str],
        utt_ids: list[str] | None,
        speakers: list[str],
        durations,
        sample_rates,
        root: str | None = None,
        source: str = "",
        skipped=None,
    ) -> Corpus:
        """Columns from parallel lists; ``paths`` absolute unless ``root`` is given (then relative
        to it, and ``utt_ids`` None means id = relative path)."""
        if root is None:
            root, paths = _compact_paths(paths)
            if utt_ids is None:
                raise ValueError("utt_ids are required with absolute paths")
        keys = paths if utt_ids is None else utt_ids
        order = sorted(range(len(keys)), key=keys.__getitem__)
        for a, b in zip(order[:-1], order[1:], strict=True):
            if keys[a] == keys[b]:
                raise DataError(f"{source or 'corpus'}: duplicate utterance id {keys[a]!r}")
        table = sorted(set(speakers))
        lookup = {s: i for i, s in enumerate(table)}
        return cls(
            root,
            _Strings.from_list(paths[i] for i in order),
            None if utt_ids is None else _Strings.from_list(utt_ids[i] for i in order),
            table,
            np.fromiter((lookup[speakers[i]] for i in order), np.int32, len(order)),
            np.asarray(durations, dtype=np.float32)[order] if order else np.zeros(0, np.float32),
            np.asarray(sample_rates, dtype=np.int32)[order] if order else np.zeros(0, np.int32),
            skipped=skipped,
            source=source,
        )

    @classmethod
    def concat(cls, corpora: Sequence[Corpus], prefixes: Sequence[str] | None = None) -> Corpus:
        """Mix several corpora into one. With ``prefixes`` (one per corpus) every speaker and
        utt id becomes ``prefix/name`` so sources stay distinct; without, equal speaker names are
        the same speaker and a repeated utt id is a DataError."""
        if prefixes is not None and len(prefixes) != len(corpora):
            raise ValueError(f"{len(prefixes)} prefixes for {len(corpora)} corpora")
        paths: list[str] = []
        utts: list[str] = []
        spks: list[str] = []
        durs, srs, skipped = [], [], []
        for k, c in enumerate(corpora):
            pre = f"{prefixes[k]}/" if prefixes is not None and prefixes[k] else ""
            paths.extend(c._abs_path(p) for p in c._paths.tolist())
            utts.extend(pre + u for u in (c._utts or c._paths).tolist())
            spks.extend(pre + c._speakers[i] for i in c._spk.tolist())
            durs.append(c._dur)
            srs.append(c._sr)
            skipped.extend(c.skipped)
        source = " + ".join(c.source for c in corpora)
        return cls._build(
            paths,
            utts,
            spks,
            np.concatenate(durs) if durs else np.zeros(0, np.float32),
            np.concatenate(srs) if srs else np.zeros(0, np.int32),
            source=source,
            skipped=skipped,
        )

    def subset(self, indices: Iterable[int], speakers: Sequence[str] | None = None) -> Corpus:
        """The records at ``indices`` (kept in utt-id order); speakers left without utterances
        drop out of the speaker table. ``speakers``: new speaker names instead of the records'
        own, one per index (pseudo-speakers)."""
        idx = np.asarray(list(indices), dtype=np.int64)
        if speakers is None:
            idx = np.unique(idx)
            used, spk = np.unique(self._spk[idx], return_inverse=True)
            table = [self._speakers[i] for i in used.tolist()]
        else:
            if len(speakers) != len(idx) or len(np.unique(idx)) != len(idx):
                raise ValueError("subset: one new speaker name per distinct index")
            order = np.argsort(idx)
            idx = idx[order]
            names, spk = np.unique(np.asarray(speakers, dtype=str)[order], return_inverse=True)
            table = names.tolist()
        return Corpus(
            self._root,
            self._paths.take(idx.tolist()),
            None if self._utts is None else self._utts.take(idx.tolist()),
            table,
            spk.astype(np.int32),
            self._dur[idx],
            self._sr[idx],
            skipped=self.skipped,
            source=self.source,
        )

    # ------------------------------------------------------------------ access

    def _abs_path(self, rel: str) -> str:
        return os.path.join(self._root, rel) if self._root else rel

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, i: int) -> Utterance:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"utterance index {i} out of range for a corpus of {n}")
        i %= n
        rel = self._paths[i]
        return Utterance(
            utt_id=rel if self._utts is None else self._utts[i],
            speaker=self._speakers[self._spk[i]],
            path=self._abs_path(rel),
            duration=float(self._dur[i]),
            sample_rate=int(self._sr[i]),
        )

    def __iter__(self) -> Iterator[Utterance]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return (
            f"Corpus({len(self)} utterances, {len(self._speakers)} speakers, "
            f"{float(self._dur.sum()) / 3600:.2f} h, source={self.source!r})"
        )

    @property
    def speakers(self) -> list[str]:
        """Sorted speaker names; ``speaker_ids`` index into this list."""
        return list(self._speakers)

    @property
    def speaker_ids(self) -> np.ndarray:
        """``(N,)`` int32 index into ``speakers`` per utterance (read-only view)."""
        return _readonly(self._spk)

    @property
    def durations(self) -> np.ndarray:
        """``(N,)`` float32 seconds per utterance (read-only view)."""
        return _readonly(self._dur)

    @property
    def sample_rates(self) -> np.ndarray:
        """``(N,)`` int32 native sample rate per utterance, 0 when unknown (read-only view)."""
        return _readonly(self._sr)

    def path(self, i: int) -> str:
        """Absolute path of record ``i`` (cheaper than ``self[i].path``)."""
        return self._abs_path(self._paths[i])

    def utt_id(self, i: int) -> str:
        return (self._paths if self._utts is None else self._utts)[i]

    def by_speaker(self) -> dict[str, list[int]]:
        """Speaker name -> indices of its utterances (ascending)."""
        order = np.argsort(self._spk, kind="stable")
        counts = np.bincount(self._spk, minlength=len(self._speakers))
        groups = np.split(order, np.cumsum(counts)[:-1])
        return {s: g.tolist() for s, g in zip(self._speakers, groups, strict=True) if len(g)}

    def index(self, utt_id: str) -> int:
        """Position of ``utt_id``; DataError when absent. O(log N)."""
        keys = self._paths if self._utts is None else self._utts
        i = bisect.bisect_left(keys, utt_id)
        if i == len(keys) or keys[i] != utt_id:
            raise DataError(f"utterance {utt_id!r} is not in corpus {self.source or '(unnamed)'}")
        return i

    def find(self, utt_id: str) -> Utterance:
        """The record with ``utt_id``; DataError when absent. O(log N)."""
        return self[self.index(utt_id)]

    def __contains__(self, utt_id: object) -> bool:
        if not isinstance(utt_id, str):
            return False
        try:
            self.index(utt_id)
        except DataError:
            return False
        return True

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns (excluding the small speaker table)."""
        n = self._paths.nbytes + self._spk.nbytes + self._dur.nbytes + self._sr.nbytes
        return n + (self._utts.nbytes if self._utts is not None else 0)

    def save_manifest(self, path: str | os.PathLike) -> None:
        """Write a CSV manifest ``path,speaker,duration,sample_rate,utt_id`` (atomic) that
        ``open_corpus`` reads back; paths are relative to the CSV's folder when below it."""
        path = Path(path)
        base = os.path.abspath(path.parent)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "speaker", "duration", "sample_rate", "utt_id"])
        for i in range(len(self)):
            p = self.path(i)
            rel = os.path.relpath(p, base)
            if not rel.startswith(".."):
                p = Path(rel).as_posix()
            spk = self._speakers[self._spk[i]]
            w.writerow([p, spk, f"{self._dur[i]:.4f}", int(self._sr[i]), self.utt_id(i)])
        with atomic_path(path) as tmp:
            tmp.write_text(buf.getvalue(), encoding="utf-8")

    # ------------------------------------------------------------------ cache arrays

    def _to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "root": np.frombuffer(self._root.encode("utf-8"), np.uint8),
            "spk": self._spk,
            "dur": self._dur,
            "sr": self._sr,
            **self._paths.to_arrays("paths"),
            **_Strings.from_list(self._speakers).to_arrays("speakers"),
            **_Strings.from_list(p for p, _ in self.skipped).to_arrays("skip_path"),
            **_Strings.from_list(r for _, r in self.skipped).to_arrays("skip_reason"),
        }
        if self._utts is not None:
            arrays.update(self._utts.to_arrays("utts"))
        return arrays

    @classmethod
    def _from_arrays(cls, a, root: str, source: str) -> Corpus:
        skipped = list(
            zip(
                _Strings.from_arrays(a, "skip_path").tolist(),
                _Strings.from_arrays(a, "skip_reason").tolist(),
                strict=True,
            )
        )
        return cls(
            root,
            _Strings.from_arrays(a, "paths"),
            _Strings.from_arrays(a, "utts") if "utts_blob" in a else None,
            _Strings.from_arrays(a, "speakers").tolist(),
            a["spk"],
            a["dur"],
            a["sr"],
            skipped=skipped,
            source=source,
        )


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def _compact_paths(paths: list[str]) -> tuple[str, list[str]]:
    """(common folder, paths relative to it) for absolute ``paths``."""
    if not paths:
        return "", []
    try:
        root = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # different drives (Windows)
        return "", list(paths)
    cut = len(root.rstrip(os.sep)) + 1
    return root, [p[cut:] for p in paths]


# ---------------------------------------------------------------------------- header reading


def _header(path: str) -> tuple[float, int] | str:
    """(duration, sample_rate) from the header, or the reason the file is unusable."""
    try:
        i = info(path)
    except AudioError as e:
        return e.reason
    return i.duration, i.sample_rate


def read_headers(paths: Sequence[str], workers: int | None = None) -> list[tuple[float, int] | str]:
    """Header of every path, in parallel threads (file I/O releases the GIL), in order.
    Each result is ``(duration, sample_rate)`` or the reason the file was refused."""
    if workers is None:
        workers = min(16, 4 * (os.cpu_count() or 1))
    if workers <= 1 or len(paths) < 64:
        return [_header(p) for p in paths]
    chunk = max(16, min(512, len(paths) // (workers * 4)))
    pieces = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        out: list[tuple[float, int] | str] = []
        for part in pool.map(lambda ps: [_header(p) for p in ps], pieces):
            out.extend(part)
    return out


# ---------------------------------------------------------------------------- the cache


def _cache_paths(source: Path) -> list[Path]:
    """Where the manifest cache of ``source`` may live: beside it, then in the user data dir."""
    from ..paths import data_dir

    if source.is_dir():
        local = source / MANIFEST_NAME
    else:
        local = source.parent / f".audiocl_manifest.{source.name}.npz"
    key = hashlib.sha256(str(source.resolve()).encode("utf-8")).hexdigest()[:20]
    return [local, data_dir() / "manifests" / f"{key}.npz"]


def _load_cache(source: Path, kind: str):
    """The cached arrays (a dict) for ``source``, or None."""
    for p in _cache_paths(source):
        if not p.is_file():
            continue
        try:
            with np.load(p, allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
            if int(a["version"][0]) == _CACHE_VERSION and a["kind"].tobytes().decode() == kind:
                return a
        except (OSError, ValueError, KeyError, EOFError):
            continue
    return None


def _save_cache(source: Path, kind: str, arrays: dict[str, np.ndarray]) -> None:
    arrays = {
        "version": np.array([_CACHE_VERSION]),
        "kind": np.frombuffer(kind.encode(), np.uint8),
        **arrays,
    }
    for p in _cache_paths(source):
        try:
            with atomic_path(p) as tmp, open(tmp, "wb") as f:
                np.savez(f, **arrays)
            return
        except OSError:
            continue  # read-only folder: try the next place


def _file_signature(files: Iterable[Path]) -> str:
    parts = []
    for f in files:
        try:
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
        except FileNotFoundError:
            parts.append(f"{f.name}:-")
    return "|".join(parts)


# ---------------------------------------------------------------------------- VoxCeleb folders


def _root_listing(root: Path) -> str:
    """The root's entries (hidden ones excluded). The root's mtime is not usable: writing the
    manifest into the root changes it."""
    with os.scandir(root) as it:
        return "\n".join(sorted(e.name for e in it if not e.name.startswith(".")))


def _walk(root: Path) -> tuple[list[str], list[str], list[int]]:
    """(audio files, sub-folders, their mtimes) below ``root``, relative posix, hidden entries
    skipped. The root itself is not in the folder list (see ``_root_listing``)."""
    files: list[str] = []
    dirs: list[str] = []
    mtimes: list[int] = []
    stack = [""]
    exts = {e[1:] for e in READ_EXTENSIONS}
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                sub = f"{rel}/{e.name}" if rel else e.name
                if e.is_dir():
                    stack.append(sub)
                    dirs.append(sub)
                    mtimes.append(e.stat().st_mtime_ns)
                elif e.name.rpartition(".")[2].lower() in exts:
                    files.append(sub)
    return files, dirs, mtimes


def _tree_unchanged(root: Path, cached) -> bool:
    """True when the root lists the same entries and every sub-folder has its cached mtime."""
    try:
        if _root_listing(root) != cached["root_listing"].tobytes().decode("utf-8"):
            return False
        dirs = _Strings.from_arrays(cached, "dirs")
        for d, m in zip(dirs.tolist(), cached["dir_mtimes"].tolist(), strict=True):
            if os.stat(os.path.join(root, d)).st_mtime_ns != m:
                return False
    except (OSError, KeyError):
        return False
    return True


def _open_voxceleb(root: Path, cache: bool, workers: int | None) -> Corpus:
    source = str(root)
    cached = _load_cache(root, "voxceleb") if cache else None
    if cached is not None and _tree_unchanged(root, cached):
        return Corpus._from_arrays(cached, str(root), source)

    listing = _root_listing(root)
    files, dirs, mtimes = _walk(root)
    reuse: dict[str, tuple[float, int] | str] = {}
    if cached is not None:  # headers of files in unchanged folders are taken from the cache
        dirs_old = _Strings.from_arrays(cached, "dirs").tolist()
        old = dict(zip(dirs_old, cached["dir_mtimes"].tolist(), strict=True))
        now = dict(zip(dirs, mtimes, strict=True))
        same = {d for d in dirs_old if old[d] == now.get(d)}
        old_corpus = Corpus._from_arrays(cached, str(root), source)
        for i, rel in enumerate(old_corpus._paths.tolist()):
            if rel.rpartition("/")[0] in same:
                reuse[rel] = (float(old_corpus._dur[i]), int(old_corpus._sr[i]))
        base = len(str(root)) + 1
        for p, reason in old_corpus.skipped:
            rel = Path(p[base:]).as_posix()
            if rel.rpartition("/")[0] in same:
                reuse[rel] = reason
    todo = [f for f in files if f not in reuse]
    fresh = read_headers([os.path.join(root, f) for f in todo], workers)
    reuse.update(zip(todo, fresh, strict=True))

    keep, speakers, durs, srs, skipped = [], [], [], [], []
    for rel in files:
        spk, sep, _ = rel.partition("/")
        h = reuse[rel]
        if not sep:
            skipped.append((os.path.join(root, rel), "not inside a speaker folder"))
        elif isinstance(h, str):
            skipped.append((os.path.join(root, rel), h))
        else:
            keep.append(rel)
            speakers.append(spk)
            durs.append(h[0])
            srs.append(h[1])
    corpus = Corpus._build(
        keep, None, speakers, durs, srs, root=str(root), source=source, skipped=skipped
    )
    if cache:
        arrays = corpus._to_arrays()
        arrays.update(_Strings.from_list(dirs).to_arrays("dirs"))
        arrays["dir_mtimes"] = np.asarray(mtimes, dtype=np.int64)
        arrays["root_listing"] = np.frombuffer(listing.encode("utf-8"), np.uint8)
        _save_cache(root, "voxceleb", arrays)
    return corpus


# ---------------------------------------------------------------------------- Kaldi and CSV


def _records_to_corpus(
    paths: list[str],
    utt_ids: list[str],
    speakers: list[str],
    durations: list[float | None],
    sample_rates: list[int],
    workers: int | None,
    source: str,
) -> Corpus:
    """Fill missing durations from the headers and build the corpus (unreadable -> skipped)."""
    todo = [i for i, d in enumerate(durations) if d is None]
    skipped: list[tuple[str, str]] = []
    bad: set[int] = set()
    for i, h in zip(todo, read_headers([paths[i] for i in todo], workers), strict=True):
        if isinstance(h, str):
            skipped.append((paths[i], h))
            bad.add(i)
        else:
            durations[i], sample_rates[i] = h
    keep = [i for i in range(len(paths)) if i not in bad]
    return Corpus._build(
        [paths[i] for i in keep],
        [utt_ids[i] for i in keep],
        [speakers[i] for i in keep],
        [durations[i] for i in keep],
        [sample_rates[i] for i in keep],
        source=source,
        skipped=skipped,
    )


def _read_table(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line number, first field, rest of line) of a Kaldi table file."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, _, rest = line.partition(" ")
            rest = rest.strip()
            if not rest:
                raise DataError(f"{path}:line {n}: expected 'KEY VALUE', got {line!r}")
            yield n, key, rest


def _open_kaldi(folder: Path, workers: int | None) -> Corpus:
    wav_scp, utt2spk, utt2dur = folder / "wav.scp", folder / "utt2spk", folder / "utt2dur"
    if not utt2spk.is_file():
        raise DataError(f"{folder}: Kaldi data dir has wav.scp but no utt2spk")
    spk_of = {k: v for _, k, v in _read_table(utt2spk)}
    dur_of: dict[str, float] = {}
    if utt2dur.is_file():
        for n, k, v in _read_table(utt2dur):
            try:
                dur_of[k] = float(v)
            except ValueError:
                raise DataError(f"{utt2dur}:line {n}: duration {v!r} is not a number") from None
    paths, utts, spks, durs = [], [], [], []
    for n, utt, rest in _read_table(wav_scp):
        if rest.endswith("|"):
            raise DataError(
                f"{wav_scp}:line {n}: piped commands are not supported; "
                "convert the audio to files (wav/flac) and list their paths"
            )
        if utt not in spk_of:
            raise DataError(f"{wav_scp}:line {n}: utterance {utt!r} has no speaker in {utt2spk}")
        paths.append(os.path.normpath(os.path.join(folder, rest)))
        utts.append(utt)
        spks.append(spk_of[utt])
        durs.append(dur_of.get(utt))
    srs = [0] * len(paths)
    return _records_to_corpus(paths, utts, spks, durs, srs, workers, str(folder))


def _open_csv(path: Path, workers: int | None) -> Corpus:
    base = path.parent.resolve()
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    cols = {"path": 0, "speaker": 1, "duration": 2}
    first = 0
    while first < len(rows) and (not rows[first] or rows[first][0].lstrip().startswith("#")):
        first += 1
    header = [c.strip().lower() for c in rows[first]] if first < len(rows) else []
    if "path" in header and "speaker" in header:
        cols = {
            c: header.index(c)
            for c in ("path", "speaker", "duration", "sample_rate", "utt_id")
            if c in header
        }
        first += 1
    paths, utts, spks, durs, srs = [], [], [], [], []
    need = max(cols["path"], cols["speaker"]) + 1
    for n, row in enumerate(rows[first:], first + 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < need:
            raise DataError(
                f"{path}:line {n}: expected path,speaker[,duration], got {','.join(row)!r}"
            )
        raw = row[cols["path"]].strip()
        full = os.path.normpath(os.path.join(base, raw))
        rel = os.path.relpath(full, base)
        paths.append(full)
        spks.append(row[cols["speaker"]].strip())
        if "utt_id" in cols and len(row) > cols["utt_id"] and row[cols["utt_id"]].strip():
            utts.append(row[cols["utt_id"]].strip())
        else:
            utts.append(Path(rel).as_posix() if not rel.startswith("..") else raw)
        dur, sr = None, 0
        try:
            if "duration" in cols and len(row) > cols["duration"] and row[cols["duration"]].strip():
                dur = float(row[cols["duration"]])
            if (
                "sample_rate" in cols
                and len(row) > cols["sample_rate"]
                and row[cols["sample_rate"]].strip()
            ):
                sr = int(row[cols["sample_rate"]])
        except ValueError:
            raise DataError(
                f"{path}:line {n}: duration / sample_rate must be numbers, got {row!r}"
            ) from None
        if not spks[-1] or not raw:
            raise DataError(f"{path}:line {n}: empty path or speaker")
        durs.append(dur)
        srs.append(sr)
    return _records_to_corpus(paths, utts, spks, durs, srs, workers, str(path))


def _open_cached_listfile(source: Path, kind: str, lists: list[Path], build, cache: bool) -> Corpus:
    """Kaldi / CSV: the cache is keyed by size and mtime of the list files."""
    sig = _file_signature(lists)
    if cache:
        a = _load_cache(source, kind)
        if a is not None and a["signature"].tobytes().decode("utf-8") == sig:
            return Corpus._from_arrays(a, a["root"].tobytes().decode("utf-8"), str(source))
    corpus = build()
    if cache:
        arrays = corpus._to_arrays()
        arrays["signature"] = np.frombuffer(sig.encode("utf-8"), np.uint8)
        _save_cache(source, kind, arrays)
    return corpus


# ---------------------------------------------------------------------------- entry point


def open_corpus(
    source: str | os.PathLike,
    cache: bool = True,
    workers: int | None = None,
    min_duration: float = 0.0,
    format: str = "auto",
) -> Corpus:
    """Index ``source``: a VoxCeleb-layout folder, a Kaldi data dir (has ``wav.scp``) or a CSV
    manifest file; ``format`` forces one of ``voxceleb, kaldi, csv``. Header reads use
    ``workers`` threads (default 4 per core, at most 16). Utterances shorter than
    ``min_duration`` seconds and unreadable files are left out and listed in ``corpus.skipped``.
    Raises DataError for a missing source or a malformed list file."""
    if format not in FORMATS:
        raise ValueError(f"unknown corpus format {format!r}; choose one of {FORMATS}")
    src = Path(source).expanduser().absolute()
    if not src.exists():
        raise DataError(f"{src}: corpus not found")
    if format == "auto":
        if src.is_file():
            format = "csv"
        elif (src / "wav.scp").is_file():
            format = "kaldi"
        else:
            format = "voxceleb"
    if format == "csv":
        if not src.is_file():
            raise DataError(f"{src}: a CSV manifest must be a file")
        corpus = _open_cached_listfile(src, "csv", [src], lambda: _open_csv(src, workers), cache)
    elif format == "kaldi":
        lists = [src / "wav.scp", src / "utt2spk", src / "utt2dur"]
        corpus = _open_cached_listfile(
            src, "kaldi", lists, lambda: _open_kaldi(src, workers), cache
        )
    else:
        if not src.is_dir():
            raise DataError(f"{src}: a VoxCeleb-layout corpus must be a folder")
        corpus = _open_voxceleb(src, cache, workers)
    if len(corpus) == 0 and not corpus.skipped:
        raise DataError(f"{src}: no audio files found (extensions {', '.join(READ_EXTENSIONS)})")
    if min_duration > 0:
        short = np.flatnonzero(corpus._dur < min_duration)
        if len(short):
            skipped = corpus.skipped + [
                (corpus.path(i), f"shorter than {min_duration:g} s ({corpus._dur[i]:.3f} s)")
                for i in short.tolist()
            ]
            keep = np.flatnonzero(corpus._dur >= min_duration)
            corpus = corpus.subset(keep)
            corpus.skipped = skipped
    return corpus
