"""The streaming order over a shard set: shards split across ranks and loader workers, each read
front to back, mixed in a shuffle buffer.

Epoch ``e``: the shards are permuted, seeded by ``(seed, e)``, and stream ``g`` of ``G`` (ranks x
streams per rank) takes every ``G``-th one. In an epoch every utterance belongs to exactly one
stream, so no utterance is seen twice across all ranks. A stream reads its shards in turn, each
sequentially, through a shuffle buffer of ``buffer`` utterances; at the end of its epoch the
buffer drains and the stream starts its next epoch. Streams may run a few utterances apart in
their epochs when shard sizes differ (the last shard is short).

The order is a function of the index alone (seed, epoch, stream, buffer size), not of the bytes
read or of timing, so a stream's ``n``-th utterance is found again without reading audio: a
resumed run replays the buffer on the index (about a microsecond per utterance), reads the
utterances the buffer held at that point, and goes on reading sequentially.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ..errors import DataError
from .shards import ShardSet


class ShardReader:
    """Reads utterances of one shard after another through one open file: consecutive members
    of a shard are reads at rising offsets (the tar headers between them skipped), so the
    shard is read front to back."""

    def __init__(self, shards: ShardSet):
        self.shards = shards
        self._file, self._shard = None, -1
        self.opened = 0

    def read(self, i: int) -> bytes:
        k = int(self.shards.shard[i])
        if k != self._shard:
            self.close()
            self._file = open(self.shards.shard_path(k), "rb", buffering=0)  # noqa: SIM115
            self._shard = k
            self.opened += 1
        return self.shards.read(i, self._file)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._shard = None, -1


class ShardStream:
    """Stream ``stream`` of ``streams`` over ``shards`` (see the module): ``items(start)`` yields
    ``(utterance index, audio file bytes)`` from its ``start``-th utterance on, endlessly."""

    def __init__(self, shards: ShardSet, seed: int, stream: int, streams: int, buffer: int):
        if not 0 <= stream < streams:
            raise ValueError(f"stream {stream} of {streams}")
        self.shards, self.seed, self.stream, self.streams = shards, seed, stream, streams
        self.buffer = max(1, buffer)
        order = shards.read_order()
        bounds = np.searchsorted(shards.shard[order], np.arange(len(shards.names) + 1))
        members = [order[bounds[k] : bounds[k + 1]] for k in range(len(shards.names))]
        self.members = [m for m in members if len(m)]  # shards left empty by a source's filters
        if len(self.members) < streams:
            raise DataError(
                f"{shards.root}: {len(self.members)} shards for {streams} input streams (ranks x "
                "loader workers): each stream needs a shard of its own; write smaller shards "
                "(audiocl shard --shard-size) or use fewer data.num_workers"
            )

    def epoch_shards(self, epoch: int) -> list[int]:
        """Positions in ``members`` of the shards this stream reads in ``epoch``, in order."""
        perm = np.random.default_rng([self.seed, 29, epoch]).permutation(len(self.members))
        return perm[self.stream :: self.streams].tolist()

    def epoch_length(self, epoch: int) -> int:
        return sum(len(self.members[k]) for k in self.epoch_shards(epoch))

    def locate(self, position: int) -> tuple[int, int]:
        """``(epoch, utterances already used in it)`` of this stream's ``position``-th one."""
        epoch = 0
        while position >= (n := self.epoch_length(epoch)):
            position -= n
            epoch += 1
        return epoch, position

    def events(self, epoch: int) -> Iterator[tuple[bool, int]]:
        """``(True, i)`` when utterance ``i`` enters the buffer (is read), ``(False, i)`` when it
        leaves it (is used), through ``epoch``."""
        rng = np.random.default_rng([self.seed, 31, epoch, self.stream])
        held: list[int] = []

        def take() -> int:
            k = int(rng.integers(len(held)))
            held[k], held[-1] = held[-1], held[k]
            return held.pop()

        for k in self.epoch_shards(epoch):
            for i in self.members[k].tolist():
                yield True, i
                held.append(i)
                if len(held) >= self.buffer:
                    yield False, take()
        while held:
            yield False, take()

    def order(self, epoch: int) -> list[int]:
        """The utterances in the order this stream uses them in ``epoch`` (no audio read)."""
        return [i for enters, i in self.events(epoch) if not enters]

    def items(
        self, start: int = 0, reader: ShardReader | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """``(utterance index, audio file bytes)`` from this stream's ``start``-th utterance on."""
        reader = reader or ShardReader(self.shards)
        epoch, skip = self.locate(start)
        try:
            while True:
                yield from self._epoch_items(epoch, skip, reader.read)
                epoch, skip = epoch + 1, 0
        finally:
            reader.close()

    def _epoch_items(
        self, epoch: int, skip: int, read: Callable[[int], bytes]
    ) -> Iterator[tuple[int, bytes]]:
        held: dict[int, bytes] = {}
        inside: set[int] = set()
        used = 0
        for enters, i in self.events(epoch):
            if used < skip:  # replaying on the index: only what the buffer holds is tracked
                if enters:
                    inside.add(i)
                else:
                    inside.discard(i)
                    used += 1
                    if used == skip:  # resumed here: read what the buffer held, in file order
                        held = {j: read(j) for j in self.shards.read_order(sorted(inside)).tolist()}
                continue
            if enters:
                held[i] = read(i)
            else:
                yield i, held.pop(i)
