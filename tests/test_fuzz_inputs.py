"""Fuzzing every parser of outside input with hypothesis: any input gives a result or one of the
project's typed errors (``AudioclError``, whose exit code the CLI returns), never another
exception. The budget is small here (``AUDIOCL_FUZZ_EXAMPLES`` per target, default 40) so it runs
on every change; ``AUDIOCL_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_inputs.py`` is the long run
(``docs/reliability.md``). Files a fuzzer once broke the loader with are replayed from
``tests/fuzz_corpus/``. Hypothesis keeps no example database (nothing is written outside the
test's temporary folders)."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import sqlite3
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from audiocl.errors import AudioclError, AudioError, ConfigError, ModelError, StoreError

EXAMPLES = int(os.environ.get("AUDIOCL_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: a failure is reported as found
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CORPUS = Path(__file__).parent / "fuzz_corpus"


def _fresh(tmp_path: Path, name: str) -> Path:
    """A path in a folder of its own per example (hypothesis reuses the test's tmp_path)."""
    import tempfile

    return Path(tempfile.mkdtemp(dir=tmp_path)) / name


# ----------------------------------------------------------------------------- audio loader


def _seed_files() -> dict[str, bytes]:
    t = np.arange(3200) / 16000
    mono = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = {}
    for name, data, rate, fmt, sub in (
        ("pcm16.wav", mono, 16000, "WAV", "PCM_16"),
        ("float.wav", np.stack([mono, -mono], 1), 8000, "WAV", "FLOAT"),
        ("pcm24.flac", np.stack([mono, mono], 1), 44100, "FLAC", "PCM_24"),
        ("vorbis.ogg", mono, 16000, "OGG", "VORBIS"),
        ("layer3.mp3", mono, 16000, "MP3", "MPEG_LAYER_III"),
    ):
        buf = io.BytesIO()
        sf.write(buf, data, rate, format=fmt, subtype=sub)
        out[name] = buf.getvalue()
    return out


SEEDS = _seed_files()
EXTREMES = [0, 1, 2, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]


@st.composite
def mutated_audio(draw):
    """A seed file with random bytes changed, 32-bit header fields set to extremes, and perhaps
    cut short, saved under the seed's suffix or another one the loader reads."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, min(60, len(data) - 4)))
        data[at : at + 4] = struct.pack("<I", draw(st.sampled_from(EXTREMES)))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    suffix = draw(st.sampled_from([Path(name).suffix, ".wav", ".flac", ".m4a", ".webm"]))
    return bytes(data), suffix


def _loads_or_refuses(path: Path) -> None:
    from audiocl.io import audio

    try:
        audio.info(path)
    except AudioError as e:
        assert str(path) in str(e)
    try:
        wave = audio.load(path, 16000)
    except AudioError as e:
        assert str(path) in str(e)  # the message names the file
        return
    assert wave.dtype == torch.float32 and wave.ndim == 1 and wave.numel() > 0
    assert torch.isfinite(wave).all()


def _loads_bytes_or_refuses(data: bytes, name: str) -> None:
    """As ``_loads_or_refuses`` for a shard member's bytes in memory (``load_bytes``)."""
    from audiocl.io import audio

    try:
        wave = audio.load_bytes(data, name, 16000)
    except AudioError as e:
        assert name in str(e)
        return
    assert wave.dtype == torch.float32 and wave.ndim == 1 and wave.numel() > 0
    assert torch.isfinite(wave).all()


@FUZZ
@given(sample=mutated_audio())
def test_audio_loader_fuzzed(tmp_path, sample):
    data, suffix = sample
    path = _fresh(tmp_path, f"x{suffix}")
    path.write_bytes(data)
    _loads_or_refuses(path)
    if suffix in (".wav", ".flac"):  # the members shards hold
        _loads_bytes_or_refuses(data, f"shard-000000.tar:000000001{suffix}")


@FUZZ
@given(data=st.binary(max_size=512), suffix=st.sampled_from([".wav", ".flac", ".ogg", ".mp3"]))
def test_audio_loader_random_bytes(tmp_path, data, suffix):
    path = _fresh(tmp_path, f"x{suffix}")
    path.write_bytes(data)
    _loads_or_refuses(path)


@pytest.mark.parametrize("found", sorted((CORPUS / "audio").iterdir()), ids=lambda p: p.name[:24])
def test_audio_loader_regressions(found):
    """Inputs the coverage-guided fuzzer (``scripts/fuzz_audio.py``) found, each once a
    traceback or a crash: a FLAC header promising 18.8 G frames (a 70 GiB allocation), a 56 kHz
    WAV of a few samples that the resampler shortened to nothing, a 34-channel WAV that
    libsndfile refused and PyAV then read past its frame for (a segmentation fault), and a file
    PyAV probed as 0 Hz (a division by zero; found by this file's long run)."""
    _loads_or_refuses(found)


def test_loader_refuses_samples_far_out_of_range(tmp_path):
    path = tmp_path / "loud.wav"
    sf.write(str(path), np.full(1600, 3e30, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="out of range"):
        from audiocl.io import audio

        audio.load(path)


def test_huge_promised_length_costs_only_what_is_there(tmp_path):
    """A FLAC header may promise any length: the read follows the audio really there."""
    from audiocl.io import audio

    path = tmp_path / "short.flac"
    sf.write(str(path), np.zeros(800, dtype=np.float32), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    packed = struct.unpack_from(">Q", data, 18)[0]
    struct.pack_into(">Q", data, 18, (packed & ~((1 << 36) - 1)) | ((1 << 36) - 1))
    path.write_bytes(bytes(data))
    try:  # 2^36 frames would be a 256 GiB allocation; the file holds 800
        assert audio.load(path).numel() <= 800
    except AudioError as e:
        assert "truncated" in str(e)


# ----------------------------------------------------------------------------- text lists

TOKENS = ["0", "1", "target", "nontarget", "a.wav", "b/c.flac", "id1", "-1", "2", "nan", "\t"]
lines = st.lists(
    st.one_of(st.sampled_from(TOKENS), st.text(max_size=12)), min_size=0, max_size=4
).map(" ".join)
list_files = st.one_of(
    st.lists(lines, max_size=8).map(lambda x: "\n".join(x).encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
)


def _read_trials(path):
    from audiocl.data.trials import read_trials

    trials = read_trials(path)
    assert trials and all(t.label in (0, 1) for t in trials)


def _read_paths(path):
    from audiocl.io.pathlist import read_path_list

    assert all(isinstance(p, str) and p.strip() == p and p for p in read_path_list(path))


@pytest.mark.parametrize("read", [_read_trials, _read_paths], ids=["trials", "paths"])
@FUZZ
@given(content=list_files)
def test_text_list_fuzzed(tmp_path, read, content):
    """A trial list or a path list: its entries, or a ``DataError`` naming the file (exit 3)."""
    path = _fresh(tmp_path, "list.txt")
    path.write_bytes(content)
    try:
        read(path)
    except AudioclError as e:
        assert str(path) in str(e) and e.exit_code == 3


# ----------------------------------------------------------------------------- YAML configs

KEYS = [
    "data",
    "data.crop_seconds",
    "data.batch_size",
    "data.sources",
    "model.encoder",
    "model.channels",
    "objective.contrastive",
    "objective.distill.teacher",
    "optim.lr",
    "train.steps",
    "augment.snr_db",
    "nosuch",
    "model.nosuch",
]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.sampled_from(["path", "labelled", "x"]), st.text(max_size=5), max_size=2),
)


def _nest(pairs) -> dict:
    out: dict = {}
    for key, value in pairs:
        node, *parts = key.split(".")
        target = out
        for part in [node, *parts][:-1]:
            target = target.setdefault(part, {}) if isinstance(target.get(part, {}), dict) else {}
        target[key.split(".")[-1]] = value
    return out


configs = st.one_of(
    st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=5).map(
        lambda p: yaml.safe_dump(_nest(p))
    ),
    st.text(max_size=120),
)
overrides = st.lists(
    st.tuples(st.sampled_from(KEYS), st.one_of(VALUES.map(str), st.text(max_size=8))).map(
        lambda kv: f"{kv[0]}={kv[1]}"
    )
    | st.text(max_size=15),
    max_size=3,
)


@FUZZ
@given(text=configs, sets=overrides)
def test_config_and_overrides_fuzzed(tmp_path, text, sets):
    from audiocl.config import Config
    from audiocl.training.recipe import load_config

    path = _fresh(tmp_path, "c.yaml")
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        cfg = load_config(path, sets)
    except ConfigError:
        return
    assert isinstance(cfg, Config)


def test_config_alias_bomb_is_refused_quickly(tmp_path):
    """YAML aliases nest a reference nine deep: 10^9 leaves when expanded."""
    from audiocl.training.recipe import load_config

    lines_ = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines_ += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines_) + "\nmodel: {channels: *a9}\n")
    with pytest.raises(ConfigError):
        load_config(path)


