"""Voice activity detection: where the speech is, how much of it there is, and the gate that
rejects recordings without enough of it (silence, hum, DC offset, clipping, digital zero).

Two detectors, one interface ``detector(wave (S,), sample_rate) -> (T,) bool`` over 10 ms frames:

- ``energy`` (default, no dependency): frame energies in dBFS after removing the DC offset. A
  frame is speech when it rises ``margin_db`` above the recording's own noise floor (its 10th
  percentile), lies within ``range_db`` of its loudest frames and above ``floor_db``. Speech
  swings by tens of dB from syllable to pause; a steady signal (hum, tone, fan noise, a clipped
  constant) has no such swing, so none of its frames pass, however loud it is.
- ``silero``: Silero VAD (``pip install silero-vad``, which ships its model), a small neural
  detector; more robust in loud, non-stationary noise, and slower.

``SpeechGate`` applies one: a recording with less detected speech than it needs raises
``AudioError(name, "no speech found ...")``; with ``trim`` the leading and trailing non-speech is
cut (with ``pad`` seconds of margin). A recording needs ``min_speech`` seconds (0.5 s), or, when
shorter than ``min_speech / MIN_FRACTION`` (5 s), a tenth of its length: a one-second keyword
("up", "go") holds 0.15-0.5 s of speech, and a refusal of it would forbid wake-word use, while a
recording with under a tenth of speech is a failed capture at any length.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from ..errors import ConfigError, NoSpeechError

HOP_SECONDS = 0.010
WIN_SECONDS = 0.025
# a recording shorter than min_speech / MIN_FRACTION needs this fraction of it to be speech
MIN_FRACTION = 0.1


@dataclass
class EnergyVAD:
    """Energy detector (see the module docstring). Frames: 25 ms windows every 10 ms."""

    margin_db: float = 6.0
    range_db: float = 45.0
    floor_db: float = -60.0
    min_run: float = 0.05  # speech runs shorter than this are clicks
    max_gap: float = 0.30  # pauses shorter than this are inside speech

    def __call__(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        hop = int(round(HOP_SECONDS * sample_rate))
        win = int(round(WIN_SECONDS * sample_rate))
        x = wave.detach().double().reshape(-1)
        if x.numel() < win:
            return torch.zeros(0, dtype=torch.bool)
        x = x - x.mean()
        power = x.unfold(0, win, hop).square().mean(dim=1)
        db = 10.0 * torch.log10(power + 1e-13)
        floor, top = torch.quantile(db, 0.10), torch.quantile(db, 0.99)
        threshold = max(float(floor) + self.margin_db, float(top) - self.range_db, self.floor_db)
        speech = db > threshold
        speech = _drop_runs(speech, True, int(round(self.min_run / HOP_SECONDS)))
        return _drop_runs(speech, False, int(round(self.max_gap / HOP_SECONDS)), inner=True)


class SileroVAD:
    """Silero VAD from the ``silero-vad`` package (its TorchScript model, loaded once)."""

    def __init__(self, threshold: float = 0.5):
        try:
            from silero_vad import load_silero_vad
        except ImportError:
            raise ConfigError(
                "the silero detector needs the silero-vad package: pip install silero-vad"
            ) from None
        self.model = load_silero_vad()
        self.threshold = threshold

    def __call__(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        from silero_vad import get_speech_timestamps

        if sample_rate not in (8000, 16000):
            from .audio import resample

            wave, sample_rate = resample(wave, sample_rate, 16000), 16000
        hop = int(round(HOP_SECONDS * sample_rate))
        frames = torch.zeros(wave.numel() // hop, dtype=torch.bool)
        stamps = get_speech_timestamps(
            wave.float().reshape(-1), self.model, threshold=self.threshold,
            sampling_rate=sample_rate,
        )  # fmt: skip
        for s in stamps:
            frames[s["start"] // hop : -(-s["end"] // hop)] = True
        return frames


# name -> detector class (plain registry; "energy" is the default)
DETECTORS = {"energy": EnergyVAD, "silero": SileroVAD}


def _drop_runs(mask: torch.Tensor, value: bool, shorter_than: int, inner: bool = False):
    """``mask`` with runs of ``value`` shorter than ``shorter_than`` frames flipped; ``inner``:
    only runs with frames on both sides (a pause before the first word is not a gap)."""
    if shorter_than <= 1 or mask.numel() == 0:
        return mask
    out = mask.clone()
    change = torch.nonzero(mask[1:] != mask[:-1]).reshape(-1) + 1
    starts = torch.cat([torch.tensor([0]), change]).tolist()
    ends = torch.cat([change, torch.tensor([mask.numel()])]).tolist()
    for s, e in zip(starts, ends, strict=True):
        if bool(mask[s]) != value or e - s >= shorter_than:
            continue
        if inner and (s == 0 or e == mask.numel()):
            continue
        out[s:e] = not value
    return out


@dataclass
class SpeechGate:
    """Rejects recordings with less speech than ``needed`` (0 ``min_speech``: no check) and,
    with ``trim``, cuts leading and trailing non-speech, keeping ``pad`` seconds around it."""

    detector: str = "energy"
    min_speech: float = 0.5
    trim: bool = False
    pad: float = 0.1

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise ConfigError(
                f"unknown voice activity detector {self.detector!r}; "
                f"choose one of: {', '.join(DETECTORS)}"
            )
        if self.detector == "silero" and importlib.util.find_spec("silero_vad") is None:
            raise ConfigError(
                "the silero detector needs the silero-vad package: pip install silero-vad"
            )
        if self.min_speech < 0:
            raise ConfigError(f"the minimum of speech must be >= 0 s, got {self.min_speech}")
        self._detect = None

    @property
    def active(self) -> bool:
        return self.trim or self.min_speech > 0

    def key(self) -> str:
        """What changes which files are embedded and how: part of an embedding cache's identity
        (a file cached under one gate was never checked by another)."""
        if not self.active:
            return ""
        return f"{self.detector}-min{self.min_speech:g}" + (
            f"-trim{self.pad:g}" if self.trim else ""
        )

    def needed(self, seconds: float) -> float:
        """Seconds of speech a recording of ``seconds`` must hold: ``min_speech``, or a tenth of
        a recording too short to hold that at a tenth of its length."""
        return min(self.min_speech, MIN_FRACTION * seconds)

    def frames(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """``(T,)`` bool speech mask over 10 ms frames."""
        if self._detect is None:
            self._detect = DETECTORS[self.detector]()
        return self._detect(wave, sample_rate)

    def __call__(self, wave: torch.Tensor, sample_rate: int, name: str) -> torch.Tensor:
        """``wave (S,)`` checked (and trimmed); ``NoSpeechError(name, ...)`` without speech."""
        if not self.active:
            return wave
        speech = self.frames(wave, sample_rate)
        seconds = float(speech.sum()) * HOP_SECONDS
        needed = self.needed(wave.numel() / sample_rate)
        if seconds < needed or seconds == 0:
            raise NoSpeechError(
                name,
                f"no speech found ({seconds:.2f} s of speech detected by the {self.detector} "
                f"detector; at least {needed:.2g} s needed)",
            )
        if not self.trim:
            return wave
        idx = torch.nonzero(speech).reshape(-1)
        hop = HOP_SECONDS * sample_rate
        start = max(0, int((float(idx[0]) * HOP_SECONDS - self.pad) * sample_rate))
        end = min(wave.numel(), int((float(idx[-1]) + 1) * hop + WIN_SECONDS * sample_rate))
        end = min(wave.numel(), end + int(self.pad * sample_rate))
        return wave[start:end]
