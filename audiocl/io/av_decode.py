"""Decoding through FFmpeg (PyAV, ``pip install 'audiocl[formats]'``) for what libsndfile cannot
read: m4a/AAC (how VoxCeleb2 ships), mp4, webm/opus from browsers and phones.

``audio.info`` and ``audio.load`` call these only after libsndfile refused a file, so wav, flac,
ogg and mp3 never pay for it. A span read seeks to the container's nearest earlier keyframe and
decodes from there (sample positions follow the container's timestamps: exact for m4a, within
half a millisecond for webm, whose timestamps are in milliseconds), so a 2 s crop of a long file costs about 2.2 s of decoding (0.2 s of decoder pre-roll).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

PREROLL_SECONDS = 0.2


def available() -> bool:
    return importlib.util.find_spec("av") is not None


def _open(path: Path):
    import av

    container = av.open(str(path))
    if not container.streams.audio:
        container.close()
        raise ValueError("no audio stream")
    return container, container.streams.audio[0]


def probe(path: Path) -> tuple[int, int, int]:
    """``(frames, sample_rate, channels)`` from the container (frames estimated from its duration,
    as for mp3). ``ValueError`` or PyAV's own errors when it is not audio."""
    container, stream = _open(path)
    try:
        rate = int(stream.codec_context.sample_rate or stream.sample_rate)
        channels = int(stream.codec_context.channels or 1)
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / 1_000_000  # av.time_base: microseconds
        else:  # no duration in the header (a streamed webm): count by decoding
            seconds = sum(f.samples for f in container.decode(stream)) / rate
        return int(round(seconds * rate)), rate, channels
    finally:
        container.close()


def decode(
    path: Path, start: float | None = None, duration: float | None = None
) -> tuple[np.ndarray, int]:
    """``(data (S, C) float32, sample_rate)`` of the span ``[start, start + duration)`` seconds
    (all of it by default)."""
    import av

    container, stream = _open(path)
    try:
        rate = int(stream.codec_context.sample_rate or stream.sample_rate)
        first = 0 if start is None else int(round(start * rate))
        want = None if duration is None else max(1, int(round(duration * rate)))
        if first and stream.time_base is not None:
            # seek a little early: a decoder (AAC, Opus) needs a frame or two of pre-roll before
            # its output is exact; the samples before ``first`` are dropped below
            target = max(0.0, start - PREROLL_SECONDS)
            container.seek(int(target / stream.time_base), stream=stream, backward=True)
        # packed (interleaved) float, native rate and layout: one plane whatever the channel
        # count (PyAV reads planes past FFmpeg's eight data pointers, a crash at 9+ channels)
        to_float = av.AudioResampler(format="flt")
        parts, have, at = [], 0, None
        for k, frame in enumerate(container.decode(stream)):
            if first and k == 0:
                continue  # after a seek the first frame's timing is unreliable (Opus pre-skip)
            if at is None:  # the sample index of this frame's start; later frames follow on
                at = (
                    round(float(frame.pts * frame.time_base) * rate) if frame.pts is not None else 0
                )
            for out in to_float.resample(frame):
                block = out.to_ndarray().reshape(out.samples, -1)  # (n, C)
                lo = max(0, first - at)
                if lo < block.shape[0]:
                    parts.append(block[lo:])
                    have += block.shape[0] - lo
                at += block.shape[0]
            if want is not None and have >= want:
                break
        if not parts:
            return np.zeros((0, 1), dtype=np.float32), rate
        data = np.concatenate(parts)
        if want is not None:
            data = data[:want]
        return np.ascontiguousarray(data, dtype=np.float32), rate
    finally:
        container.close()


def encode(path: Path, wave: np.ndarray, sample_rate: int, codec: str = "aac") -> None:
    """Write ``wave`` (``(S,)`` mono or ``(C, S)``, float in [-1, 1]) with FFmpeg's ``codec``
    ("aac" for m4a/mp4, "libopus" for webm at 48 kHz) in the container of ``path``'s suffix:
    how tests and benchmarks make the files users bring from phones, browsers and VoxCeleb2."""
    import av

    data = np.atleast_2d(np.asarray(wave, dtype=np.float32))
    layout = {1: "mono", 2: "stereo"}[data.shape[0]]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=sample_rate, layout=layout)
        fmt = stream.codec_context.format.name
        convert = av.AudioResampler(format=fmt, layout=layout, rate=sample_rate)
        step = stream.codec_context.frame_size or 1024
        for i in range(0, data.shape[1], step):
            block = np.ascontiguousarray(data[:, i : i + step])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = sample_rate, i
            for converted in convert.resample(frame):
                for packet in stream.encode(converted):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