# ----------------------------------------------------------------------------- importers' configs


@FUZZ
@given(text=configs)
def test_hyperpyyaml_reader_fuzzed(tmp_path, text):
    """SpeechBrain's hyperparams.yaml: any text is a config or ``ModelError``/``ConfigError``."""
    from audiocl.interop.speechbrain import HyperParams, audiocl_config

    path = _fresh(tmp_path, "hyperparams.yaml")
    path.write_text(text.replace("nosuch", "!new:x.Y"), encoding="utf-8", errors="surrogatepass")
    with contextlib.suppress(ModelError, ConfigError):
        audiocl_config(HyperParams(path))


def test_hyperpyyaml_ref_bomb_is_refused(tmp_path):
    from audiocl.interop.speechbrain import HyperParams, audiocl_config

    text = ["a0: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    text += [f"a{i}: [{', '.join([f'!ref <a{i - 1}>'] * 10)}]" for i in range(1, 10)]
    text += [
        "embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN",
        "  x: !ref <a9>",
    ]
    path = tmp_path / "hyperparams.yaml"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ModelError):
        audiocl_config(HyperParams(path))


@FUZZ
@given(text=configs)
def test_wespeaker_config_fuzzed(tmp_path, text):
    from audiocl.interop.wespeaker import audiocl_config, read_config

    folder = Path(_fresh(tmp_path, "m")).parent
    (folder / "config.yaml").write_text(
        text.replace("data", "model"), encoding="utf-8", errors="surrogatepass"
    )
    with contextlib.suppress(ModelError, ConfigError):
        audiocl_config(read_config(folder), folder)


