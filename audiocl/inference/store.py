"""Enrolled speakers in SQLite: enroll, list, rename, remove, score and identify.

One row per speaker holds the normalised mean embedding (float32), the running sum of the
enrolment embeddings (float64, each L2-normalised first) and their count, so that re-enrolling
with ``mode="add"`` gives exactly the normalised mean over every enrolment file so far.
Each row also records the ``model_id`` of the model that made the embeddings: scoring against a
speaker made by another model is refused, as is enrolling a new model into a store that holds
speakers of another one.

Concurrency: the database runs in WAL mode with a busy timeout; every write is one
``BEGIN IMMEDIATE`` transaction (read-modify-write included), so several processes may enroll
at once without losing updates, and a failure leaves the database as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import ModelMismatchError, StoreArgumentError, StoreError, UnknownSpeakerError

STORE_FORMAT = "audiocl-store-1"
ENROLL_MODES = ("add", "replace")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS speakers (
    name      TEXT PRIMARY KEY NOT NULL,
    model_id  TEXT NOT NULL,
    dim       INTEGER NOT NULL,
    embedding BLOB NOT NULL,     -- float32 (dim,), normalised mean
    emb_sum   BLOB NOT NULL,     -- float64 (dim,), sum of the normalised enrolment embeddings
    count     INTEGER NOT NULL,  -- number of enrolment embeddings in emb_sum
    files     TEXT NOT NULL,     -- JSON list of enrolment files
    created   TEXT NOT NULL,     -- ISO 8601, UTC
    updated   TEXT NOT NULL
);
"""

_COLUMNS = "name, model_id, dim, embedding, count, files, created, updated"


@dataclass(frozen=True)
class SpeakerRecord:
    """One enrolled speaker. ``embedding`` is the L2-normalised mean, ``(dim,)`` float32."""

    name: str
    model_id: str
    dim: int
    embedding: np.ndarray
    count: int
    files: tuple[str, ...]
    created: str
    updated: str

    def to_dict(self, embedding: bool = False) -> dict:
        """JSON-ready dict; the embedding (as a list) only when asked for."""
        d = {
            "name": self.name,
            "model_id": self.model_id,
            "dim": self.dim,
            "count": self.count,
            "files": list(self.files),
            "created": self.created,
            "updated": self.updated,
        }
        if embedding:
            d["embedding"] = self.embedding.tolist()
        return d


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _record(row) -> SpeakerRecord:
    name, model_id, dim, blob, count, files, created, updated = row
    return SpeakerRecord(
        name=name,
        model_id=model_id,
        dim=int(dim),
        embedding=np.frombuffer(blob, dtype=np.float32).copy(),
        count=int(count),
        files=tuple(json.loads(files)),
        created=created,
        updated=updated,
    )


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or name != name.strip():
        raise StoreArgumentError(
            f"invalid speaker name {name!r}: use a non-empty name without surrounding spaces"
        )
    if any(ord(ch) < 32 for ch in name):
        raise StoreArgumentError(
            f"invalid speaker name {name!r}: control characters are not allowed"
        )
    return name


