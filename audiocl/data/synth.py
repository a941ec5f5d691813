"""Synthetic voices: a source-filter model of speech, for tests, the quickstart and README examples.

Each *speaker* (``Voice``) has its own fundamental-frequency range, vocal-tract length (all
formants scaled together), per-vowel formant idiosyncrasies, formant bandwidths, glottal pulse
shape (open quotient), spectral tilt, breathiness, jitter, shimmer and speaking rate.
Each *utterance* is a new random sequence of syllables -- vowel-like segments (glottal pulses
through a cascade of five time-varying formant resonators, with coarticulated transitions),
consonant-like segments (band-pass frication, plosive closures and bursts, nasals, /h/) -- and
pauses, with its own F0 contour (declination + random intonation), speaking-rate variation,
loudness and a little channel colouring. Each *session* of a speaker adds a recording channel
(band limits, two peaking EQs, a faint noise floor), so that the same voice sounds different
across sessions, as in VoxCeleb.

Speed: about 190x real time on one CPU core at 16 kHz (``synthesize_utterance``: 185-210x measured
on the development machine; about 150x including FLAC writing; ``audiocl synth`` prints the
factor it achieved). The five formant resonators are multiplied out into one 10th-order all-pole
filter per 5 ms frame (vectorised over frames) and run with ``scipy.signal.lfilter`` carrying the
state across frames, like an LPC synthesiser; everything else is vectorised numpy.

Determinism: every speaker, session and utterance draws from its own
``numpy.random.SeedSequence([seed, speaker_id, ...])``, so a corpus is a pure function of its
arguments and adding speakers or utterances never changes the existing ones.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from scipy import signal

from ..errors import DataError
from ..fileio import write_text_atomic
from ..io.audio import save
from .corpus import Corpus, Utterance
from .trials import make_trials, write_trials

# Reference (adult male, Peterson & Barney style) F1-F3 in Hz for ten vowels.
_VOWELS = np.array(
    [
        [270, 2290, 3010],  # i
        [390, 1990, 2550],  # I
        [530, 1840, 2480],  # e
        [660, 1720, 2410],  # ae
        [730, 1090, 2440],  # a
        [570, 840, 2410],  # o
        [440, 1020, 2240],  # U
        [300, 870, 2240],  # u
        [640, 1190, 2390],  # V
        [490, 1350, 1690],  # er
    ],
    dtype=np.float64,
)
_NASAL = np.array([280.0, 1100.0, 2300.0])
_BANDWIDTHS = np.array([70.0, 90.0, 130.0, 180.0, 260.0])
# Consonant classes: (kind, frication low Hz, frication high Hz) before vocal-tract scaling.
_FRICATIVES = [(2500.0, 3800.0), (3800.0, 7000.0), (1200.0, 6500.0), (1600.0, 3000.0)]
_BURSTS = [(500.0, 1800.0), (1500.0, 4000.0), (2500.0, 6500.0)]

SESSIONS = 2


@dataclasses.dataclass(frozen=True)
class Voice:
    """One synthetic speaker. Frequencies in Hz; levels are linear amplitude ratios."""

    f0: float  # mean fundamental frequency
    f0_range: float  # intonation range, semitones (std of the random contour)
    vtl: float  # formant scale: 1 = reference adult male; >1 = shorter vocal tract
    formants: np.ndarray  # (10, 5) per-vowel formant targets, F4/F5 speaker-specific
    bandwidths: np.ndarray  # (5,)
    open_quotient: float  # glottal open phase, fraction of the period
    tilt: float  # one-pole low-pass coefficient on the source (0 = flat, 0.9 = dark)
    breathiness: float  # aspiration noise relative to voicing
    jitter: float  # relative std of period-to-period F0 perturbation
    shimmer: float  # relative std of period-to-period amplitude perturbation
    rate: float  # speaking-rate factor: >1 = faster
    frication: float  # frication loudness relative to vowels
    vowel_weights: np.ndarray  # (10,) idiolect: how often each vowel is used


@dataclasses.dataclass(frozen=True)
class Channel:
    """A recording channel: a cascade of biquads ``sos (K, 6)`` and a noise floor (dB re. speech)."""

    sos: np.ndarray
    noise_db: float


def synth_voice_params(rng: np.random.Generator) -> Voice:
    """Draw a random speaker. A latent 0..1 "size" couples F0 and vocal-tract length loosely,
    as in real voices (low deep voices tend to have long vocal tracts), with independent spread."""
    size = rng.uniform(0.0, 1.0)
    f0 = 90.0 * 2.3**size * np.exp(rng.normal(0.0, 0.08))
    vtl = (0.93 + 0.27 * size) * np.exp(rng.normal(0.0, 0.04))
    idio = np.exp(rng.normal(0.0, 0.06, size=(10, 3)))  # per-vowel formant idiosyncrasy
    f123 = _VOWELS * vtl * idio
    f123[:, 1] = np.maximum(f123[:, 1], f123[:, 0] + 200.0)
    f123[:, 2] = np.maximum(f123[:, 2], f123[:, 1] + 250.0)
    f4 = 3400.0 * vtl * np.exp(rng.normal(0.0, 0.06))
    f5 = 4500.0 * vtl * np.exp(rng.normal(0.0, 0.06))
    f4 = max(f4, float(f123[:, 2].max()) + 250.0)
    f5 = max(f5, f4 + 500.0)
    formants = np.concatenate([f123, np.full((10, 1), f4), np.full((10, 1), f5)], axis=1)
    bandwidths = _BANDWIDTHS * np.exp(rng.normal(0.0, 0.25)) * np.exp(rng.normal(0.0, 0.1, 5))
    return Voice(
        f0=float(f0),
        f0_range=float(rng.uniform(0.8, 3.0)),
        vtl=float(vtl),
        formants=formants,
        bandwidths=bandwidths,
        open_quotient=float(rng.uniform(0.4, 0.8)),
        tilt=float(rng.uniform(0.1, 0.85)),
        breathiness=float(np.exp(rng.uniform(np.log(0.01), np.log(0.3)))),
        jitter=float(rng.uniform(0.002, 0.02)),
        shimmer=float(rng.uniform(0.02, 0.12)),
        rate=float(np.exp(rng.uniform(np.log(0.75), np.log(1.35)))),
        frication=float(np.exp(rng.normal(np.log(0.25), 0.4))),
        vowel_weights=rng.dirichlet(np.full(10, 2.0)),
    )


def synth_channel(rng: np.random.Generator, sample_rate: int = 16000) -> Channel:
    """Draw a random recording channel: band limits, two peaking EQs, a faint noise floor."""
    nyq = sample_rate / 2
    hp = rng.uniform(50.0, 250.0)
    lp = min(rng.uniform(3600.0, 7600.0), 0.9 * nyq)
    sos = [signal.butter(2, hp, "highpass", fs=sample_rate, output="sos")]
    sos.append(signal.butter(2, lp, "lowpass", fs=sample_rate, output="sos"))
    for _ in range(2):
        f = np.exp(rng.uniform(np.log(200.0), np.log(min(5000.0, 0.8 * nyq))))
        sos.append(_peaking(f, rng.normal(0.0, 4.0), rng.uniform(0.7, 2.0), sample_rate))
    return Channel(np.concatenate(sos), float(rng.uniform(-55.0, -35.0)))


def _peaking(freq: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """RBJ-cookbook peaking EQ as one ``(1, 6)`` second-order section."""
    a = 10.0 ** (gain_db / 40.0)
    w = 2.0 * np.pi * freq / sample_rate
    alpha = np.sin(w) / (2.0 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w), 1 - alpha / a])
    return np.concatenate([b / den[0], den / den[0]])[None, :]


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average along axis 0 with edge padding (keeps the length)."""
    if width <= 1:
        return x
    k = np.ones(width) / width
    pad = [(width // 2, width - 1 - width // 2)] + [(0, 0)] * (x.ndim - 1)
    xp = np.pad(x, pad, mode="edge")
    if x.ndim == 1:
        return np.convolve(xp, k, mode="valid")
    return np.stack([np.convolve(xp[:, j], k, mode="valid") for j in range(x.shape[1])], axis=1)


def _plan(voice: Voice, rng: np.random.Generator, seconds: float, hop_s: float):
    """Segment plan of one utterance on a frame grid of ``hop_s`` seconds.

    Returns per-frame voicing/aspiration amplitudes, formant targets (NaN where not set) and the
    list of frication events ``(start_s, end_s, low_hz, high_hz, amplitude)``.
    """
    n = int(np.ceil(seconds / hop_s))
    av = np.zeros(n)
    ah = np.zeros(n)
    form = np.full((n, 5), np.nan)
    fric = []
    rate = voice.rate * np.exp(rng.normal(0.0, 0.08))
    nasal = np.concatenate([_NASAL * voice.vtl, voice.formants[0, 3:]])

    def frames(t0, t1):
        return slice(int(round(t0 / hop_s)), max(int(round(t1 / hop_s)), int(round(t0 / hop_s))))

    def consonant(t):
        kind = rng.choice(5, p=[0.35, 0.25, 0.2, 0.1, 0.1])
        if kind == 0:  # fricative, sometimes voiced
            d = rng.uniform(0.05, 0.13) / rate
            lo, hi = _FRICATIVES[rng.integers(len(_FRICATIVES))]
            voiced = rng.random() < 0.35
            if voiced:
                av[frames(t, t + d)] = 0.3
            fric.append((t, t + d, lo * voice.vtl, hi * voice.vtl, voice.frication))
        elif kind == 1:  # plosive: closure (voice bar when voiced) + burst
            d = rng.uniform(0.03, 0.07) / rate
            if rng.random() < 0.5:
                av[frames(t, t + d)] = 0.08
            lo, hi = _BURSTS[rng.integers(len(_BURSTS))]
            fric.append((t + d, t + d + 0.015, lo * voice.vtl, hi * voice.vtl, 2 * voice.frication))
            d += 0.015
        elif kind == 2:  # nasal
            d = rng.uniform(0.04, 0.09) / rate
            av[frames(t, t + d)] = 0.4
            form[frames(t, t + d)] = nasal
        elif kind == 3:  # /h/: aspiration through the next vowel's tract
            d = rng.uniform(0.04, 0.08) / rate
            ah[frames(t, t + d)] = 0.5
        else:  # approximant: weak voiced, formants glide
            d = rng.uniform(0.04, 0.08) / rate
            av[frames(t, t + d)] = 0.6
            form[frames(t, t + d)] = voice.formants[rng.integers(10)]
        return t + d

    t = rng.uniform(0.05, 0.3)
    end = seconds - rng.uniform(0.05, 0.25)
    while t < end - 0.1:
        if rng.random() < 0.75:
            t = consonant(t)
        d = rng.uniform(0.06, 0.2) / rate
        d = min(d, max(end - t, 0.03))
        v1 = rng.choice(10, p=voice.vowel_weights)
        sl = frames(t, t + d)
        av[sl] = np.exp(rng.normal(0.0, 0.25))
        if rng.random() < 0.25:  # diphthong: glide to a second vowel
            v2 = rng.choice(10, p=voice.vowel_weights)
            w = np.linspace(0.0, 1.0, len(av[sl]))[:, None]
            form[sl] = (1 - w) * voice.formants[v1] + w * voice.formants[v2]
        else:
            form[sl] = voice.formants[v1]
        t += d
        if t < end and rng.random() < 0.3:
            t = consonant(t)
        if rng.random() < 0.12:
            t += rng.uniform(0.08, 0.35)  # pause
    return av, ah, form, fric


def _f0_contour(voice: Voice, rng: np.random.Generator, n: int, hop_s: float) -> np.ndarray:
    """Per-frame F0 in Hz: utterance offset + declination + smooth random intonation."""
    f0 = voice.f0 * np.exp(rng.normal(0.0, 0.05))
    decl = np.linspace(1.0, -1.0, n) * rng.uniform(0.5, 2.5)
    knot = 0.25
    k = int(np.ceil(n * hop_s / knot)) + 2
    vals = rng.normal(0.0, voice.f0_range, size=k)
    rnd = np.interp(np.arange(n) * hop_s / knot, np.arange(k), vals)
    rnd = _smooth(rnd, max(1, int(0.1 / hop_s)))
    return f0 * 2.0 ** ((decl + rnd) / 12.0)


def _glottal_source(
    voice: Voice, rng: np.random.Generator, f0: np.ndarray, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Glottal-flow-derivative pulse train with jitter/shimmer, and the open-phase mask."""
    n = len(f0)
    phase0 = np.cumsum(f0 / sample_rate)
    periods = int(phase0[-1]) + 2
    jit = 1.0 + voice.jitter * rng.standard_normal(periods)
    phase = np.cumsum(f0 * jit[phase0.astype(np.int64)] / sample_rate)
    idx = phase.astype(np.int64)
    frac = phase - idx
    oq = voice.open_quotient
    tp = 0.65 * oq
    flow = np.where(
        frac < tp,
        0.5 * (1.0 - np.cos(np.pi * frac / tp)),
        np.where(frac < oq, np.cos(0.5 * np.pi * (frac - tp) / (oq - tp)), 0.0),
    )
    amp = 1.0 + voice.shimmer * rng.standard_normal(int(idx[-1]) + 2 if n else 1)
    flow = flow * amp[idx]
    src = np.diff(flow, prepend=0.0) * (sample_rate / 1000.0)
    src = signal.lfilter([1.0 - voice.tilt], [1.0, -voice.tilt], src)
    return src, (frac < oq).astype(np.float64)


def _formant_filter(
    x: np.ndarray, form: np.ndarray, bw: np.ndarray, hop: int, sample_rate: int
) -> np.ndarray:
    """Cascade of 5 DC-normalised resonators whose frequencies change every ``hop`` samples.

    The cascade is multiplied out into one 10th-order all-pole filter per frame (vectorised over
    frames) and run with ``lfilter`` carrying its state across frames, like an LPC synthesiser.
    """
    nf = form.shape[0]
    r = np.exp(-np.pi * bw / sample_rate)  # (5,)
    theta = 2.0 * np.pi * form / sample_rate  # (nf, 5)
    off = form >= 0.45 * sample_rate  # near Nyquist: leave that resonator out
    a1 = np.where(off, 0.0, -2.0 * r * np.cos(theta))
    a2 = np.where(off, 0.0, r * r)
    gain = np.prod(1.0 + a1 + a2, axis=1)  # (nf,) unity gain at DC
    den = np.zeros((nf, 11))
    den[:, 0] = 1.0
    for k in range(5):  # multiply by (1 + a1 z^-1 + a2 z^-2)
        nxt = den.copy()
        nxt[:, 1:] += a1[:, k : k + 1] * den[:, :-1]
        nxt[:, 2:] += a2[:, k : k + 1] * den[:, :-2]
        den = nxt
    y = np.empty_like(x)
    zi = np.zeros(10)
    lfilter = signal.lfilter
    for i in range(nf):
        s = i * hop
        if s >= len(x):
            break
        y[s : s + hop], zi = lfilter(gain[i : i + 1], den[i], x[s : s + hop], zi=zi)
    return y


def synthesize_utterance(
    voice: Voice,
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = 16000,
    channel: Channel | None = None,
) -> np.ndarray:
    """One utterance of ``voice``: float32 ``(S,)`` with ``S = round(seconds * sample_rate)``.

    The phone sequence, F0 contour, speaking rate, loudness (-32..-18 dBFS RMS) and a mild
    per-utterance spectral colouring are drawn from ``rng``; ``channel`` (from ``synth_channel``)
    adds a session's recording channel.
    """
    n = int(round(seconds * sample_rate))
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    hop = max(1, int(round(0.005 * sample_rate)))
    hop_s = hop / sample_rate
    av, ah, form, fric = _plan(voice, rng, n / sample_rate, hop_s)
    nf = len(av)
    # formant tracks: hold/interpolate across consonants and pauses, then coarticulate
    valid = ~np.isnan(form[:, 0])
    if valid.any():
        fi = np.arange(nf)
        form = np.stack([np.interp(fi, fi[valid], form[valid, j]) for j in range(5)], axis=1)
    else:
        form = np.broadcast_to(voice.formants[4], (nf, 5)).copy()
    form = _smooth(form, max(1, int(0.03 / hop_s)))
    av = _smooth(av, 3)
    ah = _smooth(ah, 3)
    f0 = _f0_contour(voice, rng, nf, hop_s)
    t_frames = (np.arange(nf) + 0.5) * hop
    t = np.arange(n)
    f0_s = np.interp(t, t_frames, f0)
    src, open_phase = _glottal_source(voice, rng, f0_s, sample_rate)
    av_s = np.interp(t, t_frames, av)
    ah_s = np.interp(t, t_frames, ah)
    noise = rng.standard_normal(n)
    asp = noise * (0.4 + 0.6 * open_phase) * (voice.breathiness * av_s + ah_s)
    voiced = av_s > 0.5
    excitation = src * av_s + asp * (np.std(src[voiced]) if voiced.any() else 1.0)
    bw = voice.bandwidths
    y = _formant_filter(excitation, form, bw, hop, sample_rate)
    speech_rms = np.sqrt(np.mean(y**2)) + 1e-9
    nyq = sample_rate / 2
    for t0, t1, lo, hi, amp in fric:
        s0, s1 = int(t0 * sample_rate), min(int(t1 * sample_rate), n)
        if s1 - s0 < 8:
            continue
        hi = min(hi, 0.95 * nyq)
        lo = min(lo, 0.7 * hi)
        sos = signal.butter(2, [lo, hi], "bandpass", fs=sample_rate, output="sos")
        burst = signal.sosfilt(sos, rng.standard_normal(s1 - s0))
        env = np.sin(np.linspace(0.0, np.pi, s1 - s0)) ** 0.5
        y[s0:s1] += burst * env * amp * speech_rms / (np.std(burst) + 1e-9)
    # per-utterance colouring: a gentle peaking EQ
    f = np.exp(rng.uniform(np.log(300.0), np.log(0.6 * nyq)))
    y = signal.sosfilt(_peaking(f, rng.normal(0.0, 1.5), 1.0, sample_rate), y)
    if channel is not None:
        y = signal.sosfilt(channel.sos, y)
        floor = rng.standard_normal(n)
        floor = signal.lfilter([1.0], [1.0, -0.9], floor)
        y_rms = np.sqrt(np.mean(y**2)) + 1e-9
        y = y + floor / (np.std(floor) + 1e-9) * y_rms * 10.0 ** (channel.noise_db / 20.0)
    level = 10.0 ** (rng.uniform(-32.0, -18.0) / 20.0)
    y = y * (level / (np.sqrt(np.mean(y**2)) + 1e-9))
    peak = np.abs(y).max(initial=0.0)
    if peak > 0.99:
        y = y * (0.99 / peak)
    return y.astype(np.float32)


def _speaker_name(speaker_id: int) -> str:
    return f"spk{speaker_id:04d}"


def utterance_path(speaker_id: int, index: int, utterances: int) -> str:
    """Relative path of utterance ``index`` of a speaker: ``spkNNNN/sK/uNNN.flac``.
    The first half of a speaker's utterances is session ``s0``, the rest ``s1``."""
    session = min(index * SESSIONS // max(utterances, 1), SESSIONS - 1)
    return f"{_speaker_name(speaker_id)}/s{session}/u{index:03d}.flac"


def _prepare_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "synth.json").is_file():
            raise DataError(
                f"{out}: folder is not empty and is not a synthetic corpus (no synth.json); "
                "choose a new or empty folder"
            )
        for old in out.glob("spk[0-9]*"):
            if old.is_dir():
                shutil.rmtree(old)
        for name in ("trials.txt", "synth.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def synthesize_corpus(
    out_dir: str | os.PathLike,
    speakers: int = 40,
    utterances: int = 12,
    seed: int = 0,
    sample_rate: int = 16000,
    duration: tuple[float, float] = (2.0, 4.0),
    speaker_offset: int = 0,
    trials: bool = True,
    nontarget_ratio: float = 3.0,
) -> Path:
    """Write a VoxCeleb-layout corpus ``out_dir/spkNNNN/sK/uNNN.flac`` (16-bit FLAC) and,
    when ``trials``, ``out_dir/trials.txt`` (VoxCeleb format, paths relative to ``out_dir``):
    all target pairs plus ``nontarget_ratio`` times as many non-target pairs.

    Speaker ids run from ``speaker_offset``; two calls with disjoint id ranges (same ``seed``)
    give disjoint voices, e.g. train speakers 0..39 and test speakers 1000..1009.
    Also writes ``out_dir/synth.json``: the arguments, the number of files, the seconds of audio
    and the real-time factor achieved. Returns ``out_dir``.

    ``out_dir`` must be new, empty, or an earlier synthetic corpus (it has ``synth.json``; its
    ``spk*`` folders and trial list are replaced). Any other non-empty folder is a ``DataError``,
    so that stale or foreign audio never ends up in the corpus.
    """
    out = Path(out_dir)
    if speakers < 1 or utterances < 1:
        raise ValueError("speakers and utterances must be >= 1")
    if trials and utterances < 2:
        raise ValueError("trials need at least 2 utterances per speaker (or trials=False)")
    lo, hi = float(duration[0]), float(duration[1])
    if not 0 < lo <= hi:
        raise ValueError(f"duration must satisfy 0 < min <= max, got {duration}")
    _prepare_out_dir(out)
    records: list[Utterance] = []
    audio_s = 0.0
    synth_s = 0.0
    for sid in range(speaker_offset, speaker_offset + speakers):
        voice = synth_voice_params(np.random.default_rng([seed, sid, 0]))
        channels = [
            synth_channel(np.random.default_rng([seed, sid, 1, k]), sample_rate)
            for k in range(SESSIONS)
        ]
        for u in range(utterances):
            rng = np.random.default_rng([seed, sid, 2, u])
            seconds = float(rng.uniform(lo, hi))
            rel = utterance_path(sid, u, utterances)
            session = int(rel.split("/")[1][1:])
            t0 = time.perf_counter()
            wave = synthesize_utterance(voice, rng, seconds, sample_rate, channels[session])
            synth_s += time.perf_counter() - t0
            audio_s += len(wave) / sample_rate
            save(out / rel, wave, sample_rate)
            records.append(
                Utterance(
                    rel,
                    _speaker_name(sid),
                    str((out / rel).absolute()),
                    len(wave) / sample_rate,
                    sample_rate,
                )
            )
    if trials:
        corpus = Corpus.from_utterances(records, source=str(out))
        write_trials(out / "trials.txt", make_trials(corpus, nontarget_ratio, seed), fmt="voxceleb")
    stats = {
        "speakers": speakers,
        "utterances": utterances,
        "seed": seed,
        "sample_rate": sample_rate,
        "duration": [lo, hi],
        "speaker_offset": speaker_offset,
        "files": len(records),
        "audio_seconds": round(audio_s, 3),
        "real_time_factor": round(audio_s / max(synth_s, 1e-9), 1),
    }
    write_text_atomic(out / "synth.json", json.dumps(stats, indent=1) + "\n")
    return out