# ----------------------------------------------------------------------------- model files


@pytest.fixture(scope="module")
def tiny_model_bytes(tmp_path_factory, make_tiny_model):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "m.pt").read_bytes()


def _load_or_refuse(path: Path) -> None:
    import audiocl

    try:
        model = audiocl.load_model(path)
    except (ModelError, ConfigError) as e:
        assert str(path) in str(e) or "config" in str(e)
        return
    assert model.embed_dim > 0
    for call in (model.threshold, lambda: model.evidence(0.5)):
        # a calibration the file carries is used, or refused as the file's problem
        with contextlib.suppress(ModelError, ConfigError):
            call()


@FUZZ
@given(
    cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4)
)
def test_model_file_truncated_or_damaged(tmp_path, tiny_model_bytes, cut, flips):
    data = bytearray(tiny_model_bytes[: int(cut * len(tiny_model_bytes))])
    for at, value in flips:
        if data:
            data[int(at * (len(data) - 1))] = value
    path = _fresh(tmp_path, "m.pt")
    path.write_bytes(bytes(data))
    _load_or_refuse(path)


JUNK = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.text(max_size=6),
    st.just(torch.zeros(2, 3)),
    st.just({"x": torch.ones(1)}),
    st.lists(st.integers(0, 3), max_size=2),
)