def _unit(emb, what: str) -> np.ndarray:
    """``(N, D)`` or ``(D,)`` -> ``(N, D)`` float64 rows of unit length; StoreError if unusable."""
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise StoreArgumentError(
            f"{what}: expected embeddings of shape (N, D) or (D,), got {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise StoreArgumentError(f"{what}: embedding contains NaN or Inf values")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norm == 0):
        raise StoreArgumentError(f"{what}: embedding is all zeros")
    return x / norm


def _utf8(raw: bytes) -> str:
    """Text of a column; a damaged file's bytes are a database error (so a ``StoreError``),
    not a ``UnicodeDecodeError`` from deep inside sqlite3 (found by fuzzing the store file)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise sqlite3.DatabaseError("text that is not UTF-8 (a damaged file?)") from None


class SpeakerStore:
    """Speaker store in one SQLite file.

    Args:
        path: database file; ``None`` uses ``audiocl.paths.default_store_path()``. Parent
            folders are created; the file and its schema are created on first use.
        model_id: identity of the model whose embeddings are enrolled and scored. Needed by
            ``enroll``, ``score`` and ``identify``; ``get``/``list``/``remove``/``rename`` work
            without it.
        timeout: seconds to wait for another process's write lock before giving up.
    """

    def __init__(
        self, path: str | os.PathLike | None = None, model_id: str | None = None, timeout=30.0
    ):
        if path is None:
            from ..paths import default_store_path

            path = default_store_path()
        self.path = Path(path)
        self.model_id = model_id
        self.timeout = float(timeout)
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a speaker store file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create its folder ({exc.strerror})") from None
        self._init()

    # ------------------------------------------------------------------ connection plumbing

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
            conn.text_factory = _utf8
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open speaker store ({exc})") from None
        return conn

    @contextlib.contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction: ``BEGIN IMMEDIATE`` for writes (the write lock is taken up front, so
        read-modify-write cannot race), deferred for reads. Rolled back on any exception."""
        conn = self._connect()
        try:
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: speaker store error ({exc})") from None
        finally:
            conn.close()

    def _init(self) -> None:
        conn = self._connect()
        try:
            # Switching to WAL needs a moment without other writers; retry while busy.
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise StoreError(
                            f"{self.path}: cannot open speaker store ({exc})"
                        ) from None
                    time.sleep(0.05)
                except sqlite3.DatabaseError as exc:
                    raise StoreError(f"{self.path}: not a speaker store ({exc})") from None
        finally:
            conn.close()
        with self._tx() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if row is None:
                self._set_meta(conn, "format", STORE_FORMAT)
                self._set_meta(conn, "created", _now())
            elif row[0] != STORE_FORMAT:
                raise StoreError(
                    f"{self.path}: store format {row[0]!r} is not supported (expected {STORE_FORMAT!r})"
                )

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _require_model(self, action: str) -> str:
        if not self.model_id:
            raise StoreError(f"cannot {action} without a model: the store needs the model's id")
        return self.model_id

    def _mismatch(self, other: str, n: int) -> StoreError:
        return ModelMismatchError(
            f"speaker store {self.path} holds {n} speaker(s) enrolled with model {other!r}, "
            f"but the current model is {self.model_id!r}: embeddings of different models cannot "
            "be compared; use that model, another store (--db), or re-enroll the speakers"
        )

    def _check_foreign(self, conn: sqlite3.Connection) -> None:
        row = conn.execute(
            "SELECT model_id, COUNT(*) FROM speakers WHERE model_id != ? "
            "GROUP BY model_id ORDER BY COUNT(*) DESC LIMIT 1",
            (self.model_id,),
        ).fetchone()
        if row is not None:
            raise self._mismatch(row[0], row[1])

    def check_model(self) -> None:
        """``ModelMismatchError`` when the store holds speakers of a model other than
        ``model_id`` (checked before embedding anything, so no time is spent in vain)."""
        if self.model_id:
            with self._tx(write=False) as conn:
                self._check_foreign(conn)

    # ---------------------------------------------------------------------------- queries

    def get(self, name: str) -> SpeakerRecord:
        """The record of ``name``; StoreError if not enrolled."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM speakers WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            raise UnknownSpeakerError(f"unknown speaker {name!r} in {self.path}")
        return _record(row)

    def __contains__(self, name: str) -> bool:
        with self._tx(write=False) as conn:
            return (
                conn.execute("SELECT 1 FROM speakers WHERE name = ?", (name,)).fetchone()
                is not None
            )

    def __len__(self) -> int:
        with self._tx(write=False) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM speakers").fetchone()[0])

    def enroll(self, name: str, embeddings, files=(), mode: str = "add") -> SpeakerRecord:
        """Enroll ``name`` from ``embeddings`` ``(N, D)`` or ``(D,)`` (one per enrolment file).

        Each embedding is L2-normalised, then the speaker's embedding is the normalised mean of
        all its enrolment embeddings: with ``mode="add"`` those already stored plus these, with
        ``mode="replace"`` these only. ``files`` (paths, any length) are recorded likewise.

        Raises StoreError: bad name/mode/embedding, a dimension that differs from the stored
        one (mode="add"), no model_id, or a store holding speakers of another model.
        """
        _check_name(name)
        if mode not in ENROLL_MODES:
            raise StoreArgumentError(
                f"unknown enroll mode {mode!r}; choose from {', '.join(ENROLL_MODES)}"
            )
        model_id = self._require_model("enroll")
        x = _unit(embeddings, f"enroll {name!r}")
        files = [str(f) for f in files]
        with self._tx() as conn:
            self._check_foreign(conn)
            now = _now()
            row = conn.execute(
                "SELECT dim, emb_sum, count, files, created FROM speakers WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and mode == "add":
                dim, blob, count, old_files, created = row
                if dim != x.shape[1]:
                    raise StoreError(
                        f"speaker {name!r} was enrolled with {dim}-dim embeddings, got "
                        f"{x.shape[1]}-dim; use mode='replace' to start over"
                    )
                total = np.frombuffer(blob, dtype=np.float64) + x.sum(axis=0)
                count = int(count) + x.shape[0]
                files = json.loads(old_files) + files
            else:
                total, count = x.sum(axis=0), x.shape[0]
                created = row[4] if row is not None else now
            norm = np.linalg.norm(total)
            if norm == 0:
                raise StoreError(f"enroll {name!r}: the enrolment embeddings cancel out")
            mean = (total / norm).astype(np.float32)
            conn.execute(
                "INSERT INTO speakers (name, model_id, dim, embedding, emb_sum, count, files, "
                "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET model_id = excluded.model_id, "
                "dim = excluded.dim, embedding = excluded.embedding, emb_sum = excluded.emb_sum, "
                "count = excluded.count, files = excluded.files, updated = excluded.updated",
                (
                    name,
                    model_id,
                    int(x.shape[1]),
                    mean.tobytes(),
                    np.asarray(total, dtype=np.float64).tobytes(),
                    count,
                    json.dumps(files),
                    created,
                    now,
                ),
            )
            self._set_meta(conn, "model_id", model_id)
            self._set_meta(conn, "updated", now)
            record = conn.execute(
                f"SELECT {_COLUMNS} FROM speakers WHERE name = ?", (name,)
            ).fetchone()
        return _record(record)

    def remove(self, name: str) -> SpeakerRecord:
        """Delete ``name`` and return its record; StoreError if not enrolled."""
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM speakers WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise UnknownSpeakerError(f"unknown speaker {name!r} in {self.path}")
            conn.execute("DELETE FROM speakers WHERE name = ?", (name,))
        return _record(row)

    def rename(self, old: str, new: str) -> SpeakerRecord:
        """Rename ``old`` to ``new``; StoreError if ``old`` is unknown or ``new`` is taken."""
        _check_name(new)
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM speakers WHERE name = ?", (old,)).fetchone() is None:
                raise UnknownSpeakerError(f"unknown speaker {old!r} in {self.path}")
            if (
                old != new
                and conn.execute("SELECT 1 FROM speakers WHERE name = ?", (new,)).fetchone()
            ):
                raise StoreError(f"cannot rename {old!r}: a speaker named {new!r} already exists")
            conn.execute(
                "UPDATE speakers SET name = ?, updated = ? WHERE name = ?", (new, _now(), old)
            )
            row = conn.execute(f"SELECT {_COLUMNS} FROM speakers WHERE name = ?", (new,)).fetchone()
        return _record(row)

    def score(self, name: str, emb) -> float:
        """Cosine of ``emb`` ``(D,)`` with speaker ``name``'s embedding, in [-1, 1].

        StoreError if ``name`` is unknown, was enrolled with another model, or has another dim.
        """
        self._require_model("score")
        record = self.get(name)
        if record.model_id != self.model_id:
            raise self._mismatch(record.model_id, 1)
        v = _unit(emb, "score")
        if v.shape != (1, record.dim):
            raise StoreError(
                f"score: expected one {record.dim}-dim embedding for {name!r}, got shape "
                f"{np.shape(emb)}"
            )
        return float(np.clip(v[0] @ record.embedding.astype(np.float64), -1.0, 1.0))

    def identify(self, emb, top: int = 5) -> list[tuple[str, float]]:
        """The ``top`` enrolled speakers closest to ``emb`` ``(D,)``: ``[(name, cosine), ...]``,
        best first.

        StoreError if the store is empty, holds speakers of another model, or dims differ.
        """
        self._require_model("identify")
        if top < 1:
            raise StoreArgumentError(f"top must be at least 1, got {top}")
        v = _unit(emb, "identify")
        with self._tx(write=False) as conn:
            self._check_foreign(conn)
            rows = conn.execute("SELECT name, dim, embedding FROM speakers").fetchall()
        if not rows:
            raise StoreError(f"no speakers enrolled in {self.path}; enroll some first")
        dims = {r[1] for r in rows}
        if dims != {v.shape[1]} or v.shape[0] != 1:
            raise StoreError(
                f"identify: expected one {sorted(dims)[0]}-dim embedding, got shape {np.shape(emb)}"
            )
        names = [r[0] for r in rows]
        matrix = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
        scores = np.clip(matrix.astype(np.float64) @ v[0], -1.0, 1.0)
        k = min(top, len(names))
        best = np.argpartition(-scores, k - 1)[:k] if k < len(names) else np.arange(len(names))
        best = sorted(best.tolist(), key=lambda i: (-scores[i], names[i]))
        return [(names[i], float(scores[i])) for i in best]

    def list(self) -> list[SpeakerRecord]:
        """Every enrolled speaker, sorted by name (any model)."""
        with self._tx(write=False) as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM speakers ORDER BY name").fetchall()
        return [_record(r) for r in rows]
