"""The Python API: load a model, embed, verify, enroll/identify, evaluate a trial list.

::

    import audiocl

    model = audiocl.load_model()                 # the last trained model (or AUDIOCL_MODEL)
    e = model.embed("a.wav")                     # (D,) float32, L2-normalised
    r = model.verify("a.wav", "b.wav")           # r.score, r.same, r.threshold, r.threshold_source
    speakers = model.store()                     # the default speaker store, bound to this model
    speakers.enroll("alice", ["alice1.wav", "alice2.wav"])
    speakers.identify("unknown.wav", top=3)      # [("alice", 0.71), ...]
    report = model.evaluate("trials.txt", "wav/", cohort="cohort/")

Thresholds: "same speaker" when ``score >= threshold``. Without an explicit threshold the model's
calibration (``audiocl eval --calibrate``) decides: at the Bayes threshold of its log-likelihood
ratio for ``prior`` (default 0.5), at a false-accept rate (``far=0.01``), or at a stored
operating point (``operating_point="eer"``); a model without calibration gives ``same=None``
("unknown") instead of guessing. A calibrated model also reports the score's LLR and
P(same speaker) at ``prior``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import AudioError, ConfigError, ModelError, StoreError
from ..inference.embed import Embedder
from ..inference.store import SpeakerRecord, SpeakerStore
from ..scoring.operating_points import OPERATING_POINTS
from ..scoring.scores import cosine_scores

Audio = str | os.PathLike | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class Verification:
    """The outcome of one comparison.

    ``score``: cosine in [-1, 1]; ``same``: ``score >= threshold``, or None when no threshold is
    known; ``threshold_source``: the rule that decided (``"argument"``, ``"--threshold"``,
    ``"calibration, eer threshold on T"``, ``"calibration, Bayes threshold at prior 0.5 ..."``,
    ...) or ``"none"``; ``llr``: the natural-log likelihood ratio of the score and ``p_same``
    P(same speaker) at ``prior``, both None without an LLR calibration.
    """

    score: float
    same: bool | None
    threshold: float | None
    threshold_source: str
    llr: float | None = None
    p_same: float | None = None
    prior: float | None = None

    @property
    def decision(self) -> str:
        """``"same"``, ``"different"`` or ``"unknown"``."""
        return "unknown" if self.same is None else ("same" if self.same else "different")

    def to_dict(self) -> dict:
        return {**asdict(self), "decision": self.decision}


class Model:
    """A loaded speaker encoder with its identity and calibration. Use :func:`load_model`."""

    def __init__(self, embedder: Embedder, path: Path | None = None, source: str = "argument"):
        self.embedder = embedder
        self.path = path
        self.source = source

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @property
    def sample_rate(self) -> int:
        return self.embedder.sample_rate

    @property
    def embed_dim(self) -> int | None:
        return self.embedder.embed_dim

    @property
    def calibration(self) -> dict | None:
        return self.embedder.calibration

    def __repr__(self) -> str:
        return f"Model(path={str(self.path)!r}, model_id={self.model_id!r})"

    # ---------------------------------------------------------------------------- thresholds

    def threshold(
        self,
        explicit: float | None = None,
        operating_point: str | None = None,
        label: str = "argument",
        prior: float = 0.5,
        far: float | None = None,
    ) -> tuple[float | None, str]:
        """``(threshold, rule)`` on the raw cosine. In order: ``explicit``; the threshold of
        false-accept rate ``far`` on the calibration trials; a stored ``operating_point``
        (``eer``, ``min_dcf_0.01``, ``min_dcf_0.05``); the Bayes threshold of the LLR mapping at
        ``prior`` (``operating_point`` None or ``"bayes"``); the EER threshold of a calibration
        without an LLR mapping; else ``(None, "none")``. Refused (``ModelError``) where the
        calibration cannot answer the question asked."""
        from ..scoring import calibration as calib

        if explicit is not None:
            return float(explicit), label
        if operating_point not in (None, "bayes", *OPERATING_POINTS):
            raise ValueError(
                f"unknown operating point {operating_point!r}; choose from bayes, "
                + ", ".join(OPERATING_POINTS)
            )
        cal = self.calibration or {}
        where = f" on {cal['trials']}" if cal.get("trials") else ""
        if far is not None:
            if not cal.get("far"):
                raise ModelError(
                    f"{self.path}: deciding at a false-accept rate needs a calibration with "
                    "non-target scores: run `audiocl eval --calibrate` on a trial list (at least "
                    f"{2 * calib.MIN_FALSE_ACCEPTS} non-target trials)"
                )
            value = calib.far_threshold(cal["far"], far)
            return value, f"calibration, false-accept rate {far:g}{where}"
        if operating_point in (None, "bayes") and cal.get("llr"):
            t_llr = calib.bayes_threshold(prior)
            m = cal["llr"]
            if m["a"] <= 0:
                raise ModelError(f"{self.path}: its LLR calibration does not rise with the score")
            return (t_llr - m["b"]) / m["a"], (
                f"calibration, Bayes threshold at prior {prior:g} (LLR >= {t_llr:.2f}){where}"
            )
        if operating_point == "bayes":
            raise ModelError(
                f"{self.path}: the Bayes decision needs an LLR calibration: run "
                "`audiocl eval --calibrate` on a trial list"
            )
        point = operating_point or "eer"  # a calibration of thresholds only
        value = cal.get(OPERATING_POINTS[point])
        if value is None:
            return None, "none"
        return float(value), f"calibration, {point} threshold{where}"

    def evidence(self, score: float, prior: float = 0.5) -> tuple[float | None, float | None]:
        """``(llr, P(same speaker) at prior)`` of a raw cosine; ``(None, None)`` uncalibrated."""
        from ..scoring import calibration as calib

        cal = self.calibration or {}
        if not cal.get("llr"):
            return None, None
        llr = calib.apply_llr(cal, score)
        return llr, calib.p_same(llr, prior)

    # ----------------------------------------------------------------------------- embedding

    def _wave(self, x: np.ndarray | torch.Tensor, sample_rate: int | None) -> torch.Tensor:
        w = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        w = w.detach().float().cpu()
        if w.dim() == 2 and 1 in w.shape:
            w = w.reshape(-1)
        if w.dim() != 1 or w.numel() == 0:
            raise ValueError(f"expected a mono waveform (S,), got shape {tuple(w.shape)}")
        if not torch.isfinite(w).all():
            raise AudioError("<waveform>", "contains NaN or Inf samples")
        sr = self.sample_rate if sample_rate is None else int(sample_rate)
        if sr != self.sample_rate:
            from ..io.audio import resample

            w = resample(w, sr, self.sample_rate)
        return self.embedder.gate(w, self.sample_rate, "<waveform>")

    def _load(self, x: Audio, sample_rate: int | None) -> torch.Tensor:
        if isinstance(x, (str, os.PathLike)):
            return self.embedder.load(x)
        return self._wave(x, sample_rate)

    def embed(self, x: Audio, sample_rate: int | None = None) -> np.ndarray:
        """One file path or waveform ``(S,)`` -> ``(D,)`` float32, L2-normalised.

        ``sample_rate``: the waveform's rate (default: the model's, 16 kHz); ignored for files,
        which are decoded and resampled as needed.
        """
        return self.embedder.embed_waveform(self._load(x, sample_rate))

    def embed_many(
        self,
        items: Sequence[Audio],
        sample_rate: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Files and/or waveforms -> ``(N, D)``, batched (files decoded a group at a time)."""
        if all(isinstance(x, (str, os.PathLike)) for x in items):
            return self.embedder.embed_files(list(items), progress=progress)
        return self.embedder.embed_waves([self._load(x, sample_rate) for x in items], progress)

    def adapt(
        self,
        audio: Sequence[str | os.PathLike],
        out: str | os.PathLike,
        progress: Callable[[int], None] | None = None,
        on_error: Callable[[int, AudioError], None] | None = None,
    ) -> Model:
        """Centre this model on unlabelled recordings of the domain it will be used in (files
        and folders, at least ``adapt.MIN_FILES`` recordings of many speakers), write the
        adapted model file ``out`` (atomically) and return it. Embeddings, stores and
        thresholds of the unadapted model do not carry over: it has a new id, and its
        calibration is the model's ``adapted_calibration`` when it has one, else none.
        ``on_error(index, error)``: skip unreadable recordings instead of stopping.
        """
        from ..inference import adapt
        from ..modelfile import checkpoint
        from ..modelfile.onnx_file import is_onnx_file

        if self.path is None or is_onnx_file(self.path):
            raise ModelError(f"{self.path}: adapt the model file (.pt) it was exported from")
        data = checkpoint.load(self.path)
        if data["format"] != checkpoint.MODEL_FORMAT:
            raise ModelError(f"{self.path}: adapt a model file (model.pt), not a checkpoint")
        files = adapt.audio_files(audio)
        adapt.check_count(len(files))
        raw = Embedder.from_data(adapt.base_model(data), gate=self.embedder.gate)
        emb = raw.embed_files(files, progress=progress, on_error=on_error)
        emb = emb[np.isfinite(emb).all(axis=1)]
        adapt.check_count(len(emb))
        adapted = adapt.adapted_model(data, adapt.domain_mean(emb), len(emb))
        checkpoint.save(out, adapted)
        return Model(Embedder.from_file(out, gate=self.embedder.gate), Path(out), "argument")

    # ------------------------------------------------------------------------------- verify

    def verify(
        self,
        a: Audio,
        b: Audio,
        threshold: float | None = None,
        sample_rate: int | None = None,
        operating_point: str | None = None,
        label: str = "argument",
        prior: float = 0.5,
        far: float | None = None,
    ) -> Verification:
        """Compare two utterances: cosine score and, when a threshold is known, the decision
        (``label`` names an explicit threshold's source in the result; the rule as in
        :meth:`threshold`)."""
        t = self.threshold(threshold, operating_point, label, prior, far)  # refusals first
        ea, eb = self.embed_many([a, b], sample_rate=sample_rate)
        return self.decide(float(cosine_scores(ea, eb)[0]), t, prior=prior)

    def decide(
        self,
        score: float,
        threshold: float | tuple[float | None, str] | None = None,
        operating_point: str | None = None,
        label: str = "argument",
        prior: float = 0.5,
        far: float | None = None,
    ) -> Verification:
        """The :class:`Verification` of a raw cosine ``score``. ``threshold``: a value, or a
        ``(threshold, rule)`` pair that :meth:`threshold` already chose."""
        if isinstance(threshold, tuple):
            t, source = threshold
        else:
            t, source = self.threshold(threshold, operating_point, label, prior, far)
        llr, p = self.evidence(score, prior)
        return Verification(
            float(score),
            None if t is None else bool(score >= t),
            t,
            source,
            llr,
            p,
            None if llr is None else float(prior),
        )

    # --------------------------------------------------------------------------------- store

    def store(self, path: str | os.PathLike | None = None) -> Speakers:
        """The speaker store at ``path`` (default: ``audiocl.paths.default_store_path()``),
        bound to this model."""
        return Speakers(self, SpeakerStore(path, self.model_id))

    def worker_pool(self, workers: int):
        """An ``EmbedPool`` of ``workers`` processes running this model (its file, backend and
        speech gate), or None for ``workers`` <= 1."""
        if workers <= 1:
            return None
        from ..inference.embed_pool import EmbedderSpec, EmbedPool

        if self.path is None:
            raise ConfigError("embedding in worker processes needs a model loaded from a file")
        backend = "onnx" if self.embedder.net is not None else "torch"
        return EmbedPool(EmbedderSpec(str(self.path), backend, self.embedder.gate), workers)

    # ---------------------------------------------------------------------------- evaluation

    def evaluate(
        self,
        trials: str | os.PathLike,
        audio_root: str | os.PathLike,
        cohort: str | os.PathLike | None = None,
        top_k: int = 300,
        skip_bad: bool = False,
        out: str | os.PathLike | None = None,
        cache: bool | str | os.PathLike = True,
        max_cohort: int | None = None,
        seed: int = 0,
        progress: Callable | None = None,
        result: bool = False,
        workers: int = 1,
    ):
        """EER and minDCF(0.01, 0.05) of a trial list, raw and (with a cohort) AS-Norm.

        Returns the report dict (``raw``, ``as_norm``, counts; see ``audiocl eval``), or with
        ``result`` the whole ``EvalResult`` (scores included). ``out``: also write scores.txt,
        metrics.json, det.png and scores.png there. ``cache``: True for the per-user embedding
        cache, a folder, or False. ``max_cohort`` files of the cohort at most (a ``seed``-ed
        sample); ``progress(total, what)`` may return an ``update(n)`` callback. ``workers`` > 1
        embeds the trial files in that many processes (``audiocl.inference.embed_pool``).
        """
        from ..inference.embedding_cache import EmbeddingCache, default_cache_dir
        from ..scoring.cohort import MAX_COHORT
        from ..scoring.evaluation import run_evaluation, write_report

        emb_cache = None
        if cache:
            folder = default_cache_dir() if cache is True else Path(cache)
            emb_cache = EmbeddingCache(folder, self.embedder.cache_id)
        pool = self.worker_pool(workers)
        try:
            evaluated = run_evaluation(
                self.embedder,
                trials,
                audio_root,
                cohort,
                top_k,
                skip_bad,
                emb_cache,
                max_cohort=MAX_COHORT if max_cohort is None else max_cohort,
                seed=seed,
                progress=progress,
                engine=pool,
            )
        finally:
            if pool is not None:
                pool.close()
        evaluated.metrics["model"] = str(self.path) if self.path else None
        if out is not None:
            write_report(evaluated, out)
        return evaluated if result else evaluated.metrics

    def calibrate(
        self,
        metrics: dict,
        trials: str | None = None,
        scores=None,
        labels=None,
        prior: float = 0.5,
        as_norm_scores=None,
    ) -> dict:
        """Store the raw-score thresholds of ``metrics`` (a report's ``raw`` part) into the model
        file, for ``verify`` to use, and with the trials' raw cosine ``scores (N,)`` and
        ``labels (N,)`` the score-to-LLR mapping fitted at ``prior`` and the false-accept table
        (``scoring.calibration.fit_calibration``); with ``as_norm_scores (N,)`` a separate
        mapping of the AS-Norm scale (``as_norm_llr``: AS-Norm scores are not cosines). Returns
        the calibration record."""
        import time

        from ..modelfile.checkpoint import set_calibration
        from ..scoring.calibration import fit_calibration
        from ..scoring.scores import calibration_from_metrics

        if self.path is None:
            raise ModelError("this model was not loaded from a file: nowhere to store calibration")
        cal = calibration_from_metrics(metrics)
        if scores is not None:
            cal.update(fit_calibration(scores, labels, prior))
        if as_norm_scores is not None:
            cal["as_norm_llr"] = fit_calibration(as_norm_scores, labels, prior)["llr"]
        if trials:
            cal["trials"] = str(trials)
        cal["calibrated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        set_calibration(self.path, cal)
        self.embedder.calibration = cal
        return cal


class Speakers:
    """A :class:`~audiocl.inference.store.SpeakerStore` bound to a model: enroll and identify from audio."""

    def __init__(self, model: Model, store: SpeakerStore):
        self.model = model
        self.db = store

    @property
    def path(self) -> Path:
        return self.db.path

    def enroll(
        self,
        name: str,
        audio: Audio | Sequence[Audio],
        mode: str = "add",
        files: Sequence[str] | None = None,
    ) -> SpeakerRecord:
        """Enroll ``name`` from one or more files/waveforms (``mode``: "add" or "replace"); the
        speaker's embedding is the normalised mean of every enrolment embedding. ``files``: how
        the store lists the recordings (default: absolute paths; waveforms "<waveform>")."""
        items = (
            [audio] if isinstance(audio, (str, os.PathLike, np.ndarray, torch.Tensor)) else audio
        )
        items = list(items)
        self.db.check_model()  # before any time is spent embedding
        emb = self.model.embed_many(items)
        if files is None:
            files = [
                str(Path(x).absolute()) if isinstance(x, (str, os.PathLike)) else "<waveform>"
                for x in items
            ]
        return self.db.enroll(name, emb, files=list(files), mode=mode)

    def verify(
        self,
        name: str,
        audio: Audio,
        threshold: float | None = None,
        operating_point: str | None = None,
        label: str = "argument",
        prior: float = 0.5,
        far: float | None = None,
    ) -> Verification:
        """Compare ``audio`` with enrolled speaker ``name`` (an unknown name, or a decision rule
        the calibration cannot answer, is refused before the audio is embedded)."""
        self.db.get(name)
        t = self.model.threshold(threshold, operating_point, label, prior, far)
        score = self.db.score(name, self.model.embed(audio))
        return self.model.decide(score, t, prior=prior)

    def identify(self, audio: Audio, top: int = 5) -> list[tuple[str, float]]:
        """The ``top`` enrolled speakers closest to ``audio``: ``[(name, cosine), ...]``."""
        if top < 1:
            raise ConfigError(f"top must be at least 1, got {top}")
        self.db.check_model()  # refusals before any time is spent embedding
        if len(self.db) == 0:
            raise StoreError(f"no speakers enrolled in {self.db.path}; enroll some first")
        return self.db.identify(self.model.embed(audio), top=top)

    def list(self) -> list[SpeakerRecord]:
        return self.db.list()

    def remove(self, name: str) -> SpeakerRecord:
        return self.db.remove(name)

    def rename(self, old: str, new: str) -> SpeakerRecord:
        return self.db.rename(old, new)

    def __len__(self) -> int:
        return len(self.db)

    def __contains__(self, name: str) -> bool:
        return name in self.db


def load_model(
    path: str | os.PathLike | None = None,
    device: str = "cpu",
    backend: str = "auto",
    vad: str | None = None,
    min_speech: float = 0.5,
) -> Model:
    """Load a model file (``model.pt``, or a run folder holding one, or a training checkpoint,
    or an ``.onnx`` file from ``audiocl export``). ``backend``: "torch", "onnx" (onnxruntime)
    or "auto" (onnx for ``.onnx`` files). Audio with less than ``min_speech`` seconds of
    detected speech (a tenth of its length, when shorter: ``SpeechGate.needed``) raises
    ``AudioError`` ("no speech found"; 0 turns the check off); ``vad``
    ("energy" or "silero") also trims leading and trailing non-speech (``audiocl.io.vad``).

    ``path=None``: ``AUDIOCL_MODEL``, else the model the last ``audiocl train``/``quickstart``
    produced. Loading never runs code from the file (``torch.load(weights_only=True)``).
    """
    from ..paths import resolve_model

    resolved, source = resolve_model(path)
    if path is not None:
        source = "argument"
    from ..io.vad import SpeechGate

    gate = SpeechGate(vad or "energy", min_speech, trim=vad is not None)
    embedder = Embedder.from_file(resolved, device=device, backend=backend, gate=gate)
    return Model(embedder, resolved, source)