@FUZZ
@given(data=st.data())
def test_model_file_with_hostile_fields(tmp_path, tiny_model_bytes, data):
    """A well-formed file whose entries (config, weights, calibration) are replaced by junk."""
    payload = torch.load(io.BytesIO(tiny_model_bytes), weights_only=True)
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(payload)))
        if isinstance(payload[key], dict) and payload[key] and data.draw(st.booleans()):
            inner = data.draw(st.sampled_from(sorted(payload[key], key=str)))
            payload[key][inner] = data.draw(JUNK)
        else:
            payload[key] = data.draw(JUNK)
    path = _fresh(tmp_path, "m.pt")
    torch.save(payload, path)
    _load_or_refuse(path)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_model_file_that_would_run_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "hostile.pt"
    torch.save({"format": "audiocl-model", "x": _RunsCode(str(marker))}, path)
    with pytest.raises(ModelError, match="safe load refuses"):
        _ = __import__("audiocl").load_model(path)
    assert not marker.exists()
    with zipfile.ZipFile(path) as z:  # the payload is really there, as a pickle
        assert any(pickle.PROTO in z.read(n)[:2] for n in z.namelist() if n.endswith(".pkl"))


@FUZZ
@given(data=st.binary(max_size=300))
def test_onnx_model_file_garbage(tmp_path, data):
    pytest.importorskip("onnxruntime")
    path = _fresh(tmp_path, "m.onnx")
    path.write_bytes(data)
    _load_or_refuse(path)


# ----------------------------------------------------------------------------- the store file


@pytest.fixture(scope="module")
def store_bytes(tmp_path_factory):
    from audiocl.inference.store import SpeakerStore

    path = tmp_path_factory.mktemp("store") / "s.db"
    store = SpeakerStore(path, "model-a")
    rng = np.random.default_rng(0)
    for name in ("alice", "bob"):
        store.enroll(name, rng.normal(size=(2, 8)).astype(np.float32), files=["a.wav", "b.wav"])
    return path.read_bytes()


@FUZZ
@given(
    cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=8)
)
def test_store_file_damaged(tmp_path, store_bytes, cut, flips):
    from audiocl.inference.store import SpeakerStore

    data = bytearray(store_bytes[: max(1, int(cut * len(store_bytes)))])
    for at, value in flips:
        data[int(at * (len(data) - 1))] = value
    path = _fresh(tmp_path, "s.db")
    path.write_bytes(bytes(data))
    try:
        store = SpeakerStore(path, "model-a")
        for record in store.list():
            assert record.embedding.shape == (8,)
        store.identify(np.ones(8, dtype=np.float32), top=2)
    except StoreError as e:
        assert str(path) in str(e) or "embedding" in str(e)


def test_store_text_that_is_not_utf8_is_a_store_error(tmp_path):
    """Found by the long fuzz run: damaged bytes in a text column (or in what sqlite reports of
    the file) were a ``UnicodeDecodeError`` from inside sqlite3."""
    from audiocl.inference.store import SpeakerStore

    path = tmp_path / "s.db"
    SpeakerStore(path, "model-a").enroll("alice", np.ones((1, 8), np.float32), files=["a.wav"])
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE speakers SET name = CAST(X'61ff62' AS TEXT)")
    with pytest.raises(StoreError, match=f"{path}.*not UTF-8"):
        SpeakerStore(path, "model-a").list()


def test_store_file_of_another_schema_is_refused(tmp_path):
    from audiocl.inference.store import SpeakerStore

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE speakers (id INTEGER, blob TEXT)")
        conn.execute("INSERT INTO speakers VALUES (1, 'x')")
    with pytest.raises(StoreError, match=str(path)):
        SpeakerStore(path, "model-a").list()
