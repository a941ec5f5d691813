"""scripts/prepare_voxceleb.py on a tiny fake VoxCeleb tree (m4a made by PyAV): dry run,
conversion, index, trial lists, and a rerun that converts only what is missing."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")

from audiocl.io import audio  # noqa: E402
from audiocl.io.av_decode import encode  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare_voxceleb.py"


@pytest.fixture(scope="module")
def prepare():
    spec = importlib.util.spec_from_file_location("prepare_voxceleb", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def voice(seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    w = sum(np.sin(2 * np.pi * (120 + 30 * seed) * k * t) / k for k in range(1, 6))
    return 0.2 * w * (0.5 - 0.5 * np.cos(2 * np.pi * 3 * t)) + 0.002 * rng.normal(size=t.size)


def fake_tree(root: Path) -> tuple[Path, Path]:
    vox1, vox2 = root / "vox1", root / "vox2"
    for spk in range(2):
        for utt in range(2):
            p = vox2 / "dev" / "aac" / f"id0000{spk}" / "vidA" / f"0000{utt + 1}.m4a"
            p.parent.mkdir(parents=True, exist_ok=True)
            encode(p, voice(1.2, spk * 2 + utt).astype(np.float32), 16000, "aac")
    for spk in range(2):
        for utt in range(2):
            p = vox1 / "wav" / f"id1000{spk}" / "vidB" / f"0000{utt + 1}.wav"
            audio.save(p, voice(1.0, 10 + spk * 2 + utt).astype(np.float32), 16000)
    meta = vox1 / "meta"
    meta.mkdir()
    (meta / "veri_test2.txt").write_text(
        "1 id10000/vidB/00001.wav id10000/vidB/00002.wav\n"
        "0 id10000/vidB/00001.wav id10001/vidB/00001.wav\n"
    )
    return vox1, vox2


def test_dry_run_convert_index_trials_and_resume(tmp_path, prepare, capsys):
    vox1, vox2 = fake_tree(tmp_path / "in")
    out = tmp_path / "out"
    args = ["--vox1", str(vox1), "--vox2", str(vox2), "--out", str(out), "--workers", "1"]

    assert prepare([*args, "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert plan["sets"]["voxceleb2/dev"] == {"files": 4, "done": 0, "to_convert": 4}
    assert plan["sets"]["voxceleb1"]["to_convert"] == 4
    assert "vox1_O.txt" in plan["trial_lists_found"]
    assert not out.exists()  # a dry run writes nothing

    assert prepare(args) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["sets"]["voxceleb2/dev"]["indexed"] == 4
    assert done["sets"]["voxceleb2/dev"]["speakers"] == 2
    flac = out / "voxceleb2/dev/wav/id00001/vidA/00002.flac"
    head = audio.info(flac)
    assert head.sample_rate == 16000 and head.channels == 1 and abs(head.duration - 1.2) < 0.05
    trials = (out / "voxceleb1/trials/vox1_O.txt").read_text().splitlines()
    assert trials == [
        "1 id10000/vidB/00001.flac id10000/vidB/00002.flac",
        "0 id10000/vidB/00001.flac id10001/vidB/00001.flac",
    ]
    assert (out / "voxceleb2/dev/wav/.audiocl_manifest.npz").is_file()

    # a rerun converts only what is missing
    flac.unlink()
    before = (out / "voxceleb2/dev/wav/id00000/vidA/00001.flac").stat().st_mtime_ns
    assert prepare(args) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["sets"]["voxceleb2/dev"]["to_convert"] == 1 and flac.is_file()
    assert (out / "voxceleb2/dev/wav/id00000/vidA/00001.flac").stat().st_mtime_ns == before

    # --shards: the converted corpus also as tar shards, streamed in training
    assert prepare([*args, "--shards", "--shard-size", "3"]) == 0
    sharded = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sharded["sets"]["voxceleb2/dev"]["shards"] == 2
    from audiocl.data.shards import open_shards

    assert len(open_shards(out / "voxceleb2/dev/shards")) == 4
    # --shard-audio wav: members a GPU's loader slices without decoding
    out2 = tmp_path / "out_wav"
    wav_args = [a if a != str(out) else str(out2) for a in args]
    assert prepare([*wav_args, "--shards", "--shard-size", "3", "--shard-audio", "wav"]) == 0
    wavs = open_shards(out2 / "voxceleb2/dev/shards")
    assert wavs.audio_format == "wav" and wavs.member_name(0).endswith(".wav")
    flacs = open_shards(out / "voxceleb2/dev/shards")
    i = flacs.corpus.index(wavs.corpus.utt_id(0))
    torch.testing.assert_close(wavs.load(0), flacs.load(i), rtol=0, atol=1 / 32768)


def test_trial_list_naming_missing_files_is_refused(tmp_path, prepare):
    vox1, vox2 = fake_tree(tmp_path / "in")
    (vox1 / "meta" / "list_test_hard2.txt").write_text(
        "1 id19999/x/00001.wav id10000/vidB/00001.wav\n"
    )
    with pytest.raises(SystemExit, match="not in"):
        prepare(["--vox1", str(vox1), "--out", str(tmp_path / "out"), "--workers", "1"])
